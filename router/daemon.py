"""`byoa run`: read the intake list, route what arrives, dead-letter what cannot be a task."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from router.core import Router
from router.requests import NewTask, Rejection, parse_message

log = logging.getLogger(__name__)

DEAD_LETTER_RAW_BYTES = 4096
"""How much of a rejected message a dead letter keeps."""


class IntakeDaemon:
    """One router replica's intake loop; any number may run against one Redis."""

    def __init__(self, router: Router, block_seconds: int = 1) -> None:
        self.router = router
        self.keys = router.keys
        self.router_id = uuid.uuid4().hex[:12]
        self.processing = self.keys.intake_processing(self.router_id)
        self.block_seconds = block_seconds
        self.stopping = threading.Event()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the batch in hand, then stop."""

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def claim(self) -> list[bytes]:
        """Up to one batch of messages, moved to this replica's processing list."""
        scripts, batch = self.router.scripts, self.router.settings.intake_batch
        keys = [self.keys.intake, self.processing]
        items: list[bytes] = scripts.intake_claim(keys=keys, args=[batch])
        if items:
            return items
        first = self.router.redis.blmove(
            self.keys.intake, self.processing, self.block_seconds, "RIGHT", "LEFT"
        )
        if first is None:
            return []
        more: list[bytes] = scripts.intake_claim(keys=keys, args=[batch - 1])
        return [first if isinstance(first, bytes) else first.encode(), *more]

    def handle(self, raw_messages: Sequence[bytes]) -> int:
        """Route one batch; store or dead-letter every rejection. Returns tasks routed."""
        settings = self.router.settings
        tasks: list[NewTask] = []
        raw_of: dict[str, bytes] = {}
        dead: list[tuple[Rejection, bytes]] = []
        for raw in raw_messages:
            parsed = parse_message(raw, settings)
            if isinstance(parsed, Rejection):
                failed = parsed.as_failed_task()
                if failed is None:
                    dead.append((parsed, raw))
                    continue
                parsed = failed
            tasks.append(parsed)
            raw_of[parsed.id] = raw
        submitted, clashes = self.router.submit_many(tasks) if tasks else ([], [])
        dead += [(c, raw_of.get(c.task_id or "", b"")) for c in clashes]
        if dead:
            self.dead_letter(dead)
        self.router.redis.delete(self.processing)
        return sum(1 for s in submitted if s.created)

    def dead_letter(self, items: Sequence[tuple[Rejection, bytes]]) -> None:
        """Keep each rejected message with its reason, newest first, bounded in number."""
        now = datetime.now(UTC).isoformat()
        pipe = self.router.redis.pipeline(transaction=False)
        for rejection, raw in items:
            entry = {
                "code": str(rejection.code),
                "message": rejection.message,
                "at": now,
                "raw": raw[:DEAD_LETTER_RAW_BYTES].decode("utf-8", "replace"),
            }
            pipe.lpush(self.keys.dead_letters, json.dumps(entry))
            log.warning("dead letter: %s: %s", rejection.code, rejection.message)
        pipe.ltrim(self.keys.dead_letters, 0, self.router.settings.dead_letter_max - 1)
        pipe.execute()

    def run(self) -> None:
        """Claim and handle batches until asked to stop; listed in `<prefix>:routers` meanwhile."""
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(),
        }
        self.router.redis.hset(self.keys.routers, self.router_id, json.dumps(me))
        log.info("router %s reading %s", self.router_id, self.keys.intake)
        try:
            while not self.stopping.is_set():
                batch = self.claim()
                if batch:
                    self.handle(batch)
        finally:
            self.router.redis.hdel(self.keys.routers, self.router_id)
        log.info("router %s stopped", self.router_id)
