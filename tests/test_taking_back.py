"""Decisions not yet acted on are taken back, and a task moved between lines is never stranded.

Invariant 7 of docs/rules.md (a fallback that has not started runs fast when fast capacity
comes back first) and issue 11's defects 2 and 8, through the client, the pool and real workers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from router.client import Client
from router.core import Router
from router.models import Mode, Setting, TaskStatus
from router.tasks import Task

AddAccount = Callable[..., None]


def done(client: Client, task: Task) -> Task:
    record = client.get(task.id)
    assert record is not None
    return record


def fallbacks_counted(router: Router, owner: str) -> int:
    stats = router.redis.hgetall(router.keys.stats(owner))
    return sum(int(v) for k, v in stats.items() if k.decode().startswith("fallback:"))


def test_a_child_placed_fast_on_an_account_set_to_relax_runs_relax_at_once(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    """Defect 2: START re-pinned the child relax but pumped nothing: it waited beside a
    free relax slot until some later event on that account."""
    add_account("a-pro", "alice", "pro")
    parent = client.submit("alice", "a fox", mode="fast")
    drain()
    assert done(client, parent).status is TaskStatus.COMPLETED
    child = client.submit("alice", "", task_type="upscale", parent_id=parent.id)
    assert child.account_id == "a-pro" and child.effective_mode is Mode.FAST  # placed fast
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    drain()  # its START finds the account relax: routed again, and placed, in one step
    ran = done(client, child)
    assert ran.status is TaskStatus.COMPLETED, ran.status
    assert (ran.account_id, ran.effective_mode) == ("a-pro", Mode.RELAX)
    assert ran.fallback_reason == "account_set_to_relax"
    assert ran.prompt is None or ran.prompt.endswith("--relax")


def test_a_waiting_fallback_runs_fast_after_a_top_up(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    """Defect 8: fast tasks that fell back while waiting stayed relax after a top-up."""
    add_account("a-std", "alice", "standard", fast_hours=0, relax_limit=1)
    blocker = client.submit("alice", "holds the relax slot", mode="relax")
    assert blocker.account_id == "a-std"
    waiting = client.submit("alice", "a fox", mode="fast")
    assert waiting.effective_mode is Mode.RELAX and waiting.account_id is None
    assert waiting.fallback_reason == "fast_hours_exhausted"
    router.apply(router.pool.update("a-std", fast_hours=2))  # a top-up, before it starts
    placed = done(client, waiting)
    assert (placed.effective_mode, placed.fallback_reason) == (Mode.FAST, None)
    assert placed.account_id == "a-std"  # placed fast at once: the fast slot is free
    drain()
    ran = done(client, waiting)
    assert ran.status is TaskStatus.COMPLETED
    assert (ran.effective_mode, ran.fallback_reason) == (Mode.FAST, None)
    assert ran.prompt == "a fox --fast"
    assert fallbacks_counted(router, "alice") == 0  # it never ran relax


def test_a_placed_fallback_that_has_not_started_runs_fast_after_a_top_up(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    """A fallback already given a relax slot, whose worker has not started it, is routed
    again at its start when fast time came back meanwhile."""
    add_account("a-std", "alice", "standard", fast_hours=0)
    task = client.submit("alice", "a fox", mode="turbo")
    assert (task.effective_mode, task.account_id) == (Mode.RELAX, "a-std")  # holds relax
    router.apply(router.pool.update("a-std", fast_hours=2))
    drain()
    ran = done(client, task)
    assert ran.status is TaskStatus.COMPLETED
    assert (ran.effective_mode, ran.fallback_reason) == (Mode.TURBO, None)
    account = router.pool.get("a-std")
    assert account is not None and account.gpu_seconds_used["relax"] == 0
    assert account.gpu_seconds_used["turbo"] > 0


def test_a_fallback_that_ran_relax_keeps_its_reason_and_is_counted_once(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0)
    task = client.submit("alice", "a fox", mode="fast")
    drain()
    router.apply(router.pool.update("a-std", fast_hours=2))  # after it ran: nothing to undo
    ran = done(client, task)
    assert (ran.effective_mode, ran.fallback_reason) == (Mode.RELAX, "fast_hours_exhausted")
    assert fallbacks_counted(router, "alice") == 1


def test_a_child_that_fell_back_goes_back_to_its_parents_mode_when_the_account_does(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro", relax_limit=1)
    parent = client.submit("alice", "a fox", mode="fast")
    drain()
    blocker = client.submit("alice", "holds the relax slot", mode="relax")
    assert blocker.account_id == "a-pro"
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    child = client.submit("alice", "", task_type="upscale", parent_id=parent.id)
    assert child.effective_mode is Mode.RELAX and child.status is TaskStatus.QUEUED
    assert child.account_id == "a-pro" and child.fallback_reason == "account_set_to_relax"
    router.apply(router.pool.update("a-pro", setting=Setting.FAST))
    back = done(client, child)
    assert (back.effective_mode, back.fallback_reason) == (Mode.FAST, None)
    drain()
    assert done(client, child).status is TaskStatus.COMPLETED
    assert done(client, child).effective_mode is Mode.FAST


def test_a_fallback_sent_back_to_its_line_is_still_taken_back_when_fast_returns(
    client: Client, router: Router, add_account: AddAccount
) -> None:
    """A fallback put back in the relax line after the list of fallbacks was drained (here:
    its account must rest at its START) still goes fast when fast capacity returns."""
    add_account("a-std", "alice", "standard", fast_hours=0)
    add_account("b-basic", "alice", "basic", enabled=False)
    task = client.submit("alice", "a fox", mode="fast")
    assert (task.effective_mode, task.account_id) == (Mode.RELAX, "a-std")
    router.apply(router.pool.update("b-basic", enabled=True))  # fast for a moment...
    router.apply(router.pool.update("b-basic", enabled=False))  # ...and gone again
    hour = dt.datetime.now(dt.UTC).hour
    router.apply(router.pool.update("a-std", work_hours=((hour + 2) % 24, (hour + 3) % 24)))
    ok, status, outcome = router.tasks.start("alice", task.id, done(client, task).attempt)
    router.apply(outcome)
    assert not ok and status == "queued"  # a-std rests: back to the relax line
    router.apply(router.pool.update("b-basic", enabled=True))
    back = done(client, task)
    assert (back.effective_mode, back.fallback_reason, back.account_id) == (
        Mode.FAST,
        None,
        "b-basic",
    )


def test_the_list_of_fallbacks_does_not_outgrow_the_fallbacks_that_wait(
    client: Client, router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0, relax_limit=1)
    tasks = [client.submit("alice", f"t{i}", mode="fast") for i in range(30)]
    for t in tasks[::2]:
        client.cancel(t.id)
    drain()
    assert all(done(client, t).status.terminal for t in tasks)
    assert router.redis.llen(router.keys.owner_base("alice") + ":fallen") == 0


def test_a_fallback_that_never_ran_records_no_fallback(
    client: Client, router: Router, add_account: AddAccount
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0, relax_limit=1)
    client.submit("alice", "holds the slot", mode="relax")
    task = client.submit("alice", "a fox", mode="fast")
    assert done(client, task).fallback_reason == "fast_hours_exhausted"  # while it waits
    client.cancel(task.id)
    ended = done(client, task)
    assert ended.status is TaskStatus.CANCELLED and ended.fallback_reason is None
