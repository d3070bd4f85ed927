"""Polls timed from a job's expected end: between its polls a running job costs Redis
nothing (its schedule entry and lease are written once a poll, for a round at once); past
its expected end the waits double up to a most; a run timeout, a cancel or a callback is
not kept waiting; and a worker lost between polls, or holding a claim, loses nothing and
runs nothing twice (real Redis, real workers)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from router.client import Client
from router.core import Router
from router.models import TaskStatus
from router.polls import Entry
from router.reaper import Reaper
from router.settings import Settings
from tests.conftest import wait_for
from tests.servers import kill_tree
from workers.drivers.simulated import SimulatedDriver
from workers.jobs import run_task
from workers.poller import Poller

AddAccount = Callable[..., None]
Spawn = Callable[..., subprocess.Popen[bytes]]
SPEED = 20.0
"""A fast imagine (60 GPU s at wall factor 0.8) is expected to run 2.4 s."""
EXPECTED = 60 * 0.8 / SPEED
LONGEST = 0.4
"""`poll_max_interval_seconds` here."""
LEASE = 2.0
"""`run_lease_seconds` here: a claimed poll is held max(5 x 0.05, 2 / 2) = 1 s."""
US = 1_000_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "sim_speed": SPEED,
            "poll_interval_seconds": 0.05,
            "poll_max_interval_seconds": LONGEST,
            "run_lease_seconds": LEASE,
        }
    )


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "BYOA_POLL_MAX_INTERVAL_SECONDS": str(LONGEST),
        "BYOA_RUN_LEASE_SECONDS": str(LEASE),
        "BYOA_REAP_INTERVAL_SECONDS": "0.1",
    }


@pytest.fixture
def polling(router: Router) -> Iterator[Poller]:
    """A worker's poller running on a thread of this process."""
    poller = Poller(Router(router.settings, router.redis))
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    yield poller
    stop.set()
    thread.join(timeout=10)
    poller.threads.shutdown()


def redis_now(router: Router) -> int:
    seconds, micros = router.redis.time()
    return int(seconds) * US + int(micros)


def due(router: Router, entry: Entry) -> int | None:
    score = router.redis.zscore(router.keys.polls, entry.member)
    return None if score is None else int(score)


def lease(router: Router, entry: Entry) -> int:
    score = router.redis.zscore(router.keys.inflight(entry.owner), entry.task_id)
    assert score is not None, f"{entry.member} holds no lease"
    return int(score)


def submitted(router: Router, client: Client, prompt: str = "a lighthouse") -> Entry:
    """A fast task, submitted to its account by an rq job run here."""
    task = client.submit("alice", prompt, mode="fast")
    router.queue.empty()  # type: ignore[no-untyped-call]
    assert run_task("alice", task.id, 1) == "submitted"
    return Entry("alice", task.id, 1)


