"""The router as a library: state (pool, tasks) plus transport (rq) and the drivers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from pydantic import SecretStr
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue

from router.accounts import AccountView
from router.driver import AccountRef, Driver, make_driver
from router.errors import NotReplicated
from router.keys import Keys
from router.models import ErrorCode, FallbackReason
from router.polls import Polls
from router.pool import Pool
from router.redis_url import open_redis
from router.requests import NewTask, Rejection
from router.scripts import Outcome, Placement, Scripts, text, text_hash
from router.settings import Settings
from router.shared_secret import SharedSecret
from router.tasks import Submitted, Task, TaskStore

log = logging.getLogger(__name__)

JOB_FUNC = "workers.jobs.run_tasks"
"""One rq job carries a batch of placed tasks (see `Router.dispatch`)."""


MAX_CONNECTIONS = 100
"""Redis connections one process opens at most. redis-py's own pool raises
MaxConnectionsError past its limit (100); this one makes a thread wait for a free
connection instead, for up to POOL_WAIT_SECONDS: a burst of backend callbacks runs a
thread each on a router's HTTP server."""
POOL_WAIT_SECONDS = 10


def connect(settings: Settings) -> Redis:
    """A Redis client for the settings' URL (redis://, rediss://, user and password, or a
    Sentinel's redis+sentinel://: `router.redis_url`)."""
    return open_redis(
        settings.redis_url.get_secret_value(),
        max_connections=MAX_CONNECTIONS,
        pool_timeout=POOL_WAIT_SECONDS,
        health_check_interval=30,
    )


