"""Renewal-aware placement (the default) and fill-first against a real Redis: fast work goes
to the hours that expire first, at submit and from the waiting line; fill-first fills the
accounts in id order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis

from router.accounts import AccountSpec
from router.core import Router
from router.models import Strategy
from router.redis_server import purge
from router.requests import NewTask, check_message
from router.settings import Settings

DAY0 = datetime(2026, 6, 1, tzinfo=UTC)


def _router(settings: Settings, redis_conn: Redis, **changes: object) -> Router:
    return Router(settings.model_copy(update=changes), redis_conn)


def _task(router: Router, task_id: str, mode: str) -> NewTask:
    message = {"id": task_id, "owner": "o", "input": {"prompt": "x", "process_mode": mode}}
    task = check_message(message, router.settings)
    assert isinstance(task, NewTask)
    return task


def _placed(router: Router, n: int, mode: str) -> list[str]:
    """Submit n tasks one by one; the account each was given ('' if it waits)."""
    got = []
    for i in range(n):
        _, outcome = router.tasks.submit_many([_task(router, f"{mode}{i}", mode)])
        got.append(outcome.placed[0].account_id if outcome.placed else "")
    return got


def _now(router: Router) -> datetime:
    seconds, _ = router.redis.time()
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def test_renewal_is_the_default_strategy() -> None:
    assert Settings().strategy is Strategy.RENEWAL


def test_fast_work_fills_the_account_renewing_first_where_least_loaded_spreads_it(
    settings: Settings, redis_conn: Redis
) -> None:
    for strategy, expected in (
        (Strategy.RENEWAL, ["z-soon", "z-soon", "a-late", "a-late", ""]),
        (Strategy.LEAST_LOADED, ["a-late", "z-soon", "a-late", "z-soon", ""]),
    ):
        prefix = f"{settings.key_prefix}{strategy.value[0]}"
        router = _router(settings, redis_conn, strategy=strategy, key_prefix=prefix)
        try:
            now = _now(router)
            for account_id, days in (("a-late", 20), ("z-soon", 2)):
                spec = AccountSpec(
                    id=account_id,
                    owner="o",
                    plan="pro",
                    fast_limit=2,
                    renews_at=now + timedelta(days=days),
                )
                router.pool.add(spec)
            assert _placed(router, 5, "fast") == expected, strategy
        finally:
            purge(redis_conn, prefix)


def test_a_freed_slot_gives_the_head_of_the_line_to_the_account_renewing_first(
    settings: Settings, redis_conn: Redis
) -> None:
    """Both accounts rest (working hours) while a fast task waits; when both wake at once,
    the line's head goes to the one whose hours expire first, not to the lower id."""
    router = _router(settings, redis_conn, sim_clock=True)
    clock = router.keys.clock
    start = int(DAY0.timestamp()) * 1_000_000
    redis_conn.set(clock, start + 30 * 60 * 1_000_000)  # 00:30 UTC
    for account_id, days in (("a-late", 20), ("z-soon", 2)):
        router.pool.add(
            AccountSpec(
                id=account_id,
                owner="o",
                plan="standard",
                work_hours=(1, 23),
                renews_at=DAY0 + timedelta(days=days),
            )
        )
    assert _placed(router, 1, "fast") == [""]  # busy, not unavailable: it waits
    record = router.tasks.get("fast0", "o")
    assert record is not None and record.status == "queued" and record.fallback_reason is None
    redis_conn.set(clock, start + 3_600_000_000)  # 01:00: both may start jobs again
    outcome = router.tasks.wake("o")
    assert [(p.task_id, p.account_id) for p in outcome.placed] == [("fast0", "z-soon")]


def test_fill_first_fills_each_account_before_the_next_in_id_order(
    settings: Settings, redis_conn: Redis
) -> None:
    router = _router(settings, redis_conn, strategy=Strategy.FILL_FIRST)
    now = _now(router)
    for i, days in enumerate((25, 3, 10)):  # renewal dates change nothing here
        router.pool.add(
            AccountSpec(
                id=f"a{i}",
                owner="o",
                plan="standard",
                relax_limit=2,
                fast_limit=2,
                renews_at=now + timedelta(days=days),
            )
        )
    assert _placed(router, 5, "relax") == ["a0", "a0", "a1", "a1", "a2"]
    assert _placed(router, 3, "fast") == ["a0", "a0", "a1"]
