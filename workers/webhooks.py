"""Delivers webhooks: POSTs a task's record to its endpoint; runs in every worker process.
A task submitted through one of the HTTP APIs gets the body that API's clients expect
(`render`): the midjourney-proxy API's task JSON, or the task API's `{timestamp, data}`.

Deliveries are claimed from the owners' outboxes for a while (`router.webhooks.Outbox`),
so one whose deliverer dies comes due again for another: delivery is at least once. It is
off the routing path: a slow endpoint holds one of this process's delivery threads, no
task and no slot.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import SecretStr

from router.api import envelope
from router.api import mjapi_models as mj
from router.core import Router
from router.scripts import text, text_hash
from router.tasks import Task
from router.webhooks import Delivery, Outbox, OutboxClaim, body_format_key
from workers.drivers.base import frames
from workers.jobs import keep_running, retrying

log = logging.getLogger(__name__)

USER_AGENT = "byoa-router"
MAX_ANSWER_BYTES = 65536
"""How much of an endpoint's answer is read (and dropped)."""


def render(task: Task, event: str, body_format: str | None) -> Any:
    """A delivery's body in the task's body format (`router.webhooks.body_format_key`):
    the midjourney-proxy API's task JSON, the task API's `{timestamp, data}` (`data` as
    its `GET` answers it), or (none, or one this version does not know) our task record."""
    if body_format == mj.HOOK_FORMAT:
        return mj.task_json(task)
    if body_format == envelope.HOOK_FORMAT:
        return envelope.hook_body(task, event)
    return task.public()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery, not followed: the secret header would go along."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Deliverer:
    """Claims due deliveries and POSTs them from a pool of threads."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.settings = router.settings
        self.outbox = Outbox(router.redis, router.keys, router.scripts)
        self.threads = ThreadPoolExecutor(
            self.settings.webhook_threads, thread_name_prefix="byoa-webhook"
        )
        self._free = threading.Semaphore(self.settings.webhook_threads)
        self._opener = urllib.request.build_opener(_NoRedirects)

    @property
    def hold_us(self) -> int:
        """How long a claimed delivery stays this process's: longer than one POST."""
        return round((2 * self.settings.webhook_timeout_seconds + 1) * 1e6)

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set, waiting out Redis outages."""
        idle = self.settings.poll_interval_seconds
        keep_running(self.dispatch, stop, "webhook deliverer", idle)

    def dispatch(self) -> float:
        """Hand due deliveries to free threads; returns how long to wait before looking again."""
        if not self._free.acquire(timeout=0.2):
            return 0.0  # every thread is busy
        n = 1
        while n < self.settings.webhook_threads and self._free.acquire(blocking=False):
            n += 1
        try:
            claim = self.outbox.claim(n, self.hold_us)
        except BaseException:
            for _ in range(n):
                self._free.release()
            raise
        for _ in range(n - len(claim.deliveries)):
            self._free.release()
        for d in claim.deliveries:
            self.threads.submit(self._deliver_then_free, d)
        return 0.0 if len(claim.deliveries) == n else self._wait(claim)

    def deliver_due(self) -> float:
        """Deliver what is due now and wait for it (for a burst worker); returns how long
        until more may be due."""
        claim = self.outbox.claim(self.settings.webhook_threads, self.hold_us)
        list(self.threads.map(self._deliver_safely, claim.deliveries))
        return 0.0 if claim.deliveries else self._wait(claim)

    def _wait(self, claim: OutboxClaim) -> float:
        interval = self.settings.poll_interval_seconds
        if claim.next_due_us is None:
            return interval
        return min(interval, max(0.001, (claim.next_due_us - claim.now_us) / 1e6))

    def _deliver_then_free(self, d: Delivery) -> None:
        try:
            self._deliver_safely(d)
        finally:
            self._free.release()

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
        task, secret, body_format = retrying(lambda: self._read(d))
        if task is None or task.webhook_endpoint is None:
            self.outbox.drop(d)  # the record expired: nothing to tell
            return "stale"
        body = render(task, d.event, body_format)
        error = self.post(task.webhook_endpoint, d.event, body, secret)
        attempts = s.webhook_retries + 1
        backoff_us = round(s.webhook_backoff_seconds * 1e6)
        verdict = retrying(lambda: self.outbox.record(d, error, attempts, backoff_us))
        if error:
            log.info("webhook of %s/%s: %s (%s)", d.owner, d.member, error, verdict)
        else:
            log.info("webhook of %s/%s delivered", d.owner, d.member)
        return verdict

    def _read(self, d: Delivery) -> tuple[Task | None, SecretStr | None, str | None]:
        """The task's record, its webhook secret and its body's format (None: our record;
        else the API's, `render`), in one round trip."""
        keys = self.router.keys
        pipe = self.router.redis.pipeline(transaction=False)
        pipe.hgetall(keys.task(d.owner, d.task_id))
        pipe.get(keys.webhook_secret(d.owner, d.task_id))
        pipe.get(body_format_key(keys, d.owner, d.task_id))
        raw, secret, body_format = pipe.execute()
        task = Task.from_hash(text_hash(raw)) if raw else None
        return (
            task,
            SecretStr(text(secret)) if secret else None,
            text(body_format) if body_format else None,
        )

    def post(self, url: str, event: str, body: Any, secret: SecretStr | None) -> str:
        """'' if the endpoint answered 2xx, else `HTTP <status>` or the exception's name."""
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-webhook-event": event,
        }
        if secret is not None:
            headers["x-webhook-secret"] = secret.get_secret_value()
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.settings.webhook_timeout_seconds) as r:
                r.read(MAX_ANSWER_BYTES)
                status = int(r.status)
        except urllib.error.HTTPError as e:
            e.close()
            return f"HTTP {e.code}"
        except urllib.error.URLError as e:
            reason = e.reason
            return type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        except (OSError, http.client.HTTPException, ValueError) as e:
            return type(e).__name__
        return "" if 200 <= status < 300 else f"HTTP {status}"
