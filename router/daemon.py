"""`byoa run`: read the intake list, route what arrives, dead-letter what cannot be a task."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import cast

from redis.exceptions import RedisError

from router import replicas
from router.core import Router
from router.errors import REDIS_OUTAGES, PartialFailure
from router.metrics import INTAKE_MESSAGES, REAPED, ROUTING_LATENCY
from router.models import ErrorCode
from router.presence import redis_address, redis_url_shown
from router.reaper import Reaper
from router.requests import NewTask, Rejection, parse_message
from router.scripts import Outcome, text
from router.tasks import Submitted
from router.times import now_iso
from router.webhooks import HIDDEN, redact

log = logging.getLogger(__name__)

DEAD_LETTER_RAW_BYTES = 4096
"""How much of a rejected message a dead letter keeps."""
REASON_CHARS = 500
"""How much of an unexpected error's text a dead letter keeps."""
INTAKE_IDS = uuid.UUID("6c1f0f5e-6a53-4b6e-9d7e-2f4d1b0c9a11")
"""Namespace of the ids given to intake messages that carry none."""


def _reason(e: BaseException, task: NewTask | None) -> str:
    """An exception as a dead letter's reason: short, valid text, the message's secret hidden."""
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:REASON_CHARS]
    secret = task.webhook.secret if task is not None and task.webhook is not None else None
    if secret is not None:
        reason = reason.replace(secret.get_secret_value(), HIDDEN)
    return reason.encode("utf-8", "backslashreplace").decode()


def _unnumber(entry: bytes) -> tuple[str | None, bytes]:
    """Split `<n>:<message>` as INTAKE_CLAIM numbers every entry it claims (None: an entry
    not claimed by it, e.g. handed to `handle` directly; it gets a random id if it has none)."""
    number, sep, raw = entry.partition(b":")
    if sep and number.isdigit():
        return number.decode(), raw
    return None, entry


@dataclass(frozen=True)
class Handled:
    """What became of one batch: every message is exactly one of these."""

    created: int
    """New tasks (routed, or stored as failed with their error code)."""
    duplicates: int
    """Messages whose id names a task that exists already (idempotent retries)."""
    dead_letters: int


