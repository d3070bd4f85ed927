"""Account-choice strategies and the virtual clock: ours by default, the peers' by setting,
and the scheduling simulation on a small trace (the full day is `python -m bench.scheduling`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from bench.scheduling import make_trace, simulate
from router.accounts import AccountSpec
from router.core import Router
from router.models import Slot, Strategy
from router.redis_server import purge
from router.requests import NewTask, check_message
from router.settings import Settings
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def other_prefix(prefix: str, redis_conn: Redis) -> Iterator[str]:
    """A second key prefix for a second pool in the same test; purged after."""
    value = f"{prefix}b"
    yield value
    purge(redis_conn, value)


def _router(settings: Settings, redis_conn: Redis, **changes: object) -> Router:
    return Router(settings.model_copy(update=changes), redis_conn)


def _task(router: Router, owner: str, task_id: str, mode: str) -> NewTask:
    message = {"id": task_id, "owner": owner, "input": {"prompt": "x", "process_mode": mode}}
    task = check_message(message, router.settings)
    assert isinstance(task, NewTask)
    return task


def _placed(router: Router, owner: str, n: int, mode: str = "relax") -> list[str]:
    """Submit n tasks one by one; the account each was given (or '' if it waits)."""
    accounts = []
    for i in range(n):
        _, outcome = router.tasks.submit_many([_task(router, owner, f"t{i}", mode)])
        accounts.append(outcome.placed[0].account_id if outcome.placed else "")
    return accounts


def _pool(router: Router, n: int, plan: str = "standard") -> None:
    for i in range(n):
        router.pool.add(AccountSpec(id=f"a{i}", owner="o", plan=plan))


def test_default_gives_each_task_the_least_loaded_free_account(
    settings: Settings, redis_conn: Redis
) -> None:
    router = _router(settings, redis_conn)
    _pool(router, 3)
    assert _placed(router, "o", 4) == ["a0", "a1", "a2", "a0"]


def test_round_robin_cycles_through_the_accounts_by_id(
    settings: Settings, redis_conn: Redis
) -> None:
    router = _router(settings, redis_conn, strategy=Strategy.ROUND_ROBIN)
    _pool(router, 3)
    assert _placed(router, "o", 5) == ["a0", "a1", "a2", "a0", "a1"]


def test_peer_strategy_binds_a_task_to_a_full_account_where_ours_keeps_it_in_line(
    settings: Settings, redis_conn: Redis, other_prefix: str
) -> None:
    """relax_limit 1: the fourth task waits. Round-robin binds it to a0 (its own line);
    ours leaves it in the owner's line for whichever account frees first."""
    for strategy, pinned in ((Strategy.ROUND_ROBIN, 1), (Strategy.LEAST_LOADED, 0)):
        prefix = settings.key_prefix if strategy is Strategy.ROUND_ROBIN else other_prefix
        router = _router(settings, redis_conn, strategy=strategy, key_prefix=prefix)
        for i in range(3):
            router.pool.add(AccountSpec(id=f"a{i}", owner="o", plan="standard", relax_limit=1))
        assert _placed(router, "o", 4) == ["a0", "a1", "a2", ""]
        assert router.redis.llen(router.keys.pin("o", "a0", Slot.RELAX)) == pinned
        assert router.redis.llen(router.keys.line("o", Slot.RELAX)) == 1 - pinned


def test_best_wait_idle_picks_the_account_with_fewest_queued_and_running(
    settings: Settings, redis_conn: Redis
) -> None:
    router = _router(settings, redis_conn, strategy=Strategy.BEST_WAIT_IDLE)
    router.pool.add(AccountSpec(id="a0", owner="o", plan="standard", relax_limit=2))
    router.pool.add(AccountSpec(id="a1", owner="o", plan="standard", relax_limit=1))
    # a0 takes t0 (both empty, a0 first by id), a1 takes t1, a0 takes t2 (1 vs 1 -> a0),
    # t3 binds to a1 (a0 has 2 running, a1 has 1)
    assert _placed(router, "o", 4) == ["a0", "a1", "a0", ""]
    assert router.redis.llen(router.keys.pin("o", "a1", Slot.RELAX)) == 1


def test_task_bound_to_an_account_that_loses_its_fast_hours_goes_back_to_the_owners_line(
    settings: Settings, redis_conn: Redis
) -> None:
    """A peer strategy's early binding must not cost the owner its rules: the task is not
    run at relax on that account while another account still has fast hours."""
    router = _router(settings, redis_conn, strategy=Strategy.ROUND_ROBIN)
    router.pool.add(AccountSpec(id="a0", owner="o", plan="standard", fast_limit=1))
    router.pool.add(AccountSpec(id="a1", owner="o", plan="standard", fast_limit=1))
    assert _placed(router, "o", 3, mode="fast") == ["a0", "a1", ""]
    assert router.redis.llen(router.keys.pin("o", "a0", Slot.FAST)) == 1  # t2 bound to a0
    router.apply(router.pool.update("a0", fast_hours=0))
    assert router.redis.llen(router.keys.pin("o", "a0", Slot.FAST)) == 0
    waiting = router.tasks.get("t2", "o")
    assert waiting is not None
    assert (waiting.status, waiting.effective_mode, waiting.account_id) == ("queued", "fast", None)
    assert router.redis.lrange(router.keys.line("o", Slot.FAST), 0, -1) == [b"t2"]


def test_unknown_strategy_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="strategy"):
        Settings(strategy="fastest")  # type: ignore[arg-type]


def test_scripts_read_the_virtual_clock_only_when_built_for_it(
    settings: Settings, redis_conn: Redis, other_prefix: str
) -> None:
    virtual = _router(settings, redis_conn, sim_clock=True)
    real = _router(settings, redis_conn, key_prefix=other_prefix)
    for router in (virtual, real):
        redis_conn.set(router.keys.clock, 42_000_000)
        _pool(router, 1)
        router.tasks.submit_many([_task(router, "o", "t", "fast")])
    assert redis_conn.hget(virtual.keys.task("o", "t"), "created_at") == b"42000000"
    assert int(redis_conn.hget(real.keys.task("o", "t"), "created_at") or 0) > 10**15


@pytest.mark.slow
def test_on_a_small_trace_ours_keeps_the_rules_and_has_the_lowest_p95_wait() -> None:
    trace = make_trace(hours=2, owners=2, rate=3.0, seed=1)
    figures = {s: simulate(trace, s, TEST_REDIS_URL) for s in Strategy}
    ours = figures[Strategy.LEAST_LOADED]
    assert ours.tasks == len(trace.arrivals) + sum(
        1 for a in trace.arrivals if a.upscale_after is not None
    )
    assert ours.fallbacks_with_fast_left == 0
    assert ours.relax_on_basic == 0
    assert ours.completed + sum(ours.failed.values()) == ours.tasks
    for strategy, peer in figures.items():
        assert peer.relax_on_basic == 0, strategy
        assert ours.waits["relax"][1] <= peer.waits["relax"][1], strategy
    assert ours.waits["relax"][1] < figures[Strategy.RANDOM].waits["relax"][1]
