"""One worker process has many submissions in flight at once, and keeps every guarantee:
a warm shutdown finishes the submissions in hand; a killed worker loses none."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

from router.client import Client
from router.core import Router
from router.scripts import text
from tests.conftest import terminal, wait_for
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]
Spawn = Callable[..., subprocess.Popen[bytes]]
SLOW = {"BYOA_SUBMIT_THREADS": "8", "BYOA_SIM__SUBMIT_LATENCY_SECONDS": "3"}
"""A backend that takes 3 s to accept a job, and eight submissions in flight."""


def being_submitted(router: Router, task_ids: list[str]) -> int:
    """Tasks started (running) whose job has no handle yet: submissions in flight."""
    pipe = router.redis.pipeline(transaction=False)
    for t in task_ids:
        pipe.hmget(router.keys.task("alice", t), "status", "handle")
    return sum(
        1
        for status, handle in pipe.execute()
        if status and text(status) == "running" and not handle
    )


def test_one_worker_process_submits_many_tasks_at_once(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("worker", **SLOW)
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(8)]
    wait_for(lambda: being_submitted(router, ids) == 8, timeout=30, what="eight in flight")
    done = wait_for(terminal(router, ids), timeout=60, what="every task to end")
    assert {(t.status, t.attempt) for t in done} == {("completed", 1)}
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 8


def test_a_warm_shutdown_finishes_the_submissions_in_hand(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro")
    worker = spawn("worker", **SLOW)
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(8)]
    wait_for(lambda: being_submitted(router, ids) == 8, timeout=30, what="eight in flight")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert being_submitted(router, ids) == 0  # each was submitted: it has its handle
    assert all(client.get(t).handle for t in ids)  # type: ignore[union-attr]
    spawn("worker")
    done = wait_for(terminal(router, ids), timeout=60, what="every task to end")
    assert {(t.status, t.attempt) for t in done} == {("completed", 1)}
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 8


def test_a_worker_killed_with_submissions_in_flight_loses_none_and_runs_none_twice(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("run", BYOA_RUN_LEASE_SECONDS="2")  # its reaper takes back what the worker held
    worker = spawn("worker", BYOA_RUN_LEASE_SECONDS="2", **SLOW)
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(8)]
    wait_for(lambda: being_submitted(router, ids) == 8, timeout=30, what="eight in flight")
    worker.kill()
    worker.wait(timeout=30)
    spawn("worker", BYOA_RUN_LEASE_SECONDS="2")
    done = wait_for(terminal(router, ids), timeout=120, what="every task to end")
    assert {t.status for t in done} == {"completed"}
    # The simulator took each job before the kill (its answer came late): each is adopted
    # by its key, never run a second time.
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 8
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_tasks_waiting_for_a_free_submission_thread_are_not_taken_back(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    """More tasks than threads, each submission outlasting a lease: a task is started only
    once a thread is free for it, so none waits with a lease no heartbeat renews."""
    add_account("a-pro", "alice", "pro")
    lease = {"BYOA_RUN_LEASE_SECONDS": "2"}
    spawn("run", **lease)  # its reaper takes back any task whose lease runs out
    spawn("worker", **lease, **{**SLOW, "BYOA_SUBMIT_THREADS": "2"})
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(6)]
    done = wait_for(terminal(router, ids), timeout=120, what="every task to end")
    assert {(t.status, t.attempt) for t in done} == {("completed", 1)}
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 6