def test_a_job_is_first_polled_at_its_expected_end_and_untouched_until_then(
    router: Router, client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    before = redis_now(router)
    entry = submitted(router, client)
    first, held = due(router, entry), lease(router, entry)
    assert first is not None
    assert before + EXPECTED * US <= first <= redis_now(router) + EXPECTED * US
    assert held == first + LEASE * US  # the lease runs a run lease past the first poll
    poller = Poller(router)
    rounds: list[float] = []

    def polled_until_just_before_it_is_due() -> bool:
        rounds.append(poller.poll_once())
        return redis_now(router) >= first - 0.5 * US

    wait_for(polled_until_just_before_it_is_due, timeout=10, what="its first poll to near")
    assert len(rounds) > 5
    assert (due(router, entry), lease(router, entry)) == (first, held)  # nothing written


@pytest.mark.parametrize(
    ("overran", "wait"),
    [(0.0, 0.05), (0.12, 0.12), (0.3, 0.3), (100.0, LONGEST)],
)
def test_past_its_expected_end_the_waits_double_up_to_the_most(
    overran: float, wait: float, router: Router, client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    entry = submitted(router, client)
    # The job was expected to end `overran` s ago (it runs on for seconds yet).
    task_key = router.keys.task(entry.owner, entry.task_id)
    router.redis.hset(task_key, "poll_from", redis_now(router) - round(overran * US))
    router.polls.later([entry], 0)
    Poller(router).poll_once()
    at = redis_now(router)
    next_due = due(router, entry)
    assert next_due is not None
    # polled, then due again `wait` s on (the overrun as the poll saw it: a little longer)
    assert at - 0.05 * US <= next_due - wait * US <= at + 0.05 * US
    assert lease(router, entry) == next_due + LEASE * US


def test_a_backend_that_calls_back_is_polled_only_as_a_safety_net() -> None:
    s = Settings(callback_url="http://router:9464", poll_max_interval_seconds=10)
    assert s.longest_poll_wait_us(calls_back=True) == 60 * US
    assert s.longest_poll_wait_us(calls_back=False) == 10 * US
    assert Settings(poll_max_interval_seconds=10).longest_poll_wait_us(calls_back=True) == 10 * US
    slow = Settings(poll_interval_seconds=30, poll_max_interval_seconds=10)
    assert slow.longest_poll_wait_us(calls_back=False) == 30 * US  # never below the interval


def test_a_job_is_polled_at_its_run_timeout_when_that_comes_first(
    router: Router, client: Client, add_account: AddAccount, polling: Poller
) -> None:
    from workers import jobs

    timeouts = {**router.settings.run_timeout_seconds, "fast": 1.0}
    short = router.settings.model_copy(update={"run_timeout_seconds": timeouts})
    jobs.use_settings(short)
    polling.settings = short
    add_account("a-pro", "alice", "pro")
    entry = submitted(router, client)
    record = client.get(entry.task_id)
    assert record is not None and record.started_at is not None
    started = round(record.started_at.timestamp() * US)
    assert due(router, entry) == started + US + 1  # not at its expected end, 2.4 s on
    done = client.wait(entry.task_id, timeout=10)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.code == "timeout"
    assert done.finished_at is not None and done.finished_at.timestamp() < started / US + 2


def test_a_cancel_between_polls_is_carried_out_at_once(
    router: Router, client: Client, add_account: AddAccount, polling: Poller
) -> None:
    add_account("a-pro", "alice", "pro")
    entry = submitted(router, client)
    first = due(router, entry)
    assert first is not None
    client.cancel(entry.task_id)
    done = client.wait(entry.task_id, timeout=10)
    assert done.status is TaskStatus.CANCELLED
    assert done.finished_at is not None and done.finished_at.timestamp() * US < first - US
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}


def test_a_worker_killed_between_polls_holds_nothing_and_nothing_runs_twice(
    router: Router, client: Client, add_account: AddAccount, spawn: Spawn
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("run")
    doomed = spawn("worker")
    tasks = [client.submit("alice", f"a lighthouse {n}", mode="fast") for n in range(6)]

    def all_submitted() -> bool:
        return all((t := client.get(task.id)) is not None and t.handle for task in tasks)

    wait_for(all_submitted, timeout=30, what="every job submitted")
    spawn("worker")  # a worker that carries on
    kill_tree(doomed)  # between polls: its jobs are not due before their expected end
    sim = SimulatedDriver(router.settings, router.redis)
    for task in tasks:
        done = client.wait(task.id, timeout=30)
        assert (done.status, done.attempt, done.retries) == ("completed", 1, 0)
        assert done.handle is not None and done.finished_at is not None
        ended = int(router.redis.hget(router.keys.sim_job(done.handle), "ends") or 0)
        # settled within the longest wait (and a claim's round) of its job's end
        assert done.finished_at.timestamp() * US <= ended + (LONGEST + 1.0) * US
    assert sim.audit("a-pro")["jobs"] == 6  # each job ran once
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}


def test_jobs_claimed_by_a_poller_that_died_are_polled_after_the_hold_not_reaped(
    router: Router, client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    entries = [submitted(router, client, f"a lighthouse {n}") for n in range(3)]
    ends = max(due(router, e) or 0 for e in entries)
    wait_for(lambda: redis_now(router) >= ends, timeout=10, what="every first poll to be due")
    s = router.settings
    claim = router.polls.claim(s.poll_batch, s.poll_hold_us)  # ...claimed, and its poller dies
    assert {e.member for e in claim.entries} == {e.member for e in entries}
    reaper = Reaper(router)
    reaper.grace = False
    poller = Poller(router)
    reclaimed: list[int] = []

    def settled() -> bool:
        reclaimed.append(reaper.reap_leases())
        poller.poll_once()
        return not router.polls.size()

    wait_for(settled, timeout=10, what="another poller to settle the claimed jobs")
    assert not any(reclaimed)  # the leases cover the hold: nothing was taken back
    for e in entries:
        done = client.get(e.task_id)
        assert done is not None and (done.status, done.attempt, done.retries) == (
            "completed",
            1,
            0,
        )
        assert done.finished_at is not None
        settled = done.finished_at.timestamp() * US
        assert claim.now_us + s.poll_hold_us <= settled <= claim.now_us + s.poll_hold_us + US
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 3


def test_a_job_whose_poll_entry_was_lost_is_polled_again_a_run_lease_after_its_due(
    router: Router, client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    entry = submitted(router, client)
    first = due(router, entry)
    assert first is not None
    router.polls.done([entry])  # as a worker dying between recording the job and scheduling it
    reaper = Reaper(router)
    reaper.grace = False

    def scheduled_again() -> bool:
        reaper.reap_leases()
        return router.polls.size() == 1

    wait_for(scheduled_again, timeout=20, what="the reaper to schedule the job's poll")
    assert redis_now(router) >= first + LEASE * US  # not before the lease ran out
    wait_for(lambda: Poller(router).poll_once() is not None and not router.polls.size(), 10)
    done = client.get(entry.task_id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 1