class IntakeDaemon:
    """One router replica's intake loop; any number may run against one Redis."""

    def __init__(self, router: Router, block_seconds: int = 1) -> None:
        self.router = router
        self.keys = router.keys
        self.router_id = uuid.uuid4().hex[:12]
        self.processing = self.keys.intake_processing(self.router_id)
        """Claimed messages, each numbered (`<n>:<message>`), until their batch is handled."""
        self.landing = self.keys.intake_landing(self.router_id)
        """The message a blocking claim took, until INTAKE_CLAIM numbers it into `processing`."""
        self.block_seconds = block_seconds
        self.stopping = threading.Event()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the batch in hand, then stop."""

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def claim(self, n: int | None = None) -> list[bytes]:
        """The batch this replica holds: up to `n` (default a batch) new messages, numbered.

        With nothing new, blocks up to `block_seconds` for one message. `n=0` returns only
        what it already holds (after an outage or a takeover).
        """
        batch = self.router.settings.intake_batch if n is None else n
        items = self._claim(batch)
        if items or n == 0:
            return items
        moved = self.router.redis.blmove(
            self.keys.intake, self.landing, self.block_seconds, "RIGHT", "LEFT"
        )
        return self._claim(batch - 1) if moved is not None else []

    def _claim(self, n: int) -> list[bytes]:
        """INTAKE_CLAIM; with replicas wanted, a batch is this router's only once they have
        the claim (its numbers name the tasks of messages without an id): NotReplicated
        otherwise, and the batch, still held, is claimed again with `claim(0)`."""
        keys = [self.keys.intake, self.landing, self.processing, self.keys.intake_counter]
        settings = self.router.settings
        if not replicas.wanted(settings):
            items: list[bytes] = self.router.scripts.intake_claim(keys=keys, args=[n])
            return items
        pipe = self.router.redis.pipeline(transaction=False)
        self.router.scripts.intake_claim(keys=keys, args=[n], client=pipe)
        replicas.queue_wait(pipe, settings)
        items, acked = pipe.execute()
        if items:
            replicas.check(acked, settings, f"the claim of {len(items)} intake messages")
        return items

    def take_over_dead_routers(self) -> int:
        """Handle the claimed messages of routers that stopped beating; returns how many."""
        redis, settings = self.router.redis, self.router.settings
        seconds, micros = redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        redis.zadd(self.keys.routers, {self.router_id: now_ms})
        cutoff = now_ms - round(settings.router_dead_seconds * 1000)
        taken = 0
        for dead in redis.zrangebyscore(self.keys.routers, "-inf", cutoff):
            dead_id = text(cast(bytes, dead))
            keys = [
                self.keys.intake_landing(dead_id),
                self.keys.intake_processing(dead_id),
                self.landing,
                self.processing,
            ]
            moved = int(self.router.scripts.intake_takeover(keys=keys))
            if moved:
                log.warning("router %s is gone: handling its %d messages", dead_id, moved)
                taken += moved
                self.handle(self.claim(0))
            redis.zrem(self.keys.routers, dead_id)
        return taken

    def deregister(self) -> None:
        """Leave the list of live routers, unless messages are still held (then another
        router takes them over once this one's heartbeat is old)."""
        if self.router.redis.llen(self.processing) or self.router.redis.llen(self.landing):
            log.warning("stopping with claimed messages: another router will take them over")
            return
        self.router.redis.zrem(self.keys.routers, self.router_id)

    def handle(self, raw_messages: Sequence[bytes]) -> Handled:
        """Route one batch; store or dead-letter every rejection; say what became of it.

        Whatever goes wrong with one message (any exception but a Redis outage, which is
        raised: the batch stays held and is handled again) dead-letters that message with
        `internal_error` and the reason; the rest of the batch goes on.
        """
        started = time.perf_counter()
        INTAKE_MESSAGES.inc(len(raw_messages))
        items = [self._parse(entry) for entry in raw_messages]
        tasks = [task for _, task in items if isinstance(task, NewTask)]
        dead = [(r, raw) for raw, r in items if isinstance(r, Rejection)]
        raw_of = {task.id: raw for raw, task in items if isinstance(task, NewTask)}
        try:
            submitted, clashes = self.router.submit_many(tasks) if tasks else ([], [])
            created = sum(1 for s in submitted if s.created)
        except REDIS_OUTAGES:
            raise
        except Exception as e:
            log.warning(
                "a batch of %d failed (%s): submitting its messages one by one",
                len(tasks),
                type(e).__name__,
            )
            submitted, clashes, created = self._submit_each(tasks, raw_of, dead, e)
        elapsed = time.perf_counter() - started
        for _ in tasks:
            ROUTING_LATENCY.observe(elapsed)
        dead += [(c, raw_of.get(c.task_id or "", b"")) for c in clashes]
        if dead:
            self.dead_letter(dead)
        self.router.redis.delete(self.processing)  # after SUBMIT's WAIT, if replicas are wanted
        return Handled(created, len(submitted) - created, len(dead))

    def _parse(self, entry: bytes) -> tuple[bytes, NewTask | Rejection]:
        """A claimed entry as a task to submit (maybe a stored failure) or a dead letter."""
        number, raw = _unnumber(entry)
        try:
            default_id = (
                uuid.uuid5(INTAKE_IDS, f"{self.keys.prefix}:{number}").hex if number else None
            )
            parsed = parse_message(raw, self.router.settings, default_id)
            if isinstance(parsed, Rejection):
                return raw, parsed.as_failed_task() or parsed
            return raw, parsed
        except Exception as e:
            return raw, Rejection(ErrorCode.INTERNAL_ERROR, _reason(e, None))

    def _submit_each(
        self,
        tasks: Sequence[NewTask],
        raw_of: dict[str, bytes],
        dead: list[tuple[Rejection, bytes]],
        error: Exception,
    ) -> tuple[list[Submitted], list[Rejection], int]:
        """After a batch failed: submit its tasks one at a time, dead-lettering those that
        fail alone. SUBMIT is idempotent by id (a message without one has its claim number's
        id), so what the batch call made comes back as a duplicate, counted as created."""
        created_ids: set[str] = set()
        if isinstance(error, PartialFailure):
            done, outcome = cast(tuple[list[Submitted], Outcome], error.done)
            created_ids = {s.task_id for s in done if s.created}
            try:
                self.router.apply(outcome)  # what the batch placed is dispatched now
            except REDIS_OUTAGES:
                raise
            except Exception as e:  # the reaper dispatches it after the dispatch lease
                log.warning("dispatching a failed batch's placements: %s", type(e).__name__)
        submitted: list[Submitted] = []
        clashes: list[Rejection] = []
        for task in tasks:
            try:
                one, clash = self.router.submit_many([task])
            except REDIS_OUTAGES:
                raise
            except Exception as e:
                reason = _reason(e, task)
                dead.append(
                    (
                        Rejection(ErrorCode.INTERNAL_ERROR, reason, task.id, task.owner),
                        raw_of[task.id],
                    )
                )
                continue
            submitted += one
            clashes += clash
        created = sum(1 for s in submitted if s.created or s.task_id in created_ids)
        return submitted, clashes, created

    def dead_letter(self, items: Sequence[tuple[Rejection, bytes]]) -> None:
        """Keep each rejected message with its reason, newest first, bounded in number."""
        now = now_iso()
        pipe = self.router.redis.pipeline(transaction=False)
        for rejection, raw in items:
            entry = {
                "code": str(rejection.code),
                "message": rejection.message,
                "at": now,
                "raw": redact(raw)[:DEAD_LETTER_RAW_BYTES].decode("utf-8", "replace"),
            }
            pipe.lpush(self.keys.dead_letters, json.dumps(entry))
            log.warning("dead letter: %s: %s", rejection.code, rejection.message)
        pipe.ltrim(self.keys.dead_letters, 0, self.router.settings.dead_letter_max - 1)
        pipe.hincrby(self.keys.global_stats, "dead_letters", len(items))
        pipe.execute()

    def run(self) -> None:
        """Claim and handle batches until asked to stop; reap and beat once a second."""
        reaper = Reaper(self.router)
        interval = self.router.settings.reap_interval_seconds
        next_beat = 0.0
        where = redis_url_shown(redis_address(self.router.redis))
        log.info("router %s reading %s on %s", self.router_id, self.keys.intake, where)
        backoff, resume = 0.1, False
        while not self.stopping.is_set():
            try:
                if resume:  # a batch cut short by an outage is still in `processing`
                    held = self.claim(0)
                    if held:
                        self.handle(held)
                    resume = False
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + interval
                    self.take_over_dead_routers()
                    REAPED.inc(reaper.reap_leases())
                    reaper.wake_accounts()
                batch = self.claim()
                if batch:
                    self.handle(batch)  # claimed messages stay in `processing` until done
                backoff = 0.1
            except REDIS_OUTAGES as e:
                resume = reaper.grace = True
                log.warning("Redis unreachable (%s); retrying in %.1f s", e, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        with contextlib.suppress(RedisError):
            self.deregister()
        log.info("router %s stopped", self.router_id)
