"""What one Redis core carries, and what acknowledged-means-durable costs it: N fast tasks
pushed on the intake list, routed by one `byoa run` and run to their end by W `byoa worker`
processes (the simulated driver, answering at once), on a private primary alone, then with
a replica and `redis_min_replicas` 0, then 1 (every submission, claim, start, handle and
announced end waits for the replica: WAIT). Prints tasks/s and the Redis servers' CPU per
task, and the tasks a second one fully busy primary core would carry at that cost.

The simulated accounts keep their state in the same Redis, so its share is in the
figures (a real backend's is not): they are an upper bound on a task's Redis cost.

    python -m bench.replication [--tasks 3000] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from redis import Redis

from bench.measure import redis_cpu, wait
from router.accounts import AccountSpec
from router.core import Router
from router.settings import Settings

OWNERS = 20
ACCOUNTS_PER_OWNER = 10


@dataclass
class Row:
    name: str
    tasks: int
    seconds: float
    primary_cpu_s: float
    replica_cpu_s: float

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def primary_ms(self) -> float:
        return 1000 * self.primary_cpu_s / self.tasks

    @property
    def replica_ms(self) -> float:
        return 1000 * self.replica_cpu_s / self.tasks


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(replica_of: int | None = None) -> Iterator[int]:
    """A private redis-server on a free loopback port, no persistence; its port."""
    port, folder = _port(), tempfile.mkdtemp(prefix="byoa-bench-")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", folder]
    cmd += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
    if replica_of is not None:
        cmd += ["--replicaof", "127.0.0.1", str(replica_of)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        wait(lambda: _answers(port), 20, f"redis-server on {port}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        return bool(Redis(port=port).ping())
    except Exception:
        return False


def _in_sync(primary: Redis) -> bool:
    pipe = primary.pipeline(transaction=False)
    pipe.publish("bench", "")
    pipe.wait(1, 100)
    return int(pipe.execute()[-1]) >= 1


def run(name: str, port: int, replica: int | None, tasks: int, workers: int, n: int) -> Row:
    url = f"redis://127.0.0.1:{port}/0"
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    router = Router(Settings(redis_url=url, key_prefix=prefix))
    for i in range(OWNERS * ACCOUNTS_PER_OWNER):
        spec = AccountSpec(id=f"a{i}", owner=f"o{i % OWNERS}", plan="mega", fast_limit=100)
        router.apply(router.pool.add(spec))
    environ = {
        **os.environ,
        "BYOA_REDIS_URL": url,
        "BYOA_KEY_PREFIX": prefix,
        "BYOA_SIM_SPEED": "100000",
        "BYOA_METRICS_ENABLED": "false",
        "BYOA_POLL_INTERVAL_SECONDS": "0.05",
        "BYOA_REDIS_MIN_REPLICAS": str(n),
    }
    pipe = router.redis.pipeline(transaction=False)
    for i in range(tasks):
        msg = {"id": f"t{i}", "owner": f"o{i % OWNERS}", "input": {"prompt": "a cat"}}
        msg["input"]["process_mode"] = "fast"
        pipe.lpush(router.keys.intake, json.dumps(msg))
    pipe.execute()
    mirror = Redis(port=replica) if replica is not None else None
    cpu0 = redis_cpu(router.redis)
    mirror0 = redis_cpu(mirror) if mirror is not None else 0.0
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "router", "--log-level", "WARNING"]
    procs = [subprocess.Popen([*cmd, "run"], env=environ)]
    procs += [subprocess.Popen([*cmd, "worker"], env=environ) for _ in range(workers)]

    def done() -> bool:
        stats = [router.redis.hgetall(router.keys.stats(f"o{i}")) for i in range(OWNERS)]
        ended = sum(int(v) for h in stats for k, v in h.items() if k.startswith(b"finished:"))
        return ended >= tasks

    wait(done, timeout=1800, what="every task settled")
    seconds = time.perf_counter() - started
    cpu = redis_cpu(router.redis) - cpu0
    mirrored = redis_cpu(mirror) - mirror0 if mirror is not None else 0.0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=120)
    return Row(name, tasks, seconds, cpu, mirrored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    rows = []
    with server() as alone:
        rows.append(run("one primary", alone, None, args.tasks, args.workers, 0))
    with server() as primary, server(replica_of=primary) as replica:
        wait(lambda: _in_sync(Redis(port=primary)), 30, "the replica to sync")
        for n in (0, 1):
            name = f"primary + replica, min replicas {n}"
            rows.append(run(name, primary, replica, args.tasks, args.workers, n))
    head = f"{'Redis':<34} {'tasks/s':>8} {'primary ms/task':>15} {'replica ms/task':>15}"
    print(f"{head} {'tasks/s a core':>14}")
    for r in rows:
        print(
            f"{r.name:<34} {r.rate:>8.1f} {r.primary_ms:>15.3f} {r.replica_ms:>15.3f} "
            f"{1000 / r.primary_ms:>14,.0f}"
        )
    print("A task's whole life: intake, routed, started, submitted, polled, settled; the")
    print("simulated accounts' own Redis work included.")
    if args.json:
        print(json.dumps([{**asdict(r), "rate": r.rate} for r in rows]))


if __name__ == "__main__":
    main()
