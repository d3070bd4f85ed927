"""The router's HTTP endpoint: Prometheus metrics of the whole pool, health and readiness."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.http import serve
from router.settings import Settings

CANARY = "CANARY-metrics-token-77"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def endpoint(router: Router) -> Iterator[str]:
    local = Router(
        router.settings.model_copy(update={"metrics_port": 0, "metrics_host": "127.0.0.1"}),
        router.redis,
    )
    server = serve(local)
    assert server is not None
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def samples(body: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return sum(s.value for s in found.get(name, []) if labels.items() <= s.labels.items())


def test_metrics_describe_accounts_queues_counters_and_histograms(
    router: Router, client: Client, drain: Callable[[], None], endpoint: str
) -> None:
    spec = AccountSpec(id="a-pro", owner="alice", plan="pro", credentials=SecretStr(CANARY))
    router.apply(router.pool.add(spec))
    router.apply(
        router.pool.add(AccountSpec(id="a-basic", owner="alice", plan="basic", fast_hours=0))
    )
    done = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(3)]
    client.submit("alice", "a dog", mode="relax")
    drain()
    router.apply(router.pool.update("a-pro", relax_limit=1))
    client.submit("alice", "a bird", mode="relax")  # placed: no worker takes it
    waiting = client.submit("alice", "a fish", mode="relax")  # waits for the slot
    router.apply(router.pool.add(AccountSpec(id="a-off", owner="alice", plan="pro", enabled=False)))
    status, body = get(f"{endpoint}/metrics")
    assert status == 200 and CANARY not in body
    assert waiting.id not in body and done[0] not in body  # no task ids as labels
    m = samples(body)
    pro = {"account": "a-pro", "owner": "alice", "plan": "pro"}
    assert 0 < value(m, "byoa_account_fast_time_remaining_seconds", **pro) < 30 * 3600
    assert value(m, "byoa_account_fast_time_remaining_seconds", account="a-basic") == 0
    assert value(m, "byoa_account_setting", account="a-basic", setting="relax") == 1
    assert value(m, "byoa_account_health", account="a-off", state="disabled") == 1
    assert value(m, "byoa_account_health", **pro, state="active") == 1
    assert value(m, "byoa_account_job_limit", **pro, slot="fast") == 12
    assert value(m, "byoa_account_jobs", **pro, slot="relax") == 1
    assert value(m, "byoa_account_gpu_seconds_total", **pro, mode="fast") > 0
    assert value(m, "byoa_account_auto_flips_total", account="a-basic") == 1
    assert value(m, "byoa_tasks_submitted_total", owner="alice") == 6
    assert value(m, "byoa_tasks_finished_total", status="completed", mode="fast") == 3
    assert value(m, "byoa_tasks_finished_total", status="completed", mode="relax") == 1
    assert value(m, "byoa_tasks_routed_total", slot="fast") == 3
    assert value(m, "byoa_queue_depth", owner="alice", slot="relax") == 1
    assert value(m, "byoa_queue_oldest_age_seconds", owner="alice", slot="relax") >= 0
    assert value(m, "byoa_task_wait_seconds_count", mode="fast") == 3
    assert value(m, "byoa_task_run_seconds_count", mode="relax") == 1
    assert value(m, "byoa_task_run_seconds_bucket", mode="fast", le="+Inf") == 3
    assert value(m, "byoa_dead_letters_total") == 0


def test_relax_work_run_fast_on_expiring_hours_is_counted_once_it_starts(
    router: Router, client: Client, endpoint: str, drain: Callable[[], None]
) -> None:
    seconds, _ = router.redis.time()
    renews = datetime.fromtimestamp(int(seconds), tz=UTC) + timedelta(hours=1)
    spec = AccountSpec(id="a-std", owner="alice", plan="standard", fast_hours=30, renews_at=renews)
    router.apply(router.pool.add(spec))
    router.apply(router.pool.set_owner_options("alice", upgrade_expiring=True))
    task = client.submit("alice", "a cat", mode="relax")
    assert task.upgrade_reason == "fast_hours_expiring"
    m = samples(get(f"{endpoint}/metrics")[1])
    # placed, not started: the series is there from zero
    assert [x.value for x in m["byoa_upgrades_total"] if x.labels["owner"] == "alice"] == [0]
    drain()
    m = samples(get(f"{endpoint}/metrics")[1])
    assert value(m, "byoa_upgrades_total", owner="alice", reason="fast_hours_expiring") == 1


def test_failures_fallbacks_and_dead_letters_are_counted(
    router: Router,
    client: Client,
    endpoint: str,
    add_account: Callable[..., None],
    drain: Callable[[], None],
) -> None:
    from router.daemon import IntakeDaemon

    add_account("a-std", "alice", "standard", fast_hours=0)
    client.submit("alice", "a cat", mode="fast")  # falls back: no fast hours
    drain()  # a fallback counts once it runs (one taken back before it starts does not)
    add_account("b-basic", "bob", "basic", fast_hours=0)
    client.submit("bob", "a cat", mode="relax")  # fails: relax never on basic
    daemon = IntakeDaemon(router)
    router.redis.lpush(router.keys.intake, b"{not json")
    daemon.handle(daemon.claim())
    m = samples(get(f"{endpoint}/metrics")[1])
    assert value(m, "byoa_fallbacks_total", owner="alice", reason="fast_hours_exhausted") == 1
    assert value(m, "byoa_tasks_failed_total", owner="bob", code="no_relax_account") == 1
    assert value(m, "byoa_dead_letters_total") == 1
    assert value(m, "byoa_router_intake_messages_total") >= 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian: prometheus)")
def test_a_scrape_passes_promtool_check_metrics(
    router: Router,
    client: Client,
    drain: Callable[[], None],
    endpoint: str,
    add_account: Callable[..., None],
) -> None:
    add_account("a-pro", "alice", "pro")
    client.submit("alice", "a cat", mode="fast")
    drain()
    body = get(f"{endpoint}/metrics")[1]
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_healthz_and_readyz(router: Router, endpoint: str) -> None:
    assert get(f"{endpoint}/healthz") == (200, "ok\n")
    router.redis.script_flush()  # as after a Redis restart without persistence
    assert get(f"{endpoint}/readyz") == (200, "ready\n")
    sha = router.scripts.submit.sha
    assert router.redis.script_exists(sha) == [True]  # loaded again
    assert get(f"{endpoint}/nope")[0] == 404


def test_readyz_fails_while_redis_is_unreachable(settings: Settings) -> None:
    away = settings.model_copy(
        update={
            "redis_url": SecretStr("redis://127.0.0.1:1/0"),
            "metrics_port": 0,
            "metrics_host": "127.0.0.1",
        }
    )
    server = serve(Router(away))
    assert server is not None
    try:
        status, body = get(f"http://127.0.0.1:{server.server_port}/readyz")
        assert status == 503 and body.startswith("redis:")
        assert get(f"http://127.0.0.1:{server.server_port}/healthz")[0] == 200
    finally:
        server.shutdown()


def test_a_task_tried_twice_counts_one_wait(router: Router, client: Client, endpoint: str) -> None:
    router.apply(router.pool.add(AccountSpec(id="a-pro", owner="alice", plan="pro")))
    task = client.submit("alice", "a cat", mode="fast")
    assert router.tasks.start("alice", task.id, 1)[0]
    status, outcome = router.tasks.settle(
        "alice", task.id, 1, "transient", error=("driver_error", "rate limited")
    )
    assert status == "queued" and [p.attempt for p in outcome.placed] == [2]
    assert router.tasks.start("alice", task.id, 2)[0]
    _, body = get(f"{endpoint}/metrics")
    m = samples(body)
    assert value(m, "byoa_task_wait_seconds_count", owner="alice", mode="fast") == 1
    assert value(m, "byoa_tasks_routed_total", owner="alice") == 2