class Router:
    """Routes tasks to accounts and hands placed tasks to rq; one per process."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis if redis is not None else connect(settings)
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(self.redis, settings)
        self.pool = Pool(self.redis, settings, self.scripts)
        self.tasks = TaskStore(self.redis, self.scripts, settings)
        self.polls = Polls(self.redis, self.keys, self.scripts)
        self.queue = Queue(settings.queue_name, connection=self.redis)

    @cached_property
    def idempotency_secret(self) -> SharedSecret:
        """What makes an Idempotency-Key's task id (`router.api.idempotency.name`)."""
        return SharedSecret(self.redis, self.keys.idempotency_secret)

    @cached_property
    def driver(self) -> Driver:
        return make_driver(self.settings, self.redis)

    def account_ref(self, owner: str, account_id: str) -> AccountRef | None:
        """What a driver needs to act on an account, credentials included."""
        pipe = self.redis.pipeline(transaction=False)  # one round trip: the owner is known
        self.read_account(pipe, owner, account_id)
        raw, creds = pipe.execute()
        return self.account_from(raw, creds)

    def read_account(self, pipe: Pipeline, owner: str, account_id: str) -> None:
        """Queue the two reads `account_from` takes (its hash, its credentials)."""
        pipe.hgetall(self.keys.account(owner, account_id))
        pipe.get(self.keys.credentials(owner, account_id))

    @staticmethod
    def account_from(raw: dict[Any, Any], creds: bytes | None) -> AccountRef | None:
        """The AccountRef those reads give (None: no such account)."""
        if not raw:
            return None
        view = AccountView.from_hash(text_hash(raw))
        secret = SecretStr(text(creds)) if creds else None
        return AccountRef(
            view.id,
            view.owner,
            view.plan,
            view.state().fast_ms,
            secret,
            view.backend_url,
            view.backend_server,
            view.setting,
            view.flip_reason == FallbackReason.FAST_HOURS_EXHAUSTED,
        )

    def job_id(self, task_id: str, attempt: int) -> str:
        """The rq job id of one attempt at a task (rq keys then carry the prefix)."""
        return f"{self.keys.prefix}-{task_id}-{attempt}"

    def apply(self, outcome: Outcome) -> None:
        """Carry out what a script decided: dispatch placed tasks, tell drivers of switches."""
        if outcome.placed:
            self.dispatch(outcome.placed)
        for owner, account_id, setting in outcome.switches:
            ref = self.account_ref(owner, account_id)
            if ref is not None:
                log.info("account %s switched to %s", account_id, setting)
                try:
                    self.driver.switch_mode(ref, setting)
                except (RedisConnectionError, RedisTimeoutError):
                    raise
                except Exception as e:  # a backend's answer never stops a router or worker;
                    # every prompt carries the flag of its mode anyway. Named by class only:
                    # a foreign exception's text may quote a credential.
                    log.warning(
                        "telling account %s of its %s setting failed: %s",
                        account_id,
                        setting,
                        type(e).__name__,
                    )
        self.tasks.expire_ids(outcome.finished, self.settings.task_ttl_seconds)

    def dispatch(self, placed: Sequence[Placement]) -> None:
        """Hand placed tasks to rq, up to `dispatch_batch` per rq job: rq's per-job cost is
        paid once per batch under load and once per task when idle. Each task is still
        started, fenced and leased on its own by the job (`workers.jobs.run_tasks`), and its
        record names its job (`rq_job`: "<attempt>/<job id>") for the reaper. One
        transaction: every job and every record's `rq_job` land, or none does."""
        settings, size = self.settings, self.settings.dispatch_batch
        pipe = self.redis.pipeline()
        jobs = []
        for start in range(0, len(placed), size):
            batch = placed[start : start + size]
            first = batch[0]
            job_id = self.job_id(first.task_id, first.attempt)
            if len(batch) > 1:  # ends in a letter: never another attempt's job id
                job_id += f"_and_{len(batch) - 1}_more"
            described = ", ".join(
                f"{p.owner}/{p.task_id} on {p.account_id} ({p.slot})" for p in batch[:3]
            )
            more = f" and {len(batch) - 3} more" if len(batch) > 3 else ""
            jobs.append(
                Queue.prepare_data(
                    JOB_FUNC,
                    args=([(p.owner, p.task_id, p.attempt, p.account_id) for p in batch],),
                    job_id=job_id,
                    timeout=settings.job_timeout_seconds * len(batch),  # each its own
                    result_ttl=0,
                    failure_ttl=settings.task_ttl_seconds,
                    description=described + more,
                )
            )
            for p in batch:
                pipe.hset(self.keys.task(p.owner, p.task_id), "rq_job", f"{p.attempt}/{job_id}")
        self.queue.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()

    def rq_job_id(self, owner: str, task_id: str, attempt: int) -> str:
        """The id of the rq job carrying this attempt at the task (its record says; an
        attempt dispatched alone by an older router has the id `job_id` gives)."""
        named = self.redis.hget(self.keys.task(owner, task_id), "rq_job")
        if named:
            at, _, job_id = text(named).partition("/")
            if at == str(attempt):
                return job_id
        return self.job_id(task_id, attempt)

    def submit_many(self, tasks: Sequence[NewTask]) -> tuple[list[Submitted], list[Rejection]]:
        """Route tasks; one whose id another owner holds is rejected with `duplicate_id`."""
        owners = self.tasks.claim_ids(tasks)
        accepted = [t for t, o in zip(tasks, owners, strict=True) if o == t.owner]
        clashes = [
            Rejection(
                ErrorCode.DUPLICATE_ID, f"task id {t.id} belongs to another owner", t.id, t.owner
            )
            for t, o in zip(tasks, owners, strict=True)
            if o != t.owner
        ]
        try:
            submitted, outcome = self.tasks.submit_many(accepted)
        except NotReplicated as e:  # stored, and routed: what it placed is dispatched now
            if isinstance(e.outcome, Outcome):
                self.apply(e.outcome)
            raise
        self.apply(outcome)
        return submitted, clashes

    def cancel(self, task_id: str) -> Task | None:
        """Cancel a task: a queued one ends now; a running one once a worker polling its
        driver job has cancelled that job (within a poll interval)."""
        owner = self.tasks.owner_of(task_id)
        if owner is None:
            return None
        _, outcome = self.tasks.cancel(owner, task_id)
        self.apply(outcome)
        return self.tasks.get(task_id, owner)
