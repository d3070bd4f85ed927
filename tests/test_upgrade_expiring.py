"""An owner's opt-in to run relax work fast on fast hours that will surely expire unused
(docs/design.md, "Hours that will surely expire"): only then, only for that owner; without
it, relax never consumes fast hours."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from router.accounts import AccountSpec
from router.cli import main
from router.client import Client
from router.core import Router
from router.models import Mode, Slot
from router.policy import UPGRADE_REASON
from router.settings import Settings

Drain = Callable[[], None]
DAY0 = datetime(2026, 6, 1, tzinfo=UTC)
US = 1_000_000


def _now(router: Router) -> datetime:
    seconds, _ = router.redis.time()
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _add(router: Router, account_id: str, owner: str, plan: str = "standard", **kw: Any) -> None:
    router.apply(router.pool.add(AccountSpec(id=account_id, owner=owner, plan=plan, **kw)))


def _expiring(router: Router, account_id: str, owner: str, **kw: Any) -> None:
    """30 fast hours, 3 fast slots, renewing in an hour: 27 of the hours surely expire."""
    spec = {"fast_hours": 30, "fast_limit": 3, "renews_at": _now(router) + timedelta(hours=1)}
    _add(router, account_id, owner, **{**spec, **kw})


def _opt_in(router: Router, owner: str, on: bool = True) -> None:
    router.apply(router.pool.set_owner_options(owner, upgrade_expiring=on))


def test_an_opted_in_owners_relax_task_runs_fast_on_hours_that_surely_expire(
    router: Router, client: Client, drain: Drain
) -> None:
    _expiring(router, "a-std", "alice")
    _opt_in(router, "alice")
    assert router.pool.owner_options("alice").upgrade_expiring
    before = router.pool.get("a-std")
    task = client.submit("alice", "a cat", mode="relax")
    assert (task.effective_mode, task.upgrade_reason) == ("fast", UPGRADE_REASON)
    assert task.requested_mode == "relax" and task.fallback_reason is None
    drain()
    done = client.wait(task.id, timeout=10)
    assert (done.status, done.effective_mode, done.account_id) == ("completed", "fast", "a-std")
    assert done.upgrade_reason == UPGRADE_REASON
    assert done.prompt == "a cat --fast"  # the account runs the mode the router chose
    after = router.pool.get("a-std")
    assert before is not None and after is not None
    assert after.fast_hours_remaining < before.fast_hours_remaining


def test_without_the_opt_in_relax_runs_relax_and_spends_no_fast_hours(
    router: Router, client: Client, drain: Drain
) -> None:
    _expiring(router, "a-std", "alice")
    _expiring(router, "b-std", "bob")
    _opt_in(router, "bob")  # another owner's choice is not alice's
    _opt_in(router, "carol", on=False)
    before = router.pool.get("a-std")
    tasks = [client.submit("alice", f"cat {i}", mode="relax") for i in range(4)]
    drain()
    for task in tasks:
        done = client.wait(task.id, timeout=10)
        assert (done.status, done.effective_mode, done.upgrade_reason) == (
            "completed",
            "relax",
            None,
        )
    after = router.pool.get("a-std")
    assert before is not None and after is not None
    assert after.fast_hours_remaining == before.fast_hours_remaining


def test_no_upgrade_while_the_hours_can_still_be_used_or_only_basic_has_them(
    router: Router, client: Client
) -> None:
    renews = _now(router) + timedelta(days=10)
    _add(router, "a-std", "alice", fast_hours=30, renews_at=renews)  # 30 h in 10 days: usable
    _expiring(router, "b-basic", "alice", plan="basic", fast_hours=3.3, relax_limit=0)
    _add(router, "c-std", "alice", fast_hours=3.3, renews_at=_now(router) + timedelta(hours=2))
    _opt_in(router, "alice")
    task = client.submit("alice", "a cat", mode="relax")
    assert (task.effective_mode, task.upgrade_reason) == ("relax", None)
    assert task.account_id in ("a-std", "c-std")  # relax never on Basic, upgraded or not


def test_opting_in_starts_waiting_relax_work_fast_and_opting_out_stops_it(
    router: Router, client: Client
) -> None:
    _expiring(router, "a-std", "alice", relax_limit=1)
    first = client.submit("alice", "one", mode="relax")
    second = client.submit("alice", "two", mode="relax")
    assert first.account_id == "a-std" and second.account_id is None  # waits for relax
    outcome = router.pool.set_owner_options("alice", upgrade_expiring=True)
    router.apply(outcome)
    assert [(p.task_id, p.slot) for p in outcome.placed] == [(second.id, Slot.FAST)]
    moved = client.get(second.id)
    assert moved is not None and moved.upgrade_reason == UPGRADE_REASON
    _opt_in(router, "alice", on=False)
    third = client.submit("alice", "three", mode="relax")
    assert (third.effective_mode, third.account_id, third.upgrade_reason) == ("relax", None, None)


def test_waiting_relax_work_is_upgraded_when_the_hours_start_to_surely_expire(
    settings: Settings, redis_conn: Redis
) -> None:
    """6 h on 3 slots, renewing at 03:00: from 01:00 on, they cannot all be used. Nothing
    happens at 01:00 but the clock: the owner's timer wakes it."""
    router = Router(settings.model_copy(update={"sim_clock": True}), redis_conn)
    start = int(DAY0.timestamp()) * US
    redis_conn.set(router.keys.clock, start)
    _add(
        router,
        "a-std",
        "alice",
        fast_hours=6,
        fast_limit=3,
        relax_limit=1,
        renews_at=DAY0 + timedelta(hours=3),
    )
    _opt_in(router, "alice")
    client = Client(router.settings, redis_conn)
    first = client.submit("alice", "one", mode="relax")
    second = client.submit("alice", "two", mode="relax")
    assert (first.effective_mode, first.account_id) == ("relax", "a-std")
    assert second.account_id is None
    due = redis_conn.zscore(f"{router.keys.owner_base('alice')}:timers", "a-std")
    assert due == start + 3600 * US + 1
    redis_conn.set(router.keys.clock, start + 3600 * US)  # the latest start: not yet
    assert not router.tasks.wake("alice").placed
    redis_conn.set(router.keys.clock, start + 3600 * US + 1)
    outcome = router.tasks.wake("alice")
    assert [(p.task_id, p.slot) for p in outcome.placed] == [(second.id, Slot.FAST)]


