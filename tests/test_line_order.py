"""A freed slot goes to the oldest task waiting that may run there: a child pinned to the
account (counted as submitted `CHILD_HEADSTART_US` earlier) or the head of its owner's
line. Children go first, but never ahead of a line task that waited the head start longer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis import Redis

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.policy import CHILD_HEADSTART_US
from router.settings import Settings
from router.tasks import Task

US = 1_000_000
DAY0 = datetime(2026, 6, 1, tzinfo=UTC)


def _run(router: Router, owner: str, task: Task) -> None:
    """Start and complete a placed task, as a worker would; its slot frees."""
    raw = router.redis.hget(router.keys.task(owner, task.id), "attempt")
    attempt = int(raw or 0)
    ran, _, _ = router.tasks.start(owner, task.id, attempt, "token")
    assert ran
    router.tasks.settle(owner, task.id, attempt, "completed", gpu_ms=60_000,
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
