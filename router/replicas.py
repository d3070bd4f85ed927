"""Acknowledged means durable: before a write is reported done, `redis_min_replicas`
replicas have it (Redis WAIT, up to `redis_wait_timeout_seconds`), or the caller gets
NotReplicated and retries the same idempotent call.

WAIT counts the replicas that have every write made so far on its own connection, so it
ends the pipeline that made the write (one connection, one server: a WAIT on a connection
opened after a failover would vouch for the new primary, not for the write). A reader
about to announce what it read (a terminal state to `Client.wait`, a webhook) ends its
read with a PUBLISH, which every replica must receive, and WAIT: the replicas then hold
everything that server held when the record was read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline

from router.errors import NotReplicated
from router.keys import Keys
from router.settings import Settings


def wanted(settings: Settings) -> int:
    """Replicas a write must reach before it is reported done (0: none is waited for)."""
    return settings.redis_min_replicas


def queue_wait(pipe: Pipeline, settings: Settings) -> bool:
    """End `pipe` with WAIT, if replicas are wanted; whether it did (its reply is then the
    pipeline's last, for `check`)."""
    n = wanted(settings)
    if n <= 0:
        return False
    pipe.wait(n, round(settings.redis_wait_timeout_seconds * 1000))
    return True


def check(acked: Any, settings: Settings, what: str, outcome: object = None) -> None:
    """NotReplicated unless WAIT's reply `acked` reaches `redis_min_replicas`."""
    n = wanted(settings)
    if isinstance(acked, Exception):
        raise acked
    if int(acked) < n:
        raise NotReplicated(
            f"{what} was written, but {int(acked)} of the {n} replicas it needs acknowledged "
            f"it within {settings.redis_wait_timeout_seconds:g} s; retry the same call (the "
            "same task id or Idempotency-Key): it is found again, not made twice",
            outcome=outcome,
        )


def read_durably(
    redis: Redis, keys: Keys, settings: Settings, reads: Callable[[Pipeline], object], what: str
) -> list[Any]:
    """The replies of the reads `reads` queues, in one round trip, once the replicas hold
    what they read (PUBLISH and WAIT after them, on the same connection); NotReplicated
    otherwise. With no replicas wanted, just the reads."""
    pipe = redis.pipeline(transaction=False)
    reads(pipe)
    n = len(pipe)
    if wanted(settings) > 0:
        pipe.publish(keys.sync_channel, "")
        queue_wait(pipe, settings)
    replies = pipe.execute()
    if len(replies) > n:
        check(replies[-1], settings, what)
    return list(replies[:n])