def test_the_cli_sets_and_shows_an_owners_choice(router: Router, env: dict[str, str]) -> None:
    runner = CliRunner()
    _add(router, "a-std", "alice")
    for flag, shown in (("--upgrade-expiring", True), ("--no-upgrade-expiring", False)):
        result = runner.invoke(main, ["owners", "set", "alice", flag], env=env)
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["owners", "show", "alice", "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert f'"upgrade_expiring": {str(shown).lower()}' in result.output
        assert router.pool.owner_options("alice").upgrade_expiring is shown
        result = runner.invoke(main, ["status", "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["owners"]["alice"]["upgrade_expiring"] is shown
        table = runner.invoke(main, ["status"], env=env).output
        assert any(
            line.split()[:1] == ["alice"] and line.split()[-1] == ("expiring" if shown else "off")
            for line in table.splitlines()
        )


accounts = st.lists(
    st.tuples(
        st.sampled_from(["basic", "standard", "pro", "mega"]),
        st.floats(0, 60),  # fast hours
        st.integers(1, 12),  # fast slots
        st.one_of(st.none(), st.integers(60, 40 * 86400)),  # seconds to the renewal
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pool=accounts, n=st.integers(1, 6))
def test_relax_never_consumes_fast_hours_for_an_owner_that_did_not_opt_in(
    router: Router, pool: list[tuple[str, float, int, int | None]], n: int
) -> None:
    owner = f"o{uuid.uuid4().hex[:8]}"
    now = _now(router)
    for i, (plan, hours, fast_limit, seconds) in enumerate(pool):
        relax = {"relax_limit": 0} if plan == "basic" else {}
        renews = now + timedelta(seconds=seconds) if seconds is not None else None
        _add(router, f"{owner}-{i}", owner, plan, fast_hours=hours, fast_limit=fast_limit,
             renews_at=renews, **relax)  # fmt: skip
    client = Client(router.settings, router.redis)
    for i in range(n):
        task = client.submit(owner, f"cat {i}", mode="relax")
        assert task.effective_mode in (Mode.RELAX, None)
        assert task.upgrade_reason is None
    for view in router.pool.accounts(owner):
        assert view.fast_hours_reserved == 0 and view.inflight["fast"] == 0


def test_an_upgraded_task_that_loses_its_slot_is_relax_again_until_upgraded_anew(
    settings: Settings, redis_conn: Redis
) -> None:
    """Its rq job lost before it started, the task is routed again from scratch: relax,
    and fast again only if its owner still opts in and the hours still expire."""
    router = Router(settings.model_copy(update={"sim_clock": True}), redis_conn)
    start = int(DAY0.timestamp()) * US
    redis_conn.set(router.keys.clock, start)
    _add(router, "a-std", "alice", fast_hours=30, renews_at=DAY0 + timedelta(hours=1))
    _opt_in(router, "alice")
    client = Client(router.settings, redis_conn)
    task = client.submit("alice", "one", mode="relax")
    assert (task.effective_mode, task.upgrade_reason) == ("fast", UPGRADE_REASON)
    _opt_in(router, "alice", on=False)
    lease = int(router.settings.dispatch_lease_seconds * US)
    redis_conn.set(router.keys.clock, start + lease + 1)
    verdict, outcome = router.tasks.reap("alice", task.id, 1, "reclaim", 3)
    assert verdict == "reclaimed"
    assert [(p.task_id, p.slot) for p in outcome.placed] == [(task.id, Slot.RELAX)]
    again = client.get(task.id)
    assert again is not None
    assert (again.effective_mode, again.upgrade_reason) == ("relax", None)
    view = router.pool.get("a-std")
    assert view is not None and view.fast_hours_reserved == 0 and view.inflight["fast"] == 0


def _clocked(settings: Settings, redis_conn: Redis) -> tuple[Router, Client, int]:
    router = Router(settings.model_copy(update={"sim_clock": True}), redis_conn)
    start = int(DAY0.timestamp()) * US
    redis_conn.set(router.keys.clock, start)
    return router, Client(router.settings, redis_conn), start


def _record(router: Router, owner: str, task_id: str) -> dict[str, str]:
    raw = router.redis.hgetall(router.keys.task(owner, task_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.mark.parametrize("change", ["opt_out", "renewal_moved", "plan_basic"])
def test_an_upgraded_task_whose_reason_is_gone_before_it_starts_runs_relax(
    settings: Settings, redis_conn: Redis, change: str
) -> None:
    """START checks an upgrade as it checks a fallback: the owner still opts in, the
    account is not Basic and its hours still surely expire; else the task is relax again."""
    router, client, _ = _clocked(settings, redis_conn)
    _add(router, "a-std", "alice", fast_hours=30, fast_limit=3, renews_at=DAY0 + timedelta(hours=1))
    _add(router, "b-std", "alice", fast_hours=30, fast_limit=3)  # relax room, undated
    _opt_in(router, "alice")
    task = client.submit("alice", "one", mode="relax")
    assert (task.effective_mode, task.account_id) == ("fast", "a-std")
    if change == "opt_out":
        _opt_in(router, "alice", on=False)
    elif change == "renewal_moved":
        router.apply(router.pool.update("a-std", renews_at=DAY0 + timedelta(days=20)))
    else:
        router.apply(router.pool.update("a-std", plan="basic"))
    attempt = int(_record(router, "alice", task.id)["attempt"])
    ran, status, _ = router.tasks.start("alice", task.id, attempt, "token")
    again = client.get(task.id)
    assert not ran and again is not None
    assert (again.effective_mode, again.upgrade_reason) == ("relax", None)
    assert status in ("queued", "running") or again.status == "queued"
    for view in router.pool.accounts("alice"):
        assert view.fast_hours_reserved == 0 and view.inflight["fast"] == 0
        assert view.plan != "basic" or view.inflight["relax"] == 0


def test_an_upgraded_task_still_justified_starts_fast(
    settings: Settings, redis_conn: Redis
) -> None:
    router, client, _ = _clocked(settings, redis_conn)
    _add(router, "a-std", "alice", fast_hours=30, fast_limit=3, renews_at=DAY0 + timedelta(hours=1))
    _opt_in(router, "alice")
    task = client.submit("alice", "one", mode="relax")
    attempt = int(_record(router, "alice", task.id)["attempt"])
    ran, status, _ = router.tasks.start("alice", task.id, attempt, "token")
    assert (ran, status) == (True, "running")
    assert _record(router, "alice", task.id)["upgrade_reason"] == UPGRADE_REASON


def test_a_renewal_date_just_passed_is_renewed_before_hours_are_judged_expiring(
    settings: Settings, redis_conn: Redis
) -> None:
    """30 h renewing in 20 days: nothing expires. A µs past the date, before any wake-up,
    the stored date looks like hours about to expire; they are fresh hours, not upgraded."""
    router, client, _ = _clocked(settings, redis_conn)
    renews = DAY0 + timedelta(days=20)
    _add(router, "a-std", "alice", fast_hours=30, fast_limit=3, renews_at=renews)
    _opt_in(router, "alice")
    redis_conn.set(router.keys.clock, int(renews.timestamp()) * US + 1)
    task = client.submit("alice", "after the renewal", mode="relax")
    assert (task.effective_mode, task.upgrade_reason) == ("relax", None)
    view = router.pool.get("a-std")
    assert view is not None and view.fast_hours_reserved == 0
    assert view.renews_at_us is not None and view.renews_at_us > int(renews.timestamp()) * US


def test_a_child_of_an_upgraded_task_is_relax_work(settings: Settings, redis_conn: Redis) -> None:
    """It inherits the mode its owner asked for, relax: fast hours only by an upgrade."""
    router, client, _ = _clocked(settings, redis_conn)
    _add(router, "a-std", "alice", fast_hours=30, fast_limit=3, renews_at=DAY0 + timedelta(hours=1))
    _opt_in(router, "alice")
    parent = client.submit("alice", "parent", mode="relax")
    attempt = int(_record(router, "alice", parent.id)["attempt"])
    router.tasks.start("alice", parent.id, attempt, "token")
    router.tasks.settle("alice", parent.id, attempt, "completed", gpu_ms=60_000,
                        result={"image_urls": ["https://cdn.example/p.png"]})  # fmt: skip
    _opt_in(router, "alice", on=False)
    child = client.submit("alice", task_type="variation", parent_id=parent.id, input={"index": 1})
    assert (child.requested_mode, child.effective_mode) == ("relax", "relax")
    assert (child.account_id, child.upgrade_reason) == ("a-std", None)
    view = router.pool.get("a-std")
    assert view is not None and view.fast_hours_reserved == 0 and view.inflight["relax"] == 1
