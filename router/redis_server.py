"""Reach the configured Redis, or start a private `redis-server` for a first run."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from router.errors import RedisUnreachable
from router.redis_url import open_redis

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def answers(url: str) -> bool:
    """Whether the Redis that `url` names (a Sentinel's primary too) answers a PING."""
    client = open_redis(url, max_connections=1, pool_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except RedisConnectionError:
        return False
    finally:
        client.close()


def ensure_redis(url: str, timeout: float = 10.0) -> subprocess.Popen[bytes] | None:
    """Return None if Redis at `url` answers; else start redis-server there and return it.

    Only for a local plain `redis://` URL; never falls back to anything but a real server.
    """
    if answers(url):
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or (parts.hostname or "") not in LOCAL_HOSTS:
        raise RedisUnreachable("Redis does not answer at the configured URL")
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnreachable(
            "no Redis answers and redis-server is not installed: install it "
            "(e.g. apt-get install redis-server) or set BYOA_REDIS_URL",
        )
    workdir = tempfile.mkdtemp(prefix="byoa-redis-")
    cmd = [
        exe,
        "--port",
        str(parts.port or 6379),
        "--bind",
        "127.0.0.1",
        "--dir",
        workdir,
        "--save",
        "",
        "--appendonly",
        "yes",
    ]
    if parts.password:
        cmd += ["--requirepass", parts.password]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RedisUnreachable("the private redis-server did not start")
        time.sleep(0.05)
    return proc


def purge(redis: Redis, prefix: str) -> int:
    """Delete every key of one key prefix, rq's keys for its queue and jobs included."""
    deleted = 0
    for pattern in (f"{prefix}:*", f"rq:*{prefix}-*"):
        batch = list(redis.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            deleted += int(redis.delete(*batch[i : i + 500]))
    return deleted
