"""HTTP benchmark: `POST` of an imagine through one `byoa api` process, next to the intake
list's rate, in one run on one Redis.

Rows: the unified task API (`POST /api/v1/task`) at a steady offered rate (open loop:
requests leave on a schedule whatever the answers, and latency counts from the scheduled
send, so queueing in the server is not hidden by a client that waits); the most
submissions/s the process sustains with N concurrent keep-alive connections (closed
loop), for the task API and for the midjourney-proxy API (`POST /mj/submit/imagine`);
and, in the same run, the intake list: tasks/s of one router's intake loop routing the
same imagines pushed with LPUSH (`bench.route_throughput.routed_rate`), and p50/p99 from
LPUSH to rq job enqueued at the same offered rate through a `byoa run` process. No worker
runs: tasks stay placed (rq jobs enqueued) or wait in their owner's line. Each row gives
the api process's CPU per request (from /proc/<pid>/stat), the Redis server's, and the
load generator's own CPU (one asyncio thread on raw keep-alive sockets), so a generator
near one core would show it is the bottleneck. Uses its own key prefixes on
BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and deletes them afterwards.

    python -m bench.http_api [--rates 500,250] [--seconds 10] [--closed-seconds 5]
        [--connections 16,32,64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from redis import Redis

from bench.measure import proc_cpu, redis_cpu, self_cpu
from bench.route_throughput import SMALL_POOL, dispatch_latency, routed_rate
from router.accounts import AccountSpec
from router.core import Router
from router.redis_server import purge
from router.settings import Settings

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
OWNER = "owner0"
ACCOUNTS = 1500
"""One owner's accounts, 100 fast and 100 relax slots each: 150,000 tasks placed at once
before any waits in line (a whole default run submitted about 120,000 on 2026-12-01)."""
TASK_PATH = "/api/v1/task"
MJ_PATH = "/mj/submit/imagine"
MAX_CONNECTIONS = 256
"""Open loop: connections opened when none is free, at most; then requests wait for one
(the wait counts in their latency, which runs from the scheduled send)."""


@dataclass
class Row:
    name: str
    requests: int
    seconds: float
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    api_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0
    lag_p99_ms: float | None = None
    """Open loop: how late the generator sent its requests (p99), part of the latency."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")

    def summary(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        return {
            **out,
            "rate": self.rate,
            "p50_ms": self.pct(0.5),
            "p99_ms": self.pct(0.99),
            "api_cpu_ms_per_request": 1000 * self.api_cpu_s / max(1, self.requests),
            "redis_cpu_ms_per_request": 1000 * self.redis_cpu_s / max(1, self.requests),
            "generator_cores": self.generator_cpu_s / self.seconds,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    """One API's imagine: where to POST it, with which key header and body."""

    name: str
    path: str
    header: str
    body: Callable[[int], dict[str, object]]
    accepted: Callable[[dict[str, object]], bool]


def task_api(key: str) -> Target:
    def body(i: int) -> dict[str, object]:
        prompt = {"prompt": f"a cat {i}", "process_mode": "fast"}
        return {"model": "midjourney", "task_type": "imagine", "input": prompt}

    return Target("task API", TASK_PATH, f"x-api-key: {key}", body, lambda a: a["code"] == 200)


def mj_api(key: str) -> Target:
    def body(i: int) -> dict[str, object]:
        return {"prompt": f"a cat {i} --fast"}

    return Target(
        "midjourney-proxy",
        MJ_PATH,
        f"mj-api-secret: {key}",
        body,
        lambda a: a["code"] in (1, 22),  # submitted, or waiting in line (both accepted)
    )


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def post(self, target: Target, i: int) -> tuple[int, dict[str, object]]:
        body = json.dumps(target.body(i)).encode()
        head = (
            f"POST {target.path} HTTP/1.1\r\nHost: bench\r\n{target.header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


async def _open_loop(port: int, target: Target, rate: float, seconds: float) -> Row:
    """`rate` requests/s for `seconds` on a schedule; latency from each scheduled send."""
    n = int(rate * seconds)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for c in await asyncio.gather(*(Connection.open(port) for _ in range(64))):
        idle.put_nowait(c)
    row = Row(f"{target.name}, open loop at {rate:g}/s", n, seconds)
    lags: list[float] = []
    pending: set[asyncio.Task[None]] = set()
    opened = [64]

    async def one(i: int, due: float) -> None:
        if idle.empty() and opened[0] < MAX_CONNECTIONS:  # an open-loop client opens more
            opened[0] += 1
            conn = await Connection.open(port)
        else:
            conn = await idle.get()
        status, answer = await conn.post(target, i)
        row.latencies_ms.append((time.perf_counter() - due) * 1000)
        row.errors += status != 200 or not target.accepted(answer)
        idle.put_nowait(conn)

    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append((time.perf_counter() - due) * 1000)
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    row.seconds = time.perf_counter() - start
    row.lag_p99_ms = sorted(lags)[int(len(lags) * 0.99)]
    while not idle.empty():
        idle.get_nowait().close()
    return row


async def _closed_loop(port: int, target: Target, connections: int, seconds: float) -> Row:
    """`connections` clients, each sending its next request when the last is answered."""
    conns = await asyncio.gather(*(Connection.open(port) for _ in range(connections)))
    row = Row(f"{target.name}, closed loop, {connections} connections", 0, seconds)
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client(conn: Connection) -> None:
        while (sent := time.perf_counter()) < deadline:
            status, answer = await conn.post(target, next(counter))
            row.latencies_ms.append((time.perf_counter() - sent) * 1000)
            row.requests += 1
            row.errors += status != 200 or not target.accepted(answer)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    row.seconds = time.perf_counter() - start
    for c in conns:
        c.close()
    return row


def measured(api_pid: int, redis: Redis, run: Callable[[], Row]) -> Row:
    """`run()`, with the api process's, the Redis server's and this process's CPU."""
    api0, redis0, gen0 = proc_cpu(api_pid), redis_cpu(redis), self_cpu()
    row = run()
    row.api_cpu_s = proc_cpu(api_pid) - api0
    row.redis_cpu_s = redis_cpu(redis) - redis0
    row.generator_cpu_s = self_cpu() - gen0
    return row


@contextmanager
def api_process() -> Iterator[tuple[Router, subprocess.Popen[bytes], int, str]]:
    """One `byoa api` on a fresh prefix, one owner's pool, and a key of that owner."""
    settings = Settings(redis_url=URL, key_prefix=f"bench{uuid.uuid4().hex[:8]}")
    router = Router(settings)
    env = {
        **os.environ,
        "BYOA_REDIS_URL": URL,
        "BYOA_KEY_PREFIX": settings.key_prefix,
        "BYOA_METRICS_ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "router", "--log-level", "WARNING"]
    proc = None
    try:
        for i in range(ACCOUNTS):
            spec = AccountSpec(
                id=f"acct{i}",
                owner=OWNER,
                plan="pro",
                fast_limit=100,
                relax_limit=100,
                fast_hours=1000,
            )
            router.pool.add(spec)
        made = subprocess.run(
            [*cmd, "keys", "create", "--owner", OWNER, "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
        key = json.loads(made.stdout)["key"]
        port = free_port()
        proc = subprocess.Popen([*cmd, "api", "--host", "127.0.0.1", "--port", str(port)], env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("`byoa api` did not become ready")
            time.sleep(0.1)  # polling a process that starts, with a deadline
        yield router, proc, port, key
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        purge(router.redis, settings.key_prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,250", help="open loops, requests/s")
    parser.add_argument("--seconds", type=float, default=10, help="open loop duration")
    parser.add_argument("--closed-seconds", type=float, default=5, help="each closed loop")
    parser.add_argument("--connections", default="16,32,64", help="closed loops' clients")
    parser.add_argument("--tasks", type=int, default=5000, help="intake list: tasks routed")
    parser.add_argument("--repeat", type=int, default=3, help="intake rate: median of this many")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    fan = [int(c) for c in args.connections.split(",")]
    rows: list[Row] = []
    with api_process() as (router, proc, port, key):
        redis = router.redis

        for target in (task_api(key), mj_api(key)):  # warm up both paths, not measured
            asyncio.run(_closed_loop(port, target, 8, 1.0))
        tasks = task_api(key)
        for rate in [float(r) for r in args.rates.split(",")]:
            open_loop = _open_loop(port, tasks, rate, args.seconds)
            rows.append(measured(proc.pid, redis, lambda o=open_loop: asyncio.run(o)))
        for target in (tasks, mj_api(key)):
            for n in fan:
                closed = _closed_loop(port, target, n, args.closed_seconds)
                rows.append(measured(proc.pid, redis, lambda c=closed: asyncio.run(c)))
    intake = statistics.median(routed_rate(SMALL_POOL, args.tasks) for _ in range(args.repeat))
    rate = float(args.rates.split(",")[0])
    p50, p99 = dispatch_latency(rate, 6)

    print(
        f"{'path':<44}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'api CPU ms/req':>15}{'Redis ms/req':>13}{'generator cores':>16}"
    )
    for r in rows:
        s = r.summary()
        print(
            f"{r.name:<44}{r.rate:>8.0f}{r.pct(0.5):>8.2f}{r.pct(0.99):>8.2f}{r.errors:>7}"
            f"{s['api_cpu_ms_per_request']:>15.3f}{s['redis_cpu_ms_per_request']:>13.3f}"
            f"{s['generator_cores']:>16.2f}"
        )
    print(f"{'intake list, one intake loop, tasks/s':<44}{intake:>8.0f}")
    print(f"{f'intake list at {rate:g}/s, LPUSH to rq job':<44}{rate:>8.0f}{p50:>8.2f}{p99:>8.2f}")
    lags = ", ".join(f"{r.lag_p99_ms:.2f}" for r in rows if r.lag_p99_ms is not None)
    print(f"open loops: the generator's own lateness at the scheduled sends, p99 ms: {lags}")
    if args.json:
        out = [r.summary() for r in rows]
        out.append({"name": "intake list, one intake loop", "rate": intake})
        out.append({"name": "intake list, LPUSH to rq job", "p50_ms": p50, "p99_ms": p99})
        print(json.dumps(out))


if __name__ == "__main__":
    main()
