"""Follows submitted driver jobs to their end and settles them; runs in every worker process.

The handle of each submitted job is on its task record and the schedule of polls is in
Redis, so any worker polls any job: one process carries many running jobs, and a worker's
death only delays a poll. A job is polled at its expected end, then after waits that double
from the poll interval to a most, or at once when its backend calls back or a cancel is
asked for: a few polls a job, not one a second. A round of polls costs Redis one claim, one
POLL_ROUND per owner (the reads, and the leases renewed to cover each job's next poll) and
one reschedule, so nothing is written per job between its polls. Run timeouts and cancels
are carried out here, on the backend too.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from router.core import Router
from router.driver import (
    AccountRefused,
    CannotCancel,
    DriverError,
    DriverResult,
    TransientError,
    UnknownJob,
    frames,
    said,
)
from router.models import ErrorCode
from router.polls import Claim, Entry
from workers.jobs import classify, keep_running, out_of_rotation, settle

log = logging.getLogger(__name__)

Verdict = tuple[str, int, Any, tuple[str, str] | None, str]
"""SETTLE's outcome, GPU ms, result and error for a job that ended, and the mode the
backend says it ran in ("": not said)."""


@dataclass(frozen=True)
class Check:
    """A claimed job to look at: its task is running this attempt."""

    entry: Entry
    handle: str
    account_id: str
    cancel: bool
    overdue_after: float | None
    """The run timeout (s) if the job has outlived it, else None."""


CALLBACK_WAKE_SECONDS = 0.25
"""Longest a poller waits between claims while backends may call back (`callback_url`)."""


class Poller:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.settings = router.settings
        self.threads = ThreadPoolExecutor(
            self.settings.poll_threads, thread_name_prefix="byoa-poll"
        )

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, waiting out Redis outages."""
        keep_running(self.poll_once, stop, "poller", self.settings.poll_interval_seconds)

    def poll_once(self) -> float:
        """Poll the jobs that are due; returns how long to wait before the next claim."""
        s = self.settings
        claim = self.router.polls.claim(s.poll_batch, s.poll_hold_us)
        if claim.entries:
            self._poll(claim)
            if len(claim.entries) == s.poll_batch:
                return 0.0
        # A round per interval, not one per job coming due: the jobs due meanwhile are
        # claimed, read and renewed together (a poll is at most an interval late). With
        # callbacks, a verified one makes its job due at once: look again soon (one cheap
        # claim, no backend call) rather than sleep out the whole interval.
        idle = CALLBACK_WAKE_SECONDS if s.callback_url else s.poll_interval_seconds
        return min(idle, s.poll_interval_seconds)

    def _poll(self, claim: Claim) -> None:
        router, polls = self.router, self.router.polls
        longest = self.settings.longest_poll_wait_us(router.driver.calls_back)
        reads = router.tasks.poll_round(claim.entries, longest)
        checks: list[Check] = []
        due: dict[Entry, int] = {}
        soon = claim.now_us + round(self.settings.poll_interval_seconds * 1e6)
        for r in reads:
            if r.verdict != "poll":  # 'wait': being adopted by a reaper, it comes due again
                continue
            limit = self.settings.run_timeout_seconds[r.mode] if r.mode else None
            overdue = limit is not None and claim.now_us - (r.started_us or 0) > limit * 1e6
            timeout = limit if overdue else None
            checks.append(Check(r.entry, r.handle, r.account_id, r.cancel, timeout))
            due[r.entry] = r.due_us or soon
        polls.done([r.entry for r in reads if r.verdict == "stale"])
        known = self._poll_many([c.handle for c in checks if c.overdue_after is None])
        verdicts = list(self.threads.map(lambda c: self._check(c, known), checks))
        polls.reschedule(
            {c.entry: due[c.entry] for c, v in zip(checks, verdicts, strict=True) if v is None}
        )
        for c, v in zip(checks, verdicts, strict=True):
            if v is not None:
                outcome, gpu_ms, result, error, ran = v
                settle(router, c.entry, outcome, gpu_ms, result, error, ran)
                polls.done([c.entry])

    def _poll_many(self, handles: list[str]) -> dict[str, DriverResult | DriverError | None]:
        """What the backends say of many jobs at once, where they can (the rest are polled
        one by one); a failed batch says nothing."""
        if not handles:
            return {}
        try:
            return self.router.driver.poll_many(handles)
        except Exception as e:  # a DriverError (a foreign one is turned into one)
            log.info("polling %d jobs at once failed: %s", len(handles), said(e))
            return {}

    def _check(
        self, c: Check, known: dict[str, DriverResult | DriverError | None] | None = None
    ) -> Verdict | None:
        """What became of one job: a verdict if it ended (or must end), None if it runs on.

        Only the job's own end (a result, or a failure the backend reports for it) settles
        it, or its run timeout: an error about the account or the transport while asking
        leaves it running, holding its slot (its lease covers its next poll). A refused account
        is taken out of rotation meanwhile, so it gets no new work. The job is asked first,
        even past its run timeout or with a cancel requested: a job that ended while nobody
        looked is settled by its own end (its result kept, the mode it ran in charged)."""
        driver = self.router.driver
        try:
            if known is not None and c.handle in known:  # asked with others at once
                answer = known[c.handle]
                if isinstance(answer, DriverError):
                    raise answer
                done = answer
            else:
                done = driver.poll(c.handle)
        except AccountRefused as e:  # the job may run on: it keeps its slot; the account
            self._refused(c, e)  # takes no new work
            done = None
        except TransientError as e:  # this poll failed, not the job: poll again later
            log.info("polling %s failed for now: %s", c.entry.member, e)
            done = None
        except UnknownJob as e:
            if c.overdue_after is None and not c.cancel:
                return "failed", 0, None, classify(e, c.entry.member)[1], ""
            done = None
        except DriverError as e:  # the job's own failure
            outcome, error = classify(e, c.entry.member)
            return outcome, 0, None, error, ""
        except Exception as e:  # e.g. Redis away: the job may still run. Named by class only:
            # a foreign exception's text may quote a credential.
            log.warning("polling %s failed: %s\n%s", c.entry.member, type(e).__name__, frames(e))
            return None
        if done is not None:
            return "completed", done.gpu_ms, done.output, None, done.mode or ""
        if c.overdue_after is not None:
            return self._time_out(c, c.overdue_after)
        if c.cancel:  # SETTLE ends a cancel-requested task cancelled
            try:
                return "failed", driver.cancel(c.handle), None, None, ""
            except CannotCancel as e:  # it runs on, holding its slot: follow it to its end
                log.info("%s: %s; polling it to its end", c.entry.member, e)
                self._cancel_unsupported(c)
            except AccountRefused as e:
                self._refused(c, e)
            except DriverError as e:  # asking failed: ask again at the next poll
                log.info("cancelling %s failed for now: %s", c.entry.member, e)
        return None

    def _time_out(self, c: Check, limit: float) -> Verdict:
        """Stop a job that outlived its run timeout and fail it `timeout`.

        When the backend cannot stop it (or cannot be asked: refused, unreachable), it is
        failed anyway and its slot freed though the job may run on at the account: a job
        is not followed for ever. If the account was the cause (refused), it is already out
        of rotation, so it gets no new work beside that job."""
        message = f"the job ran longer than its {limit:g} s run timeout"
        error = (ErrorCode.TIMEOUT.value, message)
        try:
            return "failed", self.router.driver.cancel(c.handle), None, error, ""
        except CannotCancel as e:
            log.warning("%s overran and %s", c.entry.member, e)
            return "failed", e.gpu_ms, None, error, ""
        except DriverError as e:
            if isinstance(e, AccountRefused):
                self._refused(c, e)
            log.warning("%s overran; cancelling it failed: %s", c.entry.member, e)
            return "failed", 0, None, error, ""

    def _cancel_unsupported(self, c: Check) -> None:
        """Say on the task that its cancel cannot be carried out (`cancel_outcome`): the job
        runs to its end and is charged; the task then ends cancelled. Written only while
        the task runs this attempt (never to a record that is gone or moved on)."""
        key = self.router.keys.task(c.entry.owner, c.entry.task_id)
        try:
            with self.router.redis.pipeline() as pipe:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                status, attempt = pipe.hmget(key, "status", "attempt")
                if status != b"running" or attempt != str(c.entry.attempt).encode():
                    return
                pipe.multi()
                pipe.hset(key, "cancel_outcome", "cancel_unsupported")
                pipe.execute()
        except WatchError:  # the task moved on meanwhile: the next poll sees it
            return

    def _refused(self, c: Check, e: AccountRefused) -> None:
        log.warning("account of %s refused while its job runs: %s", c.entry.member, e)
        if not c.account_id:
            return
        try:
            out_of_rotation(self.router, c.entry.owner, c.account_id, str(e))
        except Exception as x:  # e.g. Redis away: the next poll tries again
            log.warning("taking %s out of rotation failed: %s", c.account_id, type(x).__name__)
