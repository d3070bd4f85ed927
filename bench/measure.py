"""What the benchmarks read: CPU seconds of processes and of the Redis server, and a wait
on a condition with a deadline."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

from redis import Redis

TICK = os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    """CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def redis_cpu(redis: Redis) -> float:
    """CPU seconds of the Redis server so far."""
    info = redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wait(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `condition` every `every` s; exit with a message after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
