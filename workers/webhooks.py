"""Delivers webhooks: POSTs a task's record to its endpoint; runs in every worker process.
A task submitted through one of the HTTP APIs gets the body that API's clients expect
(`render`): the midjourney-proxy API's task JSON, or the task API's `{timestamp, data}`.

Deliveries are claimed from the owners' outboxes for a while (`router.webhooks.Outbox`),
so one whose deliverer dies comes due again for another: delivery is at least once. It is
off the routing path: a slow endpoint holds one of this process's delivery threads (and
one of its owner's few), for one deadline at most, no task and no slot. A webhook reaches
public addresses only, and the networks the operator allows (`workers.webhook_post`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from typing import Any

from pydantic import SecretStr
from redis.client import Pipeline

from router import replicas
from router.api import envelope
from router.api import mjapi_models as mj
from router.core import Router
from router.driver import frames
from router.errors import NotReplicated
from router.scripts import text, text_hash
from router.tasks import Task
from router.webhooks import Delivery, Outbox, OutboxClaim
from workers.jobs import keep_running, retrying
from workers.webhook_post import REFUSED, Poster

log = logging.getLogger(__name__)

USER_AGENT = "byoa-router"


def render(task: Task, event: str, body_format: str | None) -> Any:
    """A delivery's body in the task's body format (`Keys.hook_format`):
    the midjourney-proxy API's task JSON, the task API's `{timestamp, data}` (`data` as
    its `GET` answers it), or (none, or one this version does not know) our task record."""
    if body_format == mj.HOOK_FORMAT:
        return mj.task_json(task)
    if body_format == envelope.HOOK_FORMAT:
        return envelope.hook_body(task, event)
    return task.public()


def event_id(task: Task, event: str) -> str:
    """A delivery's stable id, `<task>/<attempt>/<event>` (`x-webhook-id`): the same on
    every POST of one event of one attempt (a retry after a lost answer, a delivery that
    another worker takes over), so a receiver that keeps the ids it has handled handles
    each event once."""
    return f"{task.id}/{task.attempt}/{event}"


class Deliverer:
    """Claims due deliveries and POSTs each on a thread of its own, at most
    `webhook_threads` at once and `webhook_owner_threads` of one owner's, so an owner whose
    endpoints are slow holds its own threads only. Each POST has one deadline for all of
    it (`workers.webhook_post`), so a claim (held twice that) never lapses under a POST
    still running: nothing is POSTed twice at once."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.settings = router.settings
        self.outbox = Outbox(router.redis, router.keys, router.scripts)
        self.poster = Poster(self.settings.webhook_allowed_networks)
        self._busy: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._ended = 0
        """Deliveries ended so far: a dispatcher waiting for a free thread is woken."""
        self._threads: set[threading.Thread] = set()

    @property
    def hold_us(self) -> int:
        """How long a claimed delivery stays this process's: longer than reading it (its
        WAIT for the replicas included) and one POST."""
        s = self.settings
        return round((2 * s.webhook_timeout_seconds + 1 + s.redis_wait_timeout_seconds) * 1e6)

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set, waiting out Redis outages."""
        idle = self.settings.poll_interval_seconds
        keep_running(self.dispatch, stop, "webhook deliverer", idle)

    def dispatch(self) -> float:
        """Start due deliveries on free threads; returns 0 (it waits itself, until the next
        delivery is due or a thread frees, whichever comes first)."""
        s = self.settings
        with self._changed:
            ended, free = self._ended, s.webhook_threads - sum(self._busy.values())
            busy = dict(self._busy)
        wait = 0.2

        def room(owner: str) -> int:
            return s.webhook_owner_threads - busy.get(owner, 0)

        if free > 0:
            claim = self.outbox.claim(free, self.hold_us, room)
            for d in claim.deliveries:
                self._start(d)
            if len(claim.deliveries) == free:
                return 0.0
            wait = self._wait(claim)
        with self._changed:
            if self._ended == ended:
                self._changed.wait(wait)
        return 0.0

    def deliver_due(self) -> float:
        """Deliver what is due now and wait for it (for a burst worker); returns how long
        until more may be due."""
        claim = self.outbox.claim(self.settings.webhook_threads, self.hold_us)
        for thread in [self._start(d) for d in claim.deliveries]:
            thread.join()
        return 0.0 if claim.deliveries else self._wait(claim)

    def close(self, grace: float) -> None:
        """A warm shutdown: POSTs under way get `grace` seconds (at most their own deadline),
        then their connections are shut. What they did not record stays claimed, and comes
        due again for another worker after the claim's hold."""
        end = time.monotonic() + grace
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))
        self.poster.deadlines.abort_all()

    def _wait(self, claim: OutboxClaim) -> float:
        interval = self.settings.poll_interval_seconds
        if claim.next_due_us is None:
            return interval
        return min(interval, max(0.001, (claim.next_due_us - claim.now_us) / 1e6))

    def _start(self, d: Delivery) -> threading.Thread:
        with self._changed:
            self._busy[d.owner] += 1
        thread = threading.Thread(
            target=self._deliver_then_free, args=(d,), name="byoa-webhook", daemon=True
        )
        self._threads.add(thread)
        thread.start()
        return thread

    def _deliver_then_free(self, d: Delivery) -> None:
        try:
            self._deliver_safely(d)
        finally:
            with self._changed:
                self._busy[d.owner] -= 1
                if self._busy[d.owner] <= 0:
                    del self._busy[d.owner]
                self._ended += 1
                self._changed.notify_all()
            self._threads.discard(threading.current_thread())

    def _deliver_safely(self, d: Delivery) -> None:
        try:
            self.deliver(d)
        except Exception as e:  # it stays claimed, and comes due again after the hold
            # Named by class and place only: its text may quote the secret or the endpoint.
            name = type(e).__name__
            log.error(
                "delivering the webhook of %s/%s failed: %s\n%s", d.owner, d.member, name, frames(e)
            )

    def deliver(self, d: Delivery) -> str:
        """POST the task's current record once and record the result: 'delivered',
        'retry' (due again after a backoff), 'failed' (out of attempts) or 'stale'."""
        s = self.settings
        read = self._read_durably(d)
        if read is None:  # it stays claimed, and comes due again after the hold
            log.info("webhook of %s/%s waits for the replicas", d.owner, d.member)
            return "unreplicated"
        task, secret, body_format = read
        if task is None or task.webhook_endpoint is None:
            self.outbox.drop(d)  # the record expired: nothing to tell
            return "stale"
        body = render(task, d.event, body_format)
        error = self.post(task.webhook_endpoint, d.event, body, secret, event_id(task, d.event))
        attempts = 1 if error == REFUSED else s.webhook_retries + 1  # refused: for good
        backoff_us = round(s.webhook_backoff_seconds * 1e6)
        verdict = retrying(lambda: self.outbox.record(d, error, attempts, backoff_us))
        if error:
            log.info("webhook of %s/%s: %s (%s)", d.owner, d.member, error, verdict)
        else:
            log.info("webhook of %s/%s delivered", d.owner, d.member)
        return verdict

    def _read_durably(self, d: Delivery) -> tuple[Task | None, SecretStr | None, str | None] | None:
        """`_read`, waiting out a Redis outage as ever, and the replicas for up to half a
        POST's deadline (None: they did not acknowledge it in that time)."""
        deadline = time.monotonic() + self.settings.webhook_timeout_seconds / 2

        def once() -> tuple[Task | None, SecretStr | None, str | None] | NotReplicated:
            try:
                return self._read(d)
            except NotReplicated as e:  # not an outage to wait out here: see the deadline
                return e

        while True:
            read = retrying(once)
            if not isinstance(read, NotReplicated):
                return read
            if time.monotonic() >= deadline:
                return None

    def _read(self, d: Delivery) -> tuple[Task | None, SecretStr | None, str | None]:
        """The task's record, its webhook secret and its body's format (None: our record;
        else the API's, `render`), in one round trip; with `redis_min_replicas`, once the
        replicas have what was read (NotReplicated otherwise): a state a failover could
        take back, and then reach again, is never announced."""
        keys = self.router.keys

        def reads(pipe: Pipeline) -> None:
            pipe.hgetall(keys.task(d.owner, d.task_id))
            pipe.get(keys.webhook_secret(d.owner, d.task_id))
            pipe.get(keys.hook_format(d.owner, d.task_id))

        raw, secret, body_format = replicas.read_durably(
            self.router.redis, keys, self.settings, reads, f"the webhook of {d.member}"
        )
        task = Task.from_hash(text_hash(raw)) if raw else None
        return (
            task,
            SecretStr(text(secret)) if secret else None,
            text(body_format) if body_format else None,
        )

    def post(
        self, url: str, event: str, body: Any, secret: SecretStr | None, event_id: str = ""
    ) -> str:
        """'' if the endpoint answered 2xx in time, else why not (`Poster.post`)."""
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-webhook-event": event,
        }
        if event_id:
            headers["x-webhook-id"] = event_id
        if secret is not None:
            headers["x-webhook-secret"] = secret.get_secret_value()
        data = json.dumps(body).encode()
        return self.poster.post(url, headers, data, self.settings.webhook_timeout_seconds)
