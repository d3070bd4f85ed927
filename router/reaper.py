"""Takes back what crashed processes held: expired task leases and dead routers' intake.

Runs inside every router replica; any number may run at once, because every action is
re-checked and applied by one script (REAP, RENEW, INTAKE_TAKEOVER) that does nothing if
another replica, or the lease's holder, got there first. A running task whose driver job
was submitted is never taken back: the job runs on, and a worker is made to poll it.

A running task without a handle lost its worker while submitting: the backend may have
taken the job. It is run again only when the backend, asked, surely has no such job. While
the backend cannot tell (unreachable, a 503, no way to look jobs up), the lease is extended
and the question asked again next pass; once the attempt has outlived its mode's run
timeout, whatever job it may have started has ended or overrun, and the task fails
`worker_lost` rather than run a second job on the account.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from router.core import Router
from router.driver import said
from router.models import ErrorCode, Mode
from router.polls import Entry
from router.scripts import text

log = logging.getLogger(__name__)

STARTED_JOB_BEAT_SECONDS = 35.0
"""rq's worker refreshes a started job's heartbeat every 30 s (its job monitoring
interval); a started job silent for longer than the dispatch lease plus this is dead."""
OWNERS_REFRESH_SECONDS = 30.0
"""The reaper reads the owners again at least this often, even with no account added."""
WAITING_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
"""rq job states in which a placed task is still on its way to a worker."""


class Reaper:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.keys = router.keys
        self.grace = True
        """The next pass only extends expired leases: set at start and after an outage,
        when workers could not renew theirs."""
        self._owners: list[str] = []
        self._owners_seen = (-1, 0.0)  # (accounts counted, monotonic time)

    def owners(self) -> list[str]:
        """The owners with accounts, read again only when the number of accounts changed
        (or every OWNERS_REFRESH_SECONDS): reading them costs O(accounts), counting O(1)."""
        accounts = int(self.router.redis.hlen(self.keys.account_owners))
        count, at = self._owners_seen
        if accounts != count or time.monotonic() - at > OWNERS_REFRESH_SECONDS:
            self._owners = self.router.pool.owners()
            self._owners_seen = (accounts, time.monotonic())
        return self._owners

    def now_us(self) -> int:
        """The Redis clock, which the scripts' lease deadlines use."""
        seconds, micros = self.router.redis.time()
        return int(seconds) * 1_000_000 + int(micros)

    def reap_leases(self) -> int:
        """Extend or reclaim every expired task lease; returns how many were reclaimed.

        A grace pass (see `grace`) only extends: holders get one lease to show they live.
        """
        router, settings = self.router, self.router.settings
        grace = self.grace
        expired = router.tasks.expired(self.owners(), self.now_us())
        reclaimed = 0
        for owner, task_id in expired:
            fields = router.redis.hmget(
                router.keys.task(owner, task_id),
                "status",
                "attempt",
                "handle",
                "account_id",
                "started_at",
                "effective_mode",
            )
            status, attempt, handle, account_id, started, mode = (
                None if v is None else text(v) for v in fields
            )
            if status is None or attempt is None:
                continue
            entry = Entry(owner, task_id, int(attempt))
            action = "reclaim"
            if grace or (status == "queued" and self._job_waiting(entry)):
                action = "extend"
            elif status == "running" and not handle:
                started_us = int(started) if started else None
                found = self._adopt(entry, account_id, started_us)
                if found == "adopted":
                    continue
                if found == "unknown":
                    if self._overran(entry, started_us, mode):
                        continue
                    action = "extend"  # ask again next pass
            verdict, outcome = router.tasks.reap(
                owner, task_id, entry.attempt, action, settings.max_retries
            )
            if verdict == "submitted":  # its job runs on: make sure a worker polls it
                router.polls.add(entry)
            if verdict == "reclaimed":
                reclaimed += 1
                log.warning(
                    "reclaimed task %s/%s (attempt %s, was %s)", owner, task_id, attempt, status
                )
            router.apply(outcome)
        self.grace = False
        return reclaimed

    def wake_accounts(self) -> int:
        """Give work to accounts whose rest is over (or renewal came); returns owners woken."""
        router, now = self.router, self.now_us()
        owners = self.owners()
        pipe = router.redis.pipeline(transaction=False)
        for owner in owners:
            pipe.zrangebyscore(router.keys.timers(owner), "-inf", now, start=0, num=1)
        due = [o for o, ids in zip(owners, pipe.execute(), strict=True) if ids]
        for owner in due:
            router.apply(router.tasks.wake(owner))
        return len(due)

    def _adopt(self, entry: Entry, account_id: str | None, started_us: int | None) -> str:
        """Its worker died submitting: ask the backend for the job by its key. 'adopted'
        (found: its handle is recorded and it is polled, the task is not run again),
        'absent' (the backend surely has no such job, or the account is gone: the task may
        run again) or 'unknown' (the backend cannot tell now)."""
        router = self.router
        account = router.account_ref(entry.owner, account_id) if account_id else None
        if account is None:
            return "absent"
        key = router.job_id(entry.task_id, entry.attempt)
        started_ms = None if started_us is None else started_us // 1000
        try:
            handle = router.driver.lookup(account, key, started_ms)
        except Exception as e:  # a DriverError's text is ours; anything else, its class
            log.warning("cannot tell yet whether %s was submitted: %s", entry.member, said(e))
            return "unknown"
        if handle is None:
            return "absent"
        ours, _ = router.tasks.renew(entry.owner, entry.task_id, entry.attempt, handle)
        if ours:
            router.polls.add(entry)
            log.warning("adopted the submitted job of %s (its worker was lost)", entry.member)
            return "adopted"
        return "unknown"  # settled or taken back meanwhile: the next pass sees which

    def _overran(self, entry: Entry, started_us: int | None, mode: str | None) -> bool:
        """Whether an attempt the backend cannot tell about has outlived its run timeout;
        if so it is failed (`worker_lost`, no GPU time known), never run a second time."""
        router = self.router
        if started_us is None or not mode:
            return False
        limit = router.settings.run_timeout_seconds[Mode(mode)]
        if self.now_us() - started_us <= limit * 1e6:
            return False
        message = (
            f"its worker was lost while submitting it, and the account's backend could not "
            f"tell within the {limit:g} s run timeout whether it took the job"
        )
        error = (ErrorCode.WORKER_LOST.value, message)
        _, outcome = router.tasks.settle(
            entry.owner, entry.task_id, entry.attempt, "failed", 0, None, error
        )
        log.warning("task %s failed: %s", entry.member, message)
        router.apply(outcome)
        return True

    def _job_waiting(self, entry: Entry) -> bool:
        """Whether the rq job carrying the placed task is still on its way to a worker, or
        working through its batch.

        A job marked queued but in no queue was taken by a worker that lost Redis before
        starting it (it sits in rq's intermediate list until rq's ten-minute maintenance);
        one marked started whose worker stopped beating was killed before our START (rq
        would only notice when the worker's key expires)."""
        job_id = self.router.rq_job_id(entry.owner, entry.task_id, entry.attempt)
        try:
            job = Job.fetch(job_id, connection=self.router.redis)
        except NoSuchJobError:
            return False
        status = job.get_status()
        if status == JobStatus.QUEUED:
            return self.router.redis.lpos(self.router.queue.key, job_id) is not None
        if status == JobStatus.STARTED:
            beat = job.last_heartbeat
            patience = self.router.settings.dispatch_lease_seconds + STARTED_JOB_BEAT_SECONDS
            return (
                beat is not None and (datetime.now(UTC) - _aware(beat)).total_seconds() < patience
            )
        return status in WAITING_JOB


def _aware(t: datetime) -> datetime:
    """rq's timestamps are UTC, with or without a tzinfo."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
