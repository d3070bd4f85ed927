"""One rq job carries a batch of placed tasks: rq's per-job cost is paid once per batch
under load and once per task when idle, while each task is still started, fenced and
leased on its own (router.core.Router.dispatch, workers.jobs.run_tasks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from router.client import Client
from router.core import Router
from router.models import Slot
from router.reaper import Reaper
from router.requests import NewTask, check_message
from router.scripts import Placement
from tests.conftest import terminal, wait_for
from workers.jobs import run_tasks
from workers.process import Worker

AddAccount = Callable[..., None]
Spawn = Callable[..., object]


def new(router: Router, task_id: str) -> NewTask:
    message = {"id": task_id, "owner": "alice", "input": {"prompt": "a cat --fast"}}
    task = check_message(message, router.settings)
    assert isinstance(task, NewTask)
    return task


def batched(router: Router, size: int) -> Router:
    return Router(router.settings.model_copy(update={"dispatch_batch": size}), router.redis)


def carried(router: Router) -> list[list[str]]:
    """The task ids each queued rq job carries, in queue order."""
    return [[t for (_, t, *_) in job.args[0]] for job in router.queue.jobs]


def test_tasks_placed_together_ride_in_batches_of_the_set_size(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-mega", "alice", "mega", fast_limit=50)
    tasks = [new(router, f"t{i:02}") for i in range(45)]
    batched(router, 20).submit_many(tasks)
    assert [len(b) for b in carried(router)] == [20, 20, 5]
    assert sorted(t for b in carried(router) for t in b) == [t.id for t in tasks]
    first = router.queue.jobs[0]
    assert first.id == f"{router.keys.prefix}-t00-1_and_19_more"
    for job in router.queue.jobs:  # every task's record names the job carrying it
        for _, task_id, attempt, _ in job.args[0]:
            assert router.rq_job_id("alice", task_id, attempt) == job.id


def test_a_task_placed_alone_is_one_rq_job_named_for_it(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    [job] = router.queue.jobs
    assert job.id == router.job_id(task.id, 1) == router.rq_job_id("alice", task.id, 1)
    assert job.args == ([("alice", task.id, 1, "a-pro")],)


def test_every_task_of_a_batch_runs_once_and_completes(
    router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-mega", "alice", "mega", fast_limit=50)
    ids = [f"t{i:02}" for i in range(30)]
    batched(router, 8).submit_many([new(router, i) for i in ids])
    assert len(router.queue.jobs) == 4
    drain()
    done = terminal(router, ids)()
    assert done is not None
    assert {(t.status, t.attempt, t.retries) for t in done} == {("completed", 1, 0)}
    assert len({t.handle for t in done}) == 30


def test_one_task_failing_in_the_worker_does_not_hold_back_the_rest_of_its_batch(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    router.redis.set(router.keys.task("alice", "broken"), "not a task record")  # WRONGTYPE
    outcomes = run_tasks([("alice", "broken", 1), ("alice", task.id, 1)])
    assert outcomes == ["error: ResponseError", "submitted"]


def test_a_task_waiting_in_a_batch_whose_job_is_alive_keeps_its_slot(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-mega", "alice", "mega")
    batched(router, 20).submit_many([new(router, f"t{i}") for i in range(3)])
    [job] = router.queue.jobs
    router.queue.remove(job)  # a worker took the batch and is working through it
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC), ttl=60)
    router.redis.zadd(router.keys.inflight("alice"), {"t2": 0})  # its dispatch lease ran out
    reaper = Reaper(router)
    reaper.grace = False
    assert reaper.reap_leases() == 0
    assert router.tasks.get("t2", "alice").attempt == 1  # type: ignore[union-attr]


def test_the_unstarted_tasks_of_a_batch_whose_worker_died_run_again_and_none_twice(
    router: Router, add_account: AddAccount, drain: Callable[[], None]
) -> None:
    add_account("a-mega", "alice", "mega")
    ids = ["t0", "t1", "t2"]
    batched(router, 20).submit_many([new(router, i) for i in ids])
    [job] = router.queue.jobs
    run_tasks([("alice", "t0", 1)])  # the worker submitted the first, then was killed
    router.queue.remove(job)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC) - timedelta(minutes=5), ttl=60)
    for task_id in ("t1", "t2"):
        router.redis.zadd(router.keys.inflight("alice"), {task_id: 0})
    reaper = Reaper(router)
    reaper.grace = False
    assert reaper.reap_leases() == 2
    assert Job.fetch(job.id, connection=router.redis).get_status() == JobStatus.STARTED
    drain()
    done = wait_for(terminal(router, ids), timeout=30, what="the batch's tasks")
    assert [(t.status, t.attempt) for t in done] == [
        ("completed", 1),  # submitted before the kill: polled to its end, not run again
        ("completed", 2),
        ("completed", 2),
    ]


def test_worker_processes_share_batches_and_run_each_task_once(
    router: Router, add_account: AddAccount, spawn: Spawn
) -> None:
    for n in range(4):
        add_account(f"a-mega-{n}", "alice", "mega")
    spawn("worker", BYOA_SUBMIT_THREADS="4")
    spawn("worker", BYOA_SUBMIT_THREADS="4")
    spawn("worker", BYOA_SUBMIT_THREADS="1")
    ids = [f"t{i:03}" for i in range(150)]
    fast = batched(router, 7)
    for start in range(0, 150, 50):
        fast.submit_many([new(router, i) for i in ids[start : start + 50]])
    done = wait_for(terminal(router, ids), timeout=120, what="150 tasks in batches")
    assert {(t.status, t.attempt, t.retries) for t in done} == {("completed", 1, 0)}
    assert len({t.handle for t in done}) == 150


def test_a_long_batch_keeps_its_rq_job_beating_so_its_waiting_tasks_keep_their_slots(
    router: Router, add_account: AddAccount, spawn: Spawn
) -> None:
    """rq's SimpleWorker writes a job's heartbeat once; the reaper keeps a placed task's
    slot only while the job carrying it beats, so the batch refreshes it."""
    add_account("a-mega", "alice", "mega")
    ids = [f"t{i}" for i in range(8)]
    router.submit_many([new(router, i) for i in ids])
    [job] = router.queue.jobs
    spawn(
        "worker",
        BYOA_SUBMIT_THREADS="1",
        BYOA_SIM__SUBMIT_LATENCY_SECONDS="0.5",
        BYOA_DISPATCH_LEASE_SECONDS="1.5",  # beats every 0.5 s
    )
    beats: set[datetime] = set()

    def beat_twice_while_running() -> bool:
        try:
            job.refresh()
        except NoSuchJobError:  # ended (rq keeps no result): it can beat no more
            return False
        if job.get_status() == JobStatus.STARTED and job.last_heartbeat is not None:
            beats.add(job.last_heartbeat)
        return len(beats) >= 3

    wait_for(beat_twice_while_running, timeout=30, what="the batch's job to beat while it runs")
    done = wait_for(terminal(router, ids), timeout=60, what="the batch's tasks")
    assert {(t.status, t.attempt) for t in done} == {("completed", 1)}


def test_a_batch_dispatched_twice_after_a_lost_reply_submits_each_task_once(
    router: Router, add_account: AddAccount
) -> None:
    """A dispatch retried after its reply was lost queues the same rq job twice; each
    delivery starts the tasks with its own token, so only the first submits them."""
    add_account("a-mega", "alice", "mega")
    router.submit_many([new(router, "t0"), new(router, "t1")])
    [job] = router.queue.jobs
    placed = [Placement(o, t, a, n, Slot.FAST) for o, t, n, a in job.args[0]]
    router.dispatch(placed)  # the retry
    assert router.queue.job_ids == [job.id, job.id]
    assert run_tasks(job.args[0]) == ["submitted", "submitted"]
    assert run_tasks(job.args[0]) == ["skipped: task is running"] * 2
    sim = router.redis.hget(router.keys.sim_account("a-mega"), "jobs")
    assert sim is not None and int(sim) == 2


def test_a_start_asked_again_with_its_token_runs_and_another_token_does_not(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    assert router.tasks.start("alice", task.id, 1, "tok-a")[0]
    assert router.tasks.start("alice", task.id, 1, "tok-a")[0]  # its reply was lost
    assert not router.tasks.start("alice", task.id, 1, "tok-b")[0]  # a second delivery


def test_rqs_timeout_ends_a_batch_and_its_unstarted_tasks_stay_placed(
    router: Router, add_account: AddAccount
) -> None:
    """rq's job timeout is not swallowed as one task's failure: the batch stops, rq
    records the job failed, and what it had not started is left for the reaper."""
    from workers import jobs

    add_account("a-mega", "alice", "mega")
    sim = router.settings.sim.model_copy(update={"submit_latency_seconds": 0.6})
    slow = router.settings.model_copy(update={"sim": sim})
    jobs.use_settings(slow)
    ids = [f"t{i}" for i in range(4)]
    router.submit_many([new(router, i) for i in ids])
    [queued] = router.queue.jobs
    router.queue.remove(queued)
    job = router.queue.enqueue_call(
        "workers.jobs.run_tasks", args=queued.args, timeout=1, result_ttl=0, failure_ttl=600
    )
    Worker([router.queue], connection=router.redis).work(burst=True)
    assert job.id in FailedJobRegistry(queue=router.queue).get_job_ids()
    statuses = [router.tasks.get(i, "alice").status for i in ids]  # type: ignore[union-attr]
    assert statuses[0] == "running" and statuses[-1] == "queued"
