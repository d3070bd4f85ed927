"""An account's rest rules (pacing, daily cap, working hours) hold when a job starts.

Placement already keeps them; with rq backlogged, jobs placed apart can start together
(issue 11, defect 10). START checks what the account really started, and a job that may
not start yet goes back to its line (its account rests until then, so nothing loops).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from router.client import Client
from router.core import Router
from router.models import Plan, TaskStatus
from router.tasks import Task

AddAccount = Callable[..., None]


def record(client: Client, task: Task) -> Task:
    r = client.get(task.id)
    assert r is not None
    return r


def test_jobs_placed_together_do_not_start_closer_than_the_gap(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    """Both are placed before the account paces (as with placements a gap apart whose rq
    jobs then wait in a backlog): the second start must wait for the gap."""
    gap = 30.0  # far longer than two rq jobs back to back take, however busy the machine
    add_account("a-pro", "alice", "pro")
    first = client.submit("alice", "one", mode="fast")
    second = client.submit("alice", "two", mode="fast")
    assert first.account_id == second.account_id == "a-pro"
    router.apply(router.pool.update("a-pro", min_gap_seconds=gap))
    drain()  # both rq jobs run back to back
    one, two = record(client, first), record(client, second)
    ran, waits = (one, two) if one.started_at else (two, one)
    assert ran.status is TaskStatus.COMPLETED and ran.started_at is not None
    assert waits.status is TaskStatus.QUEUED and waits.started_at is None  # sent back
    assert waits.account_id is None and waits.attempt == 1
    paced = int(router.redis.hget(router.keys.account("alice", "a-pro"), "paced_until") or 0)
    assert paced >= ran.started_at.timestamp() * 1e6 + gap * 1e6 - 1  # it rests until then
    timer = router.redis.zscore(router.keys.timers("alice"), "a-pro")
    assert timer is not None and timer >= paced  # and is woken then
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}


def test_a_daily_cap_lowered_after_placement_holds_at_start(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro", daily_cap=5)
    tasks = [client.submit("alice", f"t{i}", mode="fast") for i in range(2)]
    assert all(t.account_id == "a-pro" for t in tasks)
    router.apply(router.pool.update("a-pro", daily_cap=1))
    drain()
    states = sorted(record(client, t).status for t in tasks)
    assert states == [TaskStatus.COMPLETED, TaskStatus.QUEUED]  # one start today, not two
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}
    timers = router.redis.zscore(router.keys.timers("alice"), "a-pro")
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    wake = dt.datetime.fromtimestamp((timers or 0) / 1e6, dt.UTC).date().isoformat()
    assert wake == tomorrow  # woken when the cap resets


def test_a_job_placed_inside_working_hours_does_not_start_after_they_closed(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    hour = dt.datetime.now(dt.UTC).hour
    add_account("a-pro", "alice", "pro", work_hours=(hour, (hour + 1) % 24))
    task = client.submit("alice", "a fox", mode="fast")
    assert task.account_id == "a-pro"
    closed = ((hour + 2) % 24, (hour + 3) % 24)
    router.apply(router.pool.update("a-pro", work_hours=closed))  # between place and start
    drain()
    later = record(client, task)
    assert later.status is TaskStatus.QUEUED and later.started_at is None
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}


def test_placements_that_never_started_give_back_their_place_in_the_daily_cap(
    client: Client, router: Router, add_account: AddAccount
) -> None:
    add_account("a-std", "alice", "standard", daily_cap=2)
    for i in range(2):
        placed = client.submit("alice", f"c{i}", mode="relax")
        assert placed.account_id == "a-std"
        client.cancel(placed.id)
    real = client.submit("alice", "real", mode="relax")
    assert real.account_id == "a-std"  # cancelled placements used none of the cap


def test_a_lowered_concurrency_limit_holds_at_start_and_the_rest_wait_in_line(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    """Eight placed on a Pro account (12 fast at once), then the plan becomes Standard (3):
    of eight workers starting them (as their rq jobs would), three run; the others go back
    to the line, not failed, and run as slots free."""
    add_account("a-pro", "alice", "pro")
    tasks = [client.submit("alice", f"t{i}", mode="fast") for i in range(8)]
    assert all(t.account_id == "a-pro" for t in tasks)
    router.apply(router.pool.update("a-pro", plan=Plan.STANDARD))
    started = [router.tasks.start("alice", t.id, t.attempt)[0] for t in tasks]
    assert started.count(True) == 3
    for task, ran in zip(tasks, started, strict=True):
        now = record(client, task)
        assert now.status is (TaskStatus.RUNNING if ran else TaskStatus.QUEUED), now
    account = router.pool.get("a-pro")
    assert account is not None and account.fast_limit == 3
    assert account.inflight == {"fast": 3, "relax": 0}
    for task, ran in zip(tasks, started, strict=True):
        if ran:  # the three end; their slots go to the line
            router.apply(router.tasks.settle("alice", task.id, task.attempt, "completed", 1)[1])
    waiting = [record(client, t) for t, ran in zip(tasks, started, strict=True) if not ran]
    assert sum(t.account_id == "a-pro" for t in waiting) == 3  # placed again, three at once
    drain()
    assert all(record(client, t).status is TaskStatus.COMPLETED for t in tasks)
