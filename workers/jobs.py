"""The rq job: submit one placed task to its account (the poller settles it)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.utils import now

from router import callbacks
from router.core import Router
from router.driver import (
    AccountNeedsAttention,
    AccountRef,
    DriverError,
    DriverJob,
    ModeUnsupported,
    OutOfFastHours,
    RetryableFailure,
    SubmitOutcomeUnknown,
    TransientError,
    frames,
)
from router.errors import NotReplicated
from router.models import ErrorCode, Mode
from router.polls import Entry
from router.scripts import Outcome, Scripts, text_hash
from router.settings import Settings
from router.tasks import Task
from workers.submissions import Submissions

log = logging.getLogger(__name__)
T = TypeVar("T")


class Heartbeat(threading.Thread):
    """Renews a running task's lease until stopped; the reaper takes it back otherwise."""

    def __init__(self, router: Router, owner: str, task_id: str, attempt: int) -> None:
        super().__init__(name=f"heartbeat-{task_id}", daemon=True)
        self.router, self.owner, self.task_id, self.attempt = router, owner, task_id, attempt
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = self.router.settings.run_lease_seconds / 3
        wait = interval
        while not self.stopped.wait(wait):
            try:
                ours, _ = self.router.tasks.renew(self.owner, self.task_id, self.attempt)
            except Exception:  # Redis away: try again soon; the reaper gives a grace pass
                log.warning("renewing the lease of %s failed; retrying", self.task_id)
                wait = min(0.5, interval)
                continue
            wait = interval
            if not ours:
                log.warning("task %s is no longer this worker's", self.task_id)
                return

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()


_settings: Settings | None = None


def use_settings(settings: Settings | None) -> None:
    """This worker's settings, given once when it starts: its jobs' router is built from
    them and never reads the environment or a settings file again (an edit made meanwhile
    would mix settings in one worker, or break every job). None: read them from the
    environment again (the default)."""
    global _settings
    _settings = settings
    _router.cache_clear()


@cache
def _router() -> Router:
    """The router every job of this process uses (rq's SimpleWorker runs them all here):
    one connection pool, scripts registered once, one driver."""
    return Router(_settings if _settings is not None else Settings())


@cache
def _submissions(size: int) -> Submissions:
    """This process's pool of submissions in flight (see workers.submissions)."""
    return Submissions(size)


def submissions() -> Submissions | None:
    """The pool this process's rq jobs hand their submissions to (None: they submit
    themselves, `submit_threads` 1)."""
    size = _router().settings.submit_threads
    return _submissions(size) if size > 1 else None


def run_tasks(batch: Sequence[Sequence[Any]]) -> list[str]:
    """Run each (owner, task id, attempt, account id) of one rq job as `run_task` does;
    what became of each. One task's failure does not hold back the rest: it is logged, and
    its lease runs out for a reaper to take it back, as if this process had died."""
    done = []
    with JobBeat(get_current_job(), _router().settings.dispatch_lease_seconds):
        for owner, task_id, attempt, *account_id in batch:
            try:
                done.append(run_task(owner, task_id, attempt, *account_id))
            except JobTimeoutException:  # rq's own timeout ends the batch, as any job
                raise
            except Exception as e:  # named by class: its text may quote a credential
                log.error("task %s/%s: %s\n%s", owner, task_id, type(e).__name__, frames(e))
                done.append(f"error: {type(e).__name__}")
    return done


class JobBeat(threading.Thread):
    """Refreshes the rq job's heartbeat while its batch runs. rq's SimpleWorker writes it
    once, when the job starts (only the forking Worker keeps it fresh), and a router's
    reaper keeps a placed task's slot only while the job carrying it beats: without this,
    the tasks at the end of a long batch would be taken back from a live job."""

    def __init__(self, job: Job | None, lease: float) -> None:
        super().__init__(name="byoa-job-beat", daemon=True)
        self.job, self.interval = job, min(10.0, lease / 3)
        self.stopped = threading.Event()

    def run(self) -> None:
        assert self.job is not None
        ttl = int(self.job.timeout or 0) + 60
        while not self.stopped.wait(self.interval):
            try:
                self.job.heartbeat(now(), ttl, xx=True)
            except Exception as e:  # Redis away: the next beat tries again
                log.warning("refreshing the heartbeat of rq job failed: %s", type(e).__name__)

    def __enter__(self) -> JobBeat:
        if self.job is not None:  # called outside an rq job (tests, tools): nothing beats
            self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()


