"""Takes back what crashed processes held: expired task leases and dead routers' intake.

Runs inside every router replica; any number may run at once, because every action is
re-checked and applied by one script (REAP, INTAKE_RECOVER) that does nothing if another
replica, or the lease's holder, got there first.
"""

from __future__ import annotations

import logging

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from router.core import Router
from router.scripts import text

log = logging.getLogger(__name__)

WAITING_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
"""rq job states in which a placed task is still on its way to a worker."""


class Reaper:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.keys = router.keys
        self.grace = True
        """The next pass only extends expired leases: set at start and after an outage,
        when workers could not renew theirs."""

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
        expired = router.tasks.expired(router.pool.owners(), self.now_us())
        reclaimed = 0
        for owner, task_id in expired:
            status, attempt = router.redis.hmget(
                router.keys.task(owner, task_id), "status", "attempt"
            )
            if status is None or attempt is None:
                continue
            action = "reclaim"
            if grace or (text(status) == "queued" and self._job_waiting(task_id, int(attempt))):
                action = "extend"
            verdict, outcome = router.tasks.reap(
                owner, task_id, int(attempt), action, settings.max_retries
            )
            if verdict == "reclaimed":
                reclaimed += 1
                log.warning(
                    "reclaimed task %s/%s (attempt %s, was %s)",
                    owner,
                    task_id,
                    int(attempt),
                    text(status),
                )
            router.apply(outcome)
        self.grace = False
        return reclaimed

    def wake_accounts(self) -> int:
        """Give work to accounts whose rest is over (or renewal came); returns owners woken."""
        router, now = self.router, self.now_us()
        owners = router.pool.owners()
        pipe = router.redis.pipeline(transaction=False)
        for owner in owners:
            pipe.zrangebyscore(router.keys.timers(owner), "-inf", now, start=0, num=1)
        due = [o for o, ids in zip(owners, pipe.execute(), strict=True) if ids]
        for owner in due:
            router.apply(router.tasks.wake(owner))
        return len(due)

    def _job_waiting(self, task_id: str, attempt: int) -> bool:
        job_id = self.router.job_id(task_id, attempt)
        try:
            return Job.fetch(job_id, connection=self.router.redis).get_status() in WAITING_JOB
        except NoSuchJobError:
            return False
