"""The rq job: run one placed task on its account and settle it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.core import Router
from router.models import ErrorCode, Mode
from router.settings import Settings
from workers.drivers.base import (
    AccountNeedsAttention,
    DriverError,
    DriverJob,
    DriverTimeout,
    OutOfFastHours,
    TransientError,
)

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


@cache
def _router() -> Router:
    """One router per worker process (a forked job horse builds its own)."""
    return Router(Settings())


def run_task(owner: str, task_id: str, attempt: int) -> str:
    """Start the task if it is still this attempt's to run, run it, settle it.

    Every way out settles the task, so its slot is released and the next waiting
    task is dispatched. While it runs, a heartbeat renews its lease; if this process
    dies, the lease runs out and a router's reaper takes the task back.
    """
    router = _router()
    ok, status, started = _retrying(lambda: router.tasks.start(owner, task_id, attempt))
    _retrying(lambda: router.apply(started))
    if not ok:
        return f"skipped: task is {status or 'gone'}"
    with Heartbeat(router, owner, task_id, attempt):
        outcome, gpu_ms, result, error = _run(router, owner, task_id)
    # SETTLE is idempotent (fenced by the attempt), so a Redis outage is waited out.
    status, out = _retrying(
        lambda: router.tasks.settle(owner, task_id, attempt, outcome, gpu_ms, result, error)
    )
    _retrying(lambda: router.apply(out))
    return status


def _submit(router: Router, submit: Callable[[], str]) -> str:
    """Submit, trying again with backoff while the driver says the failure is transient."""
    settings = router.settings
    delay = settings.transient_backoff_seconds
    for retry in range(settings.transient_retries + 1):
        try:
            return _retrying(submit)
        except TransientError:
            if retry == settings.transient_retries:
                raise
            log.info("transient driver error; submitting again in %.2f s", delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _retrying(call: Callable[[], T], patience: float = 120.0) -> T:
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


def _run(router: Router, owner: str, task_id: str) -> tuple[str, int, Any, tuple[str, str] | None]:
    """Run the task on its account: (outcome, GPU ms, result, error) for SETTLE."""
    outcome, gpu_ms, result, error = "completed", 0, None, None
    try:
        task = _retrying(lambda: router.tasks.get(task_id, owner))
        assert task is not None and task.account_id is not None and task.effective_mode
        account_id = task.account_id
        account = _retrying(lambda: router.account_ref(owner, account_id))
        if account is None:
            raise DriverError(f"account {account_id} was removed")
        parent_id = task.parent_id
        parent = _retrying(lambda: router.tasks.get(parent_id, owner)) if parent_id else None
        job = DriverJob(
            task_id=task.id,
            task_type=task.task_type,
            mode=Mode(task.effective_mode),
            prompt=task.prompt,
            input=task.input,
            parent_result=parent.result if parent else None,
        )
        driver = router.driver
        handle = _submit(router, lambda: driver.submit(account, job))
        # rq's own job timeout is longer, so the task is always settled here.
        timeout = router.settings.run_timeout_seconds[job.mode]
        done = _retrying(lambda: driver.wait(handle, timeout=timeout))
        gpu_ms, result = done.gpu_ms, done.output
    except DriverTimeout as e:
        outcome, error = "failed", (ErrorCode.TIMEOUT.value, str(e))
    except OutOfFastHours:
        outcome = "out_of_fast"
    except AccountNeedsAttention as e:
        log.warning("account of task %s/%s needs attention: %s", owner, task_id, e)
        outcome, error = "attention", (ErrorCode.ACCOUNT_ATTENTION.value, str(e))
    except TransientError as e:  # still failing after the retries at submission
        outcome, error = "transient", (ErrorCode.DRIVER_ERROR.value, str(e))
    except DriverError as e:
        outcome, error = "failed", (ErrorCode.DRIVER_ERROR.value, str(e))
    except Exception as e:
        log.exception("task %s/%s failed in the worker", owner, task_id)
        outcome, error = "failed", (ErrorCode.INTERNAL_ERROR.value, type(e).__name__)
    return outcome, gpu_ms, result, error
