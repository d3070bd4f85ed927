"""A freed slot goes to the oldest task waiting that may run there: a child pinned to the
account (counted as submitted `CHILD_HEADSTART_US` earlier) or the head of its owner's
line. Children go first, but never ahead of a line task that waited the head start longer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.policy import CHILD_HEADSTART_US
from router.requests import NewTask
from router.settings import Settings
from router.tasks import Task

US = 1_000_000
DAY0 = datetime(2026, 6, 1, tzinfo=UTC)


def _run(router: Router, owner: str, task: Task, gpu_ms: int = 60_000) -> None:
    """Start and complete a placed task, as a worker would; its slot frees."""
    raw = router.redis.hget(router.keys.task(owner, task.id), "attempt")
    attempt = int(raw or 0)
    ran, _, _ = router.tasks.start(owner, task.id, attempt, "token")
    assert ran
    router.tasks.settle(owner, task.id, attempt, "completed", gpu_ms=gpu_ms,
                        result={"image_urls": [f"https://cdn.example/{task.id}.png"]})  # fmt: skip


@pytest.mark.parametrize(
    ("line_earlier_us", "child_wins"),
    [
        (-US, True),  # the child was submitted first
        (60 * US, True),  # the line task a minute earlier: within the head start
        (CHILD_HEADSTART_US + US, False),  # earlier by more than the head start
    ],
)
def test_a_freed_slot_goes_to_the_oldest_waiting_task_pinned_or_in_line(
    settings: Settings, redis_conn: Redis, line_earlier_us: int, child_wins: bool
) -> None:
    router = Router(settings.model_copy(update={"sim_clock": True}), redis_conn)
    clock = int(DAY0.timestamp()) * US
    redis_conn.set(router.keys.clock, clock)
    router.apply(
        router.pool.add(AccountSpec(id="a", owner="alice", plan="standard", relax_limit=1))
    )
    client = Client(router.settings, redis_conn)
    parent = client.submit("alice", "parent", mode="relax")
    _run(router, "alice", parent)
    busy = client.submit("alice", "holds the slot", mode="relax")
    assert busy.account_id == "a"

    def at(us: int) -> None:
        redis_conn.set(router.keys.clock, clock + us)

    at(CHILD_HEADSTART_US * 2 - line_earlier_us)
    line = client.submit("alice", "waits in line", mode="relax")
    at(CHILD_HEADSTART_US * 2)
    child = client.submit("alice", task_type="upscale", parent_id=parent.id, input={"index": 1})
    assert line.status == child.status == "queued"
    first, second = (child, line) if child_wins else (line, child)
    _run(router, "alice", busy)
    got_first, got_second = client.get(first.id), client.get(second.id)
    assert got_first is not None and got_second is not None
    assert (got_first.account_id, got_first.attempt) == ("a", 1)
    assert got_second.attempt == 0  # still waits: the slot went to the other
    _run(router, "alice", got_first)
    got_second = client.get(second.id)
    assert got_second is not None and got_second.attempt == 1


def _clocked(settings: Settings, redis_conn: Redis) -> tuple[Router, Client]:
    router = Router(settings.model_copy(update={"sim_clock": True}), redis_conn)
    redis_conn.set(router.keys.clock, int(DAY0.timestamp()) * US)
    return router, Client(router.settings, redis_conn)


def test_a_line_task_leaves_a_freed_account_to_the_child_that_needs_it(
    settings: Settings, redis_conn: Redis
) -> None:
    """Two accounts free in one call (their rest ends): the older line task takes the one
    no child waits for, so the child pinned to the other starts too."""
    router, client = _clocked(settings, redis_conn)
    for account_id in ("a", "b"):
        spec = AccountSpec(
            id=account_id, owner="alice", plan="standard", relax_limit=1, work_hours=(0, 12)
        )
        router.apply(router.pool.add(spec))
    parent = client.submit("alice", "parent", mode="relax")
    assert parent.account_id == "a"
    _run(router, "alice", parent)
    day0 = int(DAY0.timestamp()) * US
    redis_conn.set(router.keys.clock, day0 + 13 * 3600 * US)  # outside working hours
    router.tasks.wake("alice")
    line = client.submit("alice", "waits in line", mode="relax")
    redis_conn.set(router.keys.clock, day0 + 13 * 3600 * US + CHILD_HEADSTART_US + US)
    child = client.submit("alice", task_type="upscale", parent_id=parent.id, input={"index": 1})
    assert line.status == child.status == "queued"
    redis_conn.set(router.keys.clock, day0 + 24 * 3600 * US)  # both rests end at once
    outcome = router.tasks.wake("alice")
    assert sorted((p.task_id, p.account_id) for p in outcome.placed) == sorted(
        [(line.id, "b"), (child.id, "a")]
    )


def _exhausted(router: Router, client: Client, renews: datetime, fast_limit: int) -> Task:
    """Account x (1 relax slot) renewing at `renews` spends all its fast hours on a parent
    task and sets itself to relax; the parent, completed."""
    spec = AccountSpec(id="x", owner="alice", plan="standard", fast_hours=0.02,
                       fast_limit=fast_limit, relax_limit=1, renews_at=renews)  # fmt: skip
    router.apply(router.pool.add(spec))
    parent = client.submit("alice", "parent", mode="fast")
    _run(router, "alice", parent, gpu_ms=200_000)  # more than it has
    view = router.pool.get("x")
    assert view is not None and view.setting == "relax"
    return parent


def _child(parent: Task) -> NewTask:
    return NewTask(uuid.uuid4().hex, "alice", "upscale", "", parent.id, "", '{"index": 1}', 60_000)


def test_children_fallen_back_on_an_account_due_to_renew_run_fast_once_it_has(
    settings: Settings, redis_conn: Redis
) -> None:
    """The account ran out of fast hours and set itself to relax; its renewal date passed
    before any wake. Children submitted then are renewed onto fast before their turn,
    rather than waiting in its relax line beside free fast slots."""
    router, client = _clocked(settings, redis_conn)
    renews = DAY0 + timedelta(days=1)
    parent = _exhausted(router, client, renews, fast_limit=3)
    redis_conn.set(router.keys.clock, int(renews.timestamp()) * US + US)
    kids = [_child(parent) for _ in range(3)]
    _, outcome = router.tasks.submit_many(kids)
    assert sorted(p.task_id for p in outcome.placed) == sorted(k.id for k in kids)
    assert {p.slot for p in outcome.placed} == {"fast"}


def test_a_fallback_returns_to_fast_when_a_renewal_in_the_same_call_brings_hours_back(
    settings: Settings, redis_conn: Redis
) -> None:
    """The owner's only account ran out and its relax slot is taken: a fast task waits as a
    relax fallback. Its renewal date passes with no wake; a child's SUBMIT renews it. The
    fallback, older than anything else, then runs fast at once (invariant 7)."""
    router, client = _clocked(settings, redis_conn)
    renews = DAY0 + timedelta(hours=2)
    parent = _exhausted(router, client, renews, fast_limit=2)
    busy = client.submit("alice", "holds the relax slot", mode="relax")
    assert busy.account_id == "x"
    fallen = client.submit("alice", "a fast task", mode="fast")
    assert (fallen.effective_mode, fallen.fallback_reason) == ("relax", "fast_hours_exhausted")
    redis_conn.set(router.keys.clock, int(renews.timestamp()) * US + US)
    _, outcome = router.tasks.submit_many([_child(parent)])
    assert (fallen.id, "fast") in {(p.task_id, p.slot) for p in outcome.placed}
    again = client.get(fallen.id)
    assert again is not None and (again.effective_mode, again.fallback_reason) == ("fast", None)


def test_an_opt_in_written_without_its_index_is_indexed_at_the_next_look(
    settings: Settings, redis_conn: Redis
) -> None:
    """An opt-in stored by an earlier release (or whose wake never ran) has no index of
    expiring accounts: the first call that looks for an upgrade builds it."""
    router, client = _clocked(settings, redis_conn)
    spec = AccountSpec(id="e", owner="alice", plan="standard", fast_hours=30, fast_limit=3,
                       renews_at=DAY0 + timedelta(hours=1))  # fmt: skip
    router.apply(router.pool.add(spec))
    redis_conn.hset(router.keys.owner_options("alice"), "upgrade_expiring", "1")
    task = client.submit("alice", "a cat", mode="relax")
    assert (task.effective_mode, task.account_id, task.upgrade_reason) == (
        "fast",
        "e",
        "fast_hours_expiring",
    )
