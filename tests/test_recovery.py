"""Crashed holders: leases run out and a reaper takes back slots and tasks."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rq.job import Job, JobStatus

from router.client import Client
from router.core import Router
from router.daemon import IntakeDaemon
from router.driver import DriverJob
from router.models import Mode
from router.reaper import Reaper
from router.requests import NewTask
from router.scripts import text
from router.settings import Settings
from tests.conftest import terminal, wait_for
from tests.servers import kill_tree
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]
Spawn = Callable[..., subprocess.Popen[bytes]]
FAST_REAP = {
    "BYOA_REAP_INTERVAL_SECONDS": "0.1",
    "BYOA_RUN_LEASE_SECONDS": "1",
    "BYOA_DISPATCH_LEASE_SECONDS": "0.5",
}


def expire_lease(router: Router, owner: str, task_id: str) -> None:
    router.redis.zadd(router.keys.inflight(owner), {task_id: 0})


def running_reaper(router: Router) -> Reaper:
    """A reaper past its first (grace) pass, as in a router that has been up a while."""
    reaper = Reaper(router)
    reaper.grace = False
    return reaper


def test_job_of_a_killed_worker_is_finished_by_another_without_running_twice(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)
    spawn("run", **FAST_REAP)
    slow = spawn("worker", BYOA_SIM_SPEED="30", **FAST_REAP)  # a fast job lasts ~2 s
    task = client.submit("alice", "a cat", mode="fast")
    wait_for(lambda: client.get(task.id).handle is not None, what="the job to be submitted")  # type: ignore[union-attr]
    kill_tree(slow)
    spawn("worker", **FAST_REAP)
    done = client.wait(task.id, timeout=60)
    assert (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 1
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}
    assert account.fast_hours_reserved == 0


def test_job_submitted_by_a_worker_that_died_before_recording_it_is_adopted(
    client: Client, add_account: AddAccount, router: Router, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    assert router.tasks.start("alice", task.id, 1)[0]
    record = client.get(task.id)
    assert record is not None and record.prompt is not None
    account = router.account_ref("alice", "a-pro")
    assert account is not None
    job = DriverJob(task.id, "imagine", Mode.FAST, record.prompt, {}, key=router.job_id(task.id, 1))
    handle = router.driver.submit(account, job)  # ...and the worker dies here
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 0
    assert client.get(task.id).handle == handle  # type: ignore[union-attr]
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 1


def test_submitted_job_is_never_reclaimed_while_no_worker_polls_it(
    client: Client, add_account: AddAccount, router: Router, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)
    task = client.submit("alice", "a cat", mode="fast")
    queued = client.submit("alice", "a dog", mode="fast")
    router.queue.empty()
    assert router.tasks.start("alice", task.id, 1)[0]
    assert router.tasks.renew("alice", task.id, 1, "some-handle")[0]
    reaper = running_reaper(router)
    for _ in range(2):  # its poller is gone: the lease runs out again and again
        expire_lease(router, "alice", task.id)
        assert reaper.reap_leases() == 0
        assert router.polls.size() == 1  # ...and it is put up for polling
    assert client.get(task.id).status == "running"  # type: ignore[union-attr]
    assert client.get(queued.id).status == "queued"  # type: ignore[union-attr]
    assert router.pool.get("a-pro").inflight == {"fast": 1, "relax": 0}  # type: ignore[union-attr]


def test_task_placed_but_never_dispatched_is_dispatched_again(
    add_account: AddAccount, router: Router, spawn: Spawn, settings: Settings
) -> None:
    add_account("a-pro", "alice", "pro")
    task = NewTask("lost-1", "alice", "imagine", "fast", "", "a cat", "{}", 60_000)
    short = Router(settings.model_copy(update={"dispatch_lease_seconds": 0.5}), router.redis)
    short.tasks.claim_ids([task])
    _, outcome = short.tasks.submit_many([task])  # as if the router died before rq
    assert [p.task_id for p in outcome.placed] == ["lost-1"] and router.queue.count == 0
    spawn("run", **FAST_REAP)
    spawn("worker", **FAST_REAP)
    (done,) = wait_for(terminal(router, ["lost-1"]), what="the lost task to run")
    assert (done.status, done.attempt, done.retries) == ("completed", 2, 0)


def test_placed_task_waiting_for_a_worker_keeps_its_slot(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    expire_lease(router, "alice", task.id)
    reaper = running_reaper(router)
    assert reaper.reap_leases() == 0  # its rq job is queued: the lease is extended
    score = router.redis.zscore(router.keys.inflight("alice"), task.id)
    assert score is not None and score > 0
    spawn("worker")
    done = client.wait(task.id, timeout=30)
    assert (done.status, done.attempt) == ("completed", 1)


def test_task_whose_worker_is_lost_too_often_fails_worker_lost(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    reaper = running_reaper(router)
    for attempt in range(1, router.settings.max_retries + 2):
        ok, _, _ = router.tasks.start("alice", task.id, attempt)
        assert ok
        expire_lease(router, "alice", task.id)
        assert reaper.reap_leases() == 1
    done = client.get(task.id)
    assert done is not None and done.status == "failed" and done.error is not None
    assert done.error.code == "worker_lost" and done.retries == router.settings.max_retries
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_renewed_lease_is_not_reaped_and_a_reaped_one_is_lost_to_its_worker(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    router.tasks.start("alice", task.id, 1)
    assert router.tasks.renew("alice", task.id, 1) == (True, False)
    reaper = running_reaper(router)
    assert reaper.reap_leases() == 0
    expire_lease(router, "alice", task.id)
    assert reaper.reap_leases() == 1
    assert router.tasks.renew("alice", task.id, 1) == (False, False)
    assert router.tasks.settle("alice", task.id, 1, "completed")[0] != "completed"


def test_first_pass_and_pass_after_an_outage_only_extend_leases(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    router.tasks.start("alice", task.id, 1)
    expire_lease(router, "alice", task.id)  # as if Redis was away: no renewal got through
    reaper = Reaper(router)
    assert reaper.reap_leases() == 0  # grace: the worker gets one lease to renew
    assert router.tasks.renew("alice", task.id, 1) == (True, False)
    expire_lease(router, "alice", task.id)
    assert reaper.reap_leases() == 1  # no renewal this time: reclaimed
    reaper.grace = True  # the daemon sets this after an outage
    task2 = client.submit("alice", "another", mode="fast")
    router.tasks.start("alice", task2.id, 1)
    expire_lease(router, "alice", task2.id)
    assert reaper.reap_leases() == 0


def test_repeated_start_of_the_same_attempt_runs(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    assert router.tasks.start("alice", task.id, 1)[0]
    assert router.tasks.start("alice", task.id, 1)[0]  # its first reply was lost
    assert not router.tasks.start("alice", task.id, 2)[0]


def test_unnumbered_held_message_becomes_one_task_whoever_handles_it(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=0, relax_limit=0)
    add_account("a-std", "alice", "standard", fast_limit=0, relax_limit=0)
    router.redis.lpush(router.keys.intake, json.dumps({"owner": "alice"}))
    a = IntakeDaemon(router)
    router.redis.lmove(router.keys.intake, a.landing, "RIGHT", "LEFT")  # blocking move, then
    held = a.claim(0)  # Redis went away before numbering; a resume numbers it in place
    router.redis.zadd(router.keys.routers, {a.router_id: 0})
    b = IntakeDaemon(router)
    b.take_over_dead_routers()
    assert a.handle(held).duplicates == 1  # b made the task; a's copy is the same one
    owner_keys = list(router.redis.scan_iter(match=f"{router.keys.prefix}:id:*"))
    assert len(owner_keys) == 1


def test_router_stopping_with_held_messages_stays_listed_for_takeover(router: Router) -> None:
    router.redis.lpush(router.keys.intake, json.dumps({"owner": "alice"}))
    a = IntakeDaemon(router)
    a.take_over_dead_routers()  # registers
    assert a.claim()
    a.deregister()
    assert router.redis.zscore(router.keys.routers, a.router_id) is not None
    a.handle(a.claim(0))
    a.deregister()
    assert router.redis.zscore(router.keys.routers, a.router_id) is None


def test_dead_routers_claimed_messages_are_handled_once(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=0, relax_limit=0)  # nothing runs
    add_account("a-std", "alice", "standard", fast_limit=0, relax_limit=0)
    for i in range(5):
        message = {"owner": "alice", "input": {"prompt": f"cat {i}"}}  # no ids
        router.redis.lpush(router.keys.intake, json.dumps(message))
    dead = IntakeDaemon(router)
    claimed = dead.claim()
    dead.handle(claimed)  # it routed them, then died before clearing its processing list
    for entry in reversed(claimed):
        router.redis.lpush(dead.processing, entry)
    router.redis.zadd(router.keys.routers, {dead.router_id: 0})
    alive = IntakeDaemon(router)
    assert alive.take_over_dead_routers() == 5
    assert router.redis.llen(dead.processing) == 0
    assert router.redis.zscore(router.keys.routers, dead.router_id) is None
    owner_keys = {text(k) for k in router.redis.scan_iter(match=f"{router.keys.prefix}:id:*")}
    assert len(owner_keys) == 5  # the same 5 tasks, not 10


def test_dead_routers_unhandled_messages_are_routed_by_another(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    router.redis.lpush(router.keys.intake, json.dumps({"id": "orphan", "owner": "alice"}))
    dead = IntakeDaemon(router)
    assert len(dead.claim()) == 1  # claimed, never handled
    router.redis.zadd(router.keys.routers, {dead.router_id: 0})
    alive = IntakeDaemon(router)
    alive.take_over_dead_routers()
    task = router.tasks.get("orphan")
    assert task is not None and task.account_id == "a-pro"
    assert router.redis.llen(dead.processing) == router.redis.llen(alive.processing) == 0


def test_placed_task_whose_rq_job_a_lost_worker_took_off_the_queue_is_dispatched_again(
    client: Client, add_account: AddAccount, router: Router, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    queue = router.queue
    # A worker moved the job to rq's intermediate list, then lost Redis before starting it.
    assert router.redis.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 1
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 2, 0)


def test_placed_task_whose_worker_died_between_rq_start_and_ours_is_dispatched_again(
    client: Client, add_account: AddAccount, router: Router, drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    job = Job.fetch(router.rq_job_id("alice", task.id, 1), connection=router.redis)
    router.queue.remove(job)  # a worker took it, rq marked it started, then it was killed
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC) - timedelta(minutes=5), ttl=60)
    expire_lease(router, "alice", task.id)
    reaper = running_reaper(router)
    assert reaper.reap_leases() == 1
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 2, 0)


def test_placed_task_whose_rq_job_started_recently_keeps_its_slot(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    job = Job.fetch(router.rq_job_id("alice", task.id, 1), connection=router.redis)
    router.queue.remove(job)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC), ttl=60)  # its worker is alive, about to START
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 0
    assert client.get(task.id).attempt == 1  # type: ignore[union-attr]


def test_reaper_sees_an_owner_added_after_its_last_pass(
    router: Router, add_account: AddAccount
) -> None:
    """It keeps the owners between passes and reads them again when an account is added or
    removed, so a new owner's leases and timers are looked after from the next pass on."""
    add_account("a-pro", "alice", "pro")
    reaper = Reaper(router)
    assert reaper.owners() == ["alice"]
    add_account("b-pro", "bob", "pro")
    assert reaper.owners() == ["alice", "bob"]
    router.apply(router.pool.remove("a-pro"))
    assert reaper.owners() == ["bob"]


def test_a_placed_task_whose_rq_job_keeps_being_lost_fails_instead_of_looping(
    add_account: AddAccount, router: Router, settings: Settings
) -> None:
    """A job that fails before its START every time (a worker that cannot even build its
    settings, say) must not be dispatched again for ever: after a few losses it fails."""
    add_account("a-pro", "alice", "pro")
    task = NewTask("doomed", "alice", "imagine", "fast", "", "a cat", "{}", 60_000)
    router.tasks.claim_ids([task])
    _, outcome = router.tasks.submit_many([task])  # placed; its rq job never appears
    attempt = outcome.placed[0].attempt
    for _ in range(10):
        router.redis.zadd(router.keys.inflight("alice"), {"doomed": 0})  # its lease expired
        verdict, outcome = router.tasks.reap("alice", "doomed", attempt, "reclaim", 2)
        assert verdict == "reclaimed"
        if not outcome.placed:
            break
        attempt = outcome.placed[0].attempt
    done = router.tasks.get("doomed")
    assert done is not None and done.status == "failed" and done.error is not None
    assert done.error.code == "internal_error" and done.attempt == 6
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}
