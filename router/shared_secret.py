"""A random secret every process of a deployment shares, kept in Redis and made by whichever
process needs it first (SET NX: one wins): what signs the backends' callback URLs, and
what makes an Idempotency-Key's task id unguessable. Operators configure none of them."""

from __future__ import annotations

import secrets
import threading
import time

from redis import Redis

from router.scripts import text

CACHE_SECONDS = 60.0
"""How long a process uses the secret it read: a Redis that lost it (restarted without
persistence) gets a new one, which every process uses within this long."""


class SharedSecret:
    """The secret at `key`, cached for CACHE_SECONDS."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.redis, self.key = redis, key
        self._held: tuple[float, bytes] | None = None
        self._lock = threading.Lock()

    def fresh(self) -> bytes:
        """The secret as Redis holds it now, made first if there is none."""
        raw = None
        while raw is None:  # one deleted between the two calls is made again
            self.redis.set(self.key, secrets.token_hex(32), nx=True)
            raw = self.redis.get(self.key)
        secret = text(raw).encode()
        with self._lock:
            self._held = (time.monotonic() + CACHE_SECONDS, secret)
        return secret

    def cached(self) -> bytes:
        """The secret this process read less than CACHE_SECONDS ago, else `fresh()`."""
        with self._lock:
            held = self._held
        if held is not None and held[0] > time.monotonic():
            return held[1]
        return self.fresh()