Prepared = tuple[AccountRef | None, DriverJob]
"""A started task's account (None: removed) and the job its driver is given."""


def run_task(owner: str, task_id: str, attempt: int, account_id: str | None = None) -> str:
    """Start the task if it is still this attempt's to run, and submit it to its account
    (`account_id`: the one it was placed on, read with the task in one round trip).

    The submission runs in this process's pool (`submit_threads` in flight at once; this
    rq job waits while all are busy), or here when the pool has one thread. Either way:
    once the backend has the job, its handle goes on the task record and a worker's poller
    (any worker's) follows it to the end and settles it; a submission that fails is settled
    where it ran. While submitting, a heartbeat renews the task's lease; if this process
    dies, a router's reaper finds the job by its key or takes the task back.
    """
    router = _router()
    pool = submissions()
    if pool is not None:
        pool.reserve()  # before START: a started task never waits for a thread
    handed = False
    try:
        token = uuid.uuid4().hex  # this delivery's: a retry of START reuses it
        ok, status, started = retrying(lambda: _start(router, owner, task_id, attempt, token))
        retrying(lambda: router.apply(started))
        if not ok:
            return f"skipped: task is {status or 'gone'}"
        handle, prepared = retrying(lambda: _prepare(router, owner, task_id, attempt, account_id))
        if handle:
            # START answers 'run' again for a running attempt (a retry whose reply was
            # lost); one whose job was already submitted is followed by the poller.
            return "skipped: already submitted"
        if pool is None:
            return submit_started(router, owner, task_id, attempt, prepared)
        what = f"{owner}/{task_id}"
        pool.hand(lambda: submit_started(router, owner, task_id, attempt, prepared), what)
        handed = True
        return "handed to a submission thread"
    finally:
        if pool is not None and not handed:
            pool.unreserve()


def _start(
    router: Router, owner: str, task_id: str, attempt: int, token: str
) -> tuple[bool, str, Outcome]:
    """START, whose work besides this task (tasks it placed) is carried out even when the
    replicas are slow to acknowledge it (NotReplicated: `retrying` asks again, with the
    same token, and this task is submitted to its account only once they have it)."""
    try:
        return router.tasks.start(owner, task_id, attempt, token)
    except NotReplicated as e:
        if isinstance(e.outcome, Outcome):
            router.apply(e.outcome)
        raise


def submit_started(
    router: Router, owner: str, task_id: str, attempt: int, prepared: Prepared | None = None
) -> str:
    """Submit a task this attempt started, record its handle, and schedule its polls; a
    submission that fails is settled. Returns what became of it. Called right after START
    (a pooled one has its thread reserved before START), so the lease START set is fresh;
    a task taken back meanwhile is found out when its handle is recorded (RENEW)."""
    with Heartbeat(router, owner, task_id, attempt):
        try:
            if prepared is None:
                _, prepared = retrying(lambda: _prepare(router, owner, task_id, attempt))
            handle = _submit(router, *prepared)
        except SubmitOutcomeUnknown as e:
            # Neither settled nor submitted again: the task stays running without a handle,
            # the heartbeat stops, and once the lease expires a reaper looks the job up by
            # its key (router.reaper: adopts it if found, runs the task again only when the
            # backend surely has no such job, fails it at its run timeout otherwise).
            log.warning("task %s/%s: %s; left to the reaper", owner, task_id, e)
            return "outcome unknown"
        except JobTimeoutException:  # rq ends the job; the lease runs out for a reaper,
            raise  # which looks the job up by its key, as for a worker lost while submitting
        except Exception as e:
            outcome, error = classify(e, f"{owner}/{task_id}")
            return settle(router, Entry(owner, task_id, attempt), outcome, error=error)
    job = prepared[1]
    expected_us = _expected_us(router, job)
    due = retrying(
        lambda: router.tasks.submitted(owner, task_id, attempt, handle, job.mode, expected_us)
    )
    if due is None:  # taken back meanwhile (it may already run elsewhere): stop this job
        log.warning("task %s/%s was taken back while submitting; cancelling", owner, task_id)
        try:
            router.driver.cancel(handle)
        except DriverError as e:  # the driver's own words (see router.driver)
            log.warning("cancelling the job of %s/%s failed: %s", owner, task_id, e)
        return "lost"
    retrying(lambda: router.polls.add(Entry(owner, task_id, attempt), due))
    return "submitted"


