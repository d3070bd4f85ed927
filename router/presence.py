"""Which Redis a process talks to, and which processes are alive on it: routers (their
heartbeats in `Keys.routers`), rq workers (rq's own registry, counted as `rq info` counts
them) and `byoa api` processes (heartbeats in `Keys.api_processes`, from `ApiBeat`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from router.core import Router
from router.keys import Keys
from router.redis_url import shown, where

log = logging.getLogger(__name__)

API_BEAT_SECONDS = 5.0
"""How often a `byoa api` process writes its heartbeat (two commands: cost nil)."""
API_DEAD_SECONDS = 3 * API_BEAT_SECONDS
"""An API process silent this long is not counted as alive."""
API_FORGET_SECONDS = 3600.0
"""Heartbeats older than this are dropped by any beat, so killed processes leave no trace."""


def redis_address(redis: Redis) -> dict[str, Any]:
    """Where `redis` connects: scheme, host, port, db (or a socket's path, or the sentinels
    and the master's name), never the user nor the password."""
    return where(redis)


def redis_url_shown(address: dict[str, Any]) -> str:
    """`redis_address` as a URL without credentials: `redis://127.0.0.1:6379/0`."""
    return shown(address)


def redis_now_ms(redis: Redis) -> int:
    """Redis's clock (every process's heartbeat is on it, whatever the hosts' clocks say)."""
    seconds, micros = redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass(frozen=True)
class Presence:
    """Processes alive on this Redis and key prefix."""

    routers: int
    """Routers whose heartbeat is younger than `router_dead_seconds`."""
    workers: int
    """rq workers registered on the task queue (rq drops a killed one when its key
    expires, after its worker TTL)."""
    api: int
    """`byoa api` processes whose heartbeat is younger than API_DEAD_SECONDS."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def presence(router: Router) -> Presence:
    """Count the live routers, workers and API processes (a few round trips)."""
    redis, keys = router.redis, router.keys
    now_ms = redis_now_ms(redis)
    router_cutoff = now_ms - round(router.settings.router_dead_seconds * 1000)
    worker_keys = Worker.all_keys(queue=router.queue)
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(keys.routers, router_cutoff, "+inf")
    pipe.zcount(keys.api_processes, now_ms - round(API_DEAD_SECONDS * 1000), "+inf")
    for key in worker_keys:
        pipe.exists(key)
    routers, api, *workers = pipe.execute()
    return Presence(routers=int(routers), workers=sum(map(int, workers)), api=int(api))


class ApiBeat:
    """A `byoa api` process's heartbeat in `Keys.api_processes`, for `byoa status`."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def beat(self) -> None:
        now_ms = redis_now_ms(self.redis)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.api_processes, {self.id: now_ms})
        pipe.zremrangebyscore(
            self.keys.api_processes, "-inf", now_ms - round(API_FORGET_SECONDS * 1000)
        )
        pipe.execute()

    def leave(self) -> None:
        self.redis.zrem(self.keys.api_processes, self.id)

    def run(self, stop: threading.Event) -> None:
        """Beat every API_BEAT_SECONDS until `stop`, then leave; a Redis error skips a beat
        (the API answers 503 meanwhile: that is /readyz's to say, not this thread's)."""
        while True:
            try:
                self.beat()
            except RedisError as e:
                log.debug("api heartbeat failed: %s", type(e).__name__)
            if stop.wait(API_BEAT_SECONDS):
                break
        try:
            self.leave()
        except RedisError as e:
            log.debug("api heartbeat removal failed: %s", type(e).__name__)

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Run the beat on a daemon thread; set the event to stop it (it then leaves)."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="byoa-api-beat", daemon=True)
        thread.start()
        return thread, stop
