"""Connections of an HTTP server (the router's port, `byoa api`): each delivers its
request head in time (`router.api.protocol`), and only so many are open at once, within
the process's descriptors (`descriptor_budget`).

One connection past the cap drops the one that has waited longest for a request head,
rather than being refused itself: a liveness probe sends its head at once and is
answered, and someone holding idle sockets must open new ones faster than the cap to keep
anyone out. A connection whose request is in hand is never dropped for another (its body
and its response have deadlines of their own). A dropped or timed-out connection whose
response still sits unread in its buffer is aborted, not closed: a close would wait for a
reader that may never come, holding the descriptor.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any, ClassVar

from router.api.protocol import HeadTimeoutProtocol

BACKLOG = 1024
"""The listen backlog: connections come in bursts (backends' callbacks, a client's pool
opening), and a connection waiting in the kernel's queue costs the process no descriptor."""


def descriptor_budget(configured: int) -> tuple[int, int]:
    """(connections held open at most, connections accepted in one go) within the
    process's open-file limit: a quarter of it, and an eighth. A connection past the cap
    is dropped a few loop turns after it was accepted, so a flood holds a few batches
    more than the cap; this way the process never runs out, and Redis and the next probe
    find a descriptor."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return configured, BACKLOG
    return max(1, min(configured, soft // 4)), max(8, min(BACKLOG, soft // 8))


class CappedProtocol(HeadTimeoutProtocol):
    """HeadTimeoutProtocol with a cap on open connections; see the module. Each server
    gets a class of its own (`capped_protocol`), whose class attributes its connections
    share."""

    max_connections: ClassVar[int] = 512
    live: ClassVar[set[CappedProtocol]] = set()
    """This server's connections not yet dropped."""
    waiting: ClassVar[dict[CappedProtocol, None]] = {}
    """Those waiting for a request head, the longest waiting first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False
        """Never, whatever handlers the access logger has: a callback's request line
        carries its signature."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.live.add(self)
        if len(self.live) > self.max_connections:
            oldest = next((c for c in self.waiting if c is not self), self)
            oldest._drop()  # this one itself only if every other has a request in hand

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def _arm(self) -> None:
        super()._arm()
        self.waiting.pop(self, None)
        self.waiting[self] = None  # the newest waiter

    def _disarm(self) -> None:
        super()._disarm()
        self.waiting.pop(self, None)

    def _head_timed_out(self) -> None:
        self.waiting.pop(self, None)
        super()._head_timed_out()

    def _drop(self) -> None:
        self._disarm()
        self.live.discard(self)
        self._close()

    def _close(self) -> None:
        self.live.discard(self)
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()


def capped_protocol(seconds: float, max_connections: int) -> type[CappedProtocol]:
    """The protocol class for one server's uvicorn `Config(http=...)`: `seconds` for each
    request head, at most `max_connections` open."""
    attributes = {
        "head_timeout": seconds,
        "max_connections": max_connections,
        "live": set(),
        "waiting": {},
    }
    return type("CappedProtocol", (CappedProtocol,), attributes)