def _expected_us(router: Router, job: DriverJob) -> int:
    """How long the driver expects the job to run, µs (0: it cannot tell): its first poll
    is due then. A driver failing to tell is not the job's failure."""
    try:
        seconds = router.driver.expected_seconds(job)
    except Exception as e:  # named by class: its text may quote a credential
        log.warning("the driver could not tell how long a job runs: %s", type(e).__name__)
        return 0
    if seconds is None or not seconds > 0:
        return 0
    return round(min(seconds, 86_400.0) * 1e6)


def settle(
    router: Router,
    entry: Entry,
    outcome: str,
    gpu_ms: int = 0,
    result: Any = None,
    error: tuple[str, str] | None = None,
    ran_mode: str = "",
) -> str:
    """Settle an attempt and carry out what that decided; waits out a Redis outage
    (SETTLE is fenced by the attempt, so doing it twice is harmless). `ran_mode`: the mode
    the backend says the job ran in ("": not said)."""
    owner, task_id, attempt = entry.owner, entry.task_id, entry.attempt
    status, out = retrying(
        lambda: router.tasks.settle(
            owner, task_id, attempt, outcome, gpu_ms, result, error, ran_mode
        )
    )
    retrying(lambda: router.apply(out))
    return status


def out_of_rotation(router: Router, owner: str, account_id: str, reason: str) -> None:
    """Take an account out of rotation (it gets no new work) as SETTLE 'attention' does
    (`enabled` 0, `attention_reason`, `attention_at`), without touching any task: its
    running jobs keep their slots. Done once per episode (an open one is left as it is)."""
    key = router.keys.account(owner, account_id)
    enabled, open_reason = router.redis.hmget(key, "enabled", "attention_reason")
    if enabled is None or (enabled in (b"0", "0") and open_reason):
        return  # gone, or already out of rotation with its reason
    seconds, micros = router.redis.time()
    at = int(seconds) * 1_000_000 + int(micros)
    args: list[str | int] = ["set", account_id, "enabled", "0"]
    args += ["attention_reason", reason, "attention_at", at]
    scripts = router.scripts
    raw = scripts.owner_call(scripts.account_write, owner, args)
    _, outcome = Scripts.decode(owner, raw)
    router.apply(outcome)
    log.warning("account %s is out of rotation: %s", account_id, reason)


def classify(e: Exception, what: str) -> tuple[str, tuple[str, str] | None]:
    """The SETTLE outcome and error for a driver failure (see `router/commands/settle.lua`).

    A DriverError's message is the driver's own (drivers never pass on a foreign
    exception's text, see `router.driver`); of any other exception only its class
    and where it was raised are logged or recorded: its text may quote a credential."""
    if isinstance(e, OutOfFastHours):
        return "out_of_fast", None
    if isinstance(e, AccountNeedsAttention):
        log.warning("account of task %s needs attention: %s", what, e)
        return "attention", (ErrorCode.ACCOUNT_ATTENTION.value, str(e))
    if isinstance(e, TransientError | RetryableFailure):  # still failing after the retries,
        return "transient", (ErrorCode.DRIVER_ERROR.value, str(e))  # or the job's passing end
    if isinstance(e, ModeUnsupported):
        return "failed", (ErrorCode.MODE_UNSUPPORTED.value, str(e))
    if isinstance(e, DriverError):
        return "failed", (ErrorCode.DRIVER_ERROR.value, str(e))
    log.error("task %s failed in the worker: %s\n%s", what, type(e).__name__, frames(e))
    return "failed", (ErrorCode.INTERNAL_ERROR.value, type(e).__name__)


