"""The scheduling benchmark on a short month: renewal-aware placement forfeits fewer fast
hours than every peer, the offline bound bounds what any of them served, and
`--json` prints one object of the documented shape on its last line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench import scheduling
from bench.offline_bound import MaxFlow, offline_bound
from bench.scheduling import simulate, strategies
from bench.traces import make_month
from router.models import Strategy
from router.settings import Settings
from tests.conftest import TEST_REDIS_URL

HAS_RENEWAL = "RENEWAL" in Strategy.__members__
SHORT: dict[str, Any] = {"days": 6, "owners": 2, "load": 0.95, "seed": 1}
"""Six days of two owners: three accounts renew in it."""


def test_max_flow_on_a_small_graph() -> None:
    g = MaxFlow()
    s, a, b, t = (g.node() for _ in range(4))
    g.edge(s, a, 3)
    g.edge(s, b, 2)
    g.edge(a, b, 1)
    g.edge(a, t, 2)
    g.edge(b, t, 3)
    assert g.flow(s, t) == pytest.approx(5)


def test_the_month_trace_renews_accounts_on_different_days_and_asks_near_what_was_bought() -> None:
    trace = make_month(days=36, owners=3, seed=2)
    for owner in ("owner0", "owner1", "owner2"):
        specs = [s for s in trace.accounts if s.owner == owner]
        days = {s.renews_at.date() for s in specs if s.renews_at is not None}
        assert len(days) == len(specs)
    served, asked = offline_bound(trace)
    bought = sum(
        {"basic": 3.3, "standard": 15, "pro": 30, "mega": 60}[s.plan] for s in trace.accounts
    )
    assert 0.85 * bought * 36 / 30 < asked < bought * 36 / 30
    assert served <= asked + 1e-6


@pytest.fixture(scope="module")
def short_month() -> Iterator[dict[str, scheduling.Figures]]:
    trace = make_month(**SHORT)
    yield {s.value: simulate(trace, s, TEST_REDIS_URL) for s in Strategy}


@pytest.mark.slow
def test_on_a_short_month_ours_forfeits_fewer_fast_hours_than_every_peer(
    short_month: dict[str, scheduling.Figures],
) -> None:
    served, asked = offline_bound(make_month(**SHORT))
    for name, figures in short_month.items():
        assert figures.relax_on_basic == 0, name
        assert figures.completed == figures.tasks, name
        assert figures.fast_hours_served <= served + 1e-6, name
        assert figures.fast_hours_asked == pytest.approx(asked), name
    if not HAS_RENEWAL:
        pytest.skip("the router has no renewal-aware strategy yet")
    ours = short_month[Strategy.RENEWAL.value]
    peers = [s.value for s in Strategy if s is not Strategy.RENEWAL]
    assert ours.fallbacks_with_fast_left == 0
    for peer in peers:
        assert ours.forfeited_hours < short_month[peer].forfeited_hours, peer
    assert ours.fast_share >= 0.98 * served / asked


def test_json_line_shape(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scheduling, "URL", TEST_REDIS_URL)
    picked = strategies()[:2]
    argv = ["--trace", "month", "--days", "2", "--owners", "1", "--seed", "3", "--json"]
    for name in picked:
        argv += ["--strategy", name]
    assert scheduling.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    doc = json.loads(last)
    assert doc["default"] == Settings().strategy.value
    assert set(doc["strategies"]) == set(picked)
    assert 0 <= doc["offline_fast_served_fraction"] <= 1
    keys = {
        "fast_served_fraction",
        "fast_hours_forfeited",
        "fallbacks_while_owner_had_fast_hours",
        "relax_on_basic",
        "wait_p95_seconds",
        "utilisation",
        "utilisation_bound",
    }
    for figures in doc["strategies"].values():
        assert keys <= set(figures)
        assert all(isinstance(v, (int, float)) for v in figures["wait_p95_seconds"].values())
        assert set(figures["wait_p95_seconds"]) <= {"fast", "turbo", "relax"}
        assert 0 <= figures["fast_served_fraction"] <= 1
        assert figures["utilisation"] <= figures["utilisation_bound"] + 1e-9


def test_json_for_a_trace_without_a_bound_says_null(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scheduling, "URL", TEST_REDIS_URL)
    name = strategies()[0]
    argv = ["--trace", "busy", "--hours", "0.2", "--owners", "1", "--json", "--strategy", name]
    assert scheduling.main(argv) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["offline_fast_served_fraction"] is None
    assert set(doc["strategies"]) == {name}
