"""A worker process: an rq worker that submits dispatched tasks, plus a poller thread that
follows every submitted job (any worker's) to its end, a thread delivering webhooks, and one
reading accounts' state from their backends at a slow interval."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker
from rq.worker import BaseWorker

from router.core import Router
from workers.backend_sync import BackendSync
from workers.jobs import keep_running, submissions, use_settings
from workers.poller import Poller
from workers.webhooks import Deliverer

log = logging.getLogger(__name__)

COMMAND_WAIT_SECONDS = 1.0
"""How long the thread reading a worker's command channel waits for a message at a time."""


class Worker(SimpleWorker):
    """rq's SimpleWorker (jobs run in this process), whose command channel (`rq` commands:
    stop a job, shut down) is read in waits of COMMAND_WAIT_SECONDS, not rq's 60 s:
    redis-py's `PubSubWorkerThread.stop()` waits for the read in hand, so a worker's
    teardown (a burst's end, a warm shutdown) could otherwise stall a minute."""

    def subscribe(self) -> None:
        """As rq's, with the short wait."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq: None
            sleep_time=COMMAND_WAIT_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


def run_worker(router: Router, burst: bool = False, name: str | None = None) -> None:
    """Work until SIGTERM/SIGINT (rq's warm shutdown); with `burst`, until nothing is left
    to submit or poll. Jobs still running on their accounts stay scheduled for others."""
    use_settings(router.settings)
    if burst:
        drain(router, name=name)
        return
    stop, poller = threading.Event(), Poller(Router(router.settings))
    _ = poller.router.driver
    thread = threading.Thread(target=poller.run, args=(stop,), name="byoa-poller", daemon=True)
    thread.start()
    deliverer = Deliverer(Router(router.settings))
    hooks = threading.Thread(target=deliverer.run, args=(stop,), name="byoa-webhooks", daemon=True)
    hooks.start()
    sync = BackendSync(poller.router)
    syncing = threading.Thread(
        target=keep_running,
        args=(sync.sync_due, stop, "backend sync", 60.0),
        name="byoa-backend-sync",
        daemon=True,
    )
    syncing.start()
    try:
        _rq_loop(router, name)
    finally:
        pool = submissions()
        if pool is not None:  # a warm shutdown: the submissions in hand are finished
            pool.close()
        stop.set()
        hooks.join(timeout=30)
        deliverer.close(router.settings.webhook_timeout_seconds)  # at most one POST's deadline
        thread.join(timeout=30)
        syncing.join(timeout=30)
        poller.threads.shutdown()


def drain(router: Router, worker_class: type[BaseWorker] = Worker, name: str | None = None) -> None:
    """Submit, poll and deliver webhooks until the queue, the schedule of polls and the
    webhook outboxes are all empty."""
    use_settings(router.settings)
    poller = Poller(Router(router.settings, router.redis))
    deliverer = Deliverer(Router(router.settings, router.redis))
    level = logging.getLevelName(logging.getLogger().level)
    try:
        while True:
            worker = worker_class(
                [router.queue], connection=router.redis, name=_name(router, name, 0)
            )
            worker.work(burst=True, logging_level=level)
            pool = submissions()
            if pool is not None:
                pool.wait_idle()
            idle = router.polls.size() == 0 and router.queue.count == 0
            if idle and deliverer.outbox.pending() == 0:
                return
            wait = min(poller.poll_once(), deliverer.deliver_due())
            if router.queue.count == 0 and (router.polls.size() > 0 or deliverer.outbox.pending()):
                time.sleep(wait)  # the next poll or delivery is not due yet
    finally:
        poller.threads.shutdown()
        deliverer.close(router.settings.webhook_timeout_seconds)


def _rq_loop(router: Router, name: str | None) -> None:
    """rq's worker loop, started again with backoff when it exits on losing Redis.

    rq's SimpleWorker runs each job in this process: no fork per job, and the process's
    router (its connection pool, scripts and driver) serves every job. What rq gives stays:
    queues, registries, failure handling, `rq info`, and its warm shutdown (SIGTERM ends
    the job in hand, then the loop). A process killed mid-job loses nothing: the task's
    lease runs out and a router's reaper takes it back or adopts its job."""
    level = logging.getLevelName(logging.getLogger().level)
    backoff = 0.5
    for attempt in itertools.count():
        try:
            worker = Worker(
                [router.queue], connection=router.redis, name=_name(router, name, attempt)
            )
            worker.work(logging_level=level)
            return
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as e:
            log.warning("worker lost Redis (%s); starting again in %.1f s", e, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def _name(router: Router, name: str | None, attempt: int) -> str:
    """rq's keys carry the prefix; a restarted loop registers under a fresh name."""
    if name and attempt == 0:
        return name
    return f"{name or router.keys.prefix}-{uuid.uuid4().hex[:12]}"