def driver_job(
    router: Router, owner: str, task_id: str, attempt: int
) -> tuple[AccountRef, DriverJob]:
    """The account a started task runs on and the job its driver is given."""
    _, (account, job) = _prepare(router, owner, task_id, attempt)
    if account is None:
        raise DriverError("the task's account was removed")
    return account, job


def _prepare(
    router: Router, owner: str, task_id: str, attempt: int, account_id: str | None = None
) -> tuple[str | None, Prepared]:
    """A started task's handle (set once submitted), account and driver job: its record
    and, where `account_id` is known, its account in one round trip."""
    pipe = router.redis.pipeline(transaction=False)
    pipe.hgetall(router.keys.task(owner, task_id))
    if account_id is not None:
        router.read_account(pipe, owner, account_id)
    raw, *account_reads = pipe.execute()
    assert raw, f"task {owner}/{task_id} has no record"
    task = Task.from_hash(text_hash(raw))
    assert task.account_id is not None and task.effective_mode
    if account_id == task.account_id:
        account = router.account_from(*account_reads)
    else:  # an rq job from before account ids rode along
        account = router.account_ref(owner, task.account_id)
    parent_id = task.parent_id
    parent = router.tasks.get(parent_id, owner) if parent_id else None
    job = DriverJob(
        task_id=task.id,
        task_type=task.task_type,
        mode=Mode(task.effective_mode),
        prompt=task.prompt,
        input=task.input,
        parent_result=parent.result if parent else None,
        key=router.job_id(task_id, attempt),
        notify_url=_notify_url(router, Entry(owner, task_id, attempt)),
    )
    return task.handle, (account, job)


def _notify_url(router: Router, entry: Entry) -> str | None:
    """Where the backend may POST when the job changes (None: no `callback_url` set)."""
    base = router.settings.callback_url
    return callbacks.of(router).url(base, entry) if base else None


def _submit(router: Router, account: AccountRef | None, job: DriverJob) -> str:
    """Hand the task to its account's backend; the job's handle."""
    if account is None:
        raise DriverError("the task's account was removed")
    driver = router.driver
    settings = router.settings
    delay = settings.transient_backoff_seconds
    for retry in range(settings.transient_retries + 1):
        try:
            return retrying(lambda: driver.submit(account, job))
        except TransientError:
            if retry == settings.transient_retries:
                raise
            log.info("transient driver error; submitting again in %.2f s", delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def retrying(call: Callable[[], T], patience: float = 120.0) -> T:
    """`call()`, again with backoff while Redis is unreachable, for up to `patience` s."""
    deadline, delay = time.monotonic() + patience, 0.1
    while True:
        try:
            return call()
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError):
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable; retrying in %.1f s", delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def keep_running(step: Callable[[], float], stop: threading.Event, what: str, idle: float) -> None:
    """Call `step` until `stop` is set, waiting the seconds it returns between calls; a lost
    Redis is waited out with backoff, any other error logged and tried again after `idle`."""
    backoff = 0.1
    while not stop.is_set():
        try:
            wait = step()
            backoff = 0.1
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as e:
            name = type(e).__name__
            log.warning("%s lost Redis (%s); trying again in %.1f s", what, name, backoff)
            wait, backoff = backoff, min(backoff * 2, 5.0)
        except Exception as e:  # named by class, not by its text (which may quote a secret)
            log.error("%s failed: %s; trying again\n%s", what, type(e).__name__, frames(e))
            wait = idle
        if wait > 0:
            stop.wait(wait)
