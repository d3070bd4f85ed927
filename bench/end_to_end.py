"""End-to-end benchmark: a task's whole life (intake -> routed -> submitted -> settled) next
to rq's own cycle for a no-op job, in one run on one Redis, as tasks/s and CPU ms per task
counted over every process (router, workers, rq workers, and the Redis server itself).

Rows: rq alone with the forking `Worker` and with `SimpleWorker` (the floor: the transport
with nothing to do); byoa through one `byoa run` and W `byoa worker` processes on a pool of
ten Mega accounts per owner, the simulator answering at once (x100,000); the same with a
simulated submit latency; and one worker process alone at that latency (its submission
rate). Uses its own key prefixes on BYOA_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/13) and deletes them afterwards.

    python -m bench.end_to_end [--tasks 2000] [--workers 2] [--latency 0.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from redis import Redis
from rq import Queue

from bench.measure import children_cpu, redis_cpu, wait
from router.accounts import AccountSpec
from router.core import Router
from router.redis_server import purge
from router.settings import Settings

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
BIN = Path(sys.executable).parent
OWNERS = 20
ACCOUNTS_PER_OWNER = 10


@dataclass
class Row:
    name: str
    tasks: int
    processes: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def cpu_ms_per_task(self) -> float:
        return 1000 * self.cpu_seconds / self.tasks


def rq_alone(redis: Redis, tasks: int, workers: int, simple: bool) -> Row:
    """`enqueue_many` N no-op jobs, then W `rq worker --burst` processes empty the queue."""
    queue = Queue(f"bench-{uuid.uuid4().hex[:8]}", connection=redis)
    cpu0, redis0, started = children_cpu(), redis_cpu(redis), time.perf_counter()
    jobs = [Queue.prepare_data("bench.noop.noop", result_ttl=0) for _ in range(tasks)]
    queue.enqueue_many(jobs)
    args = [str(BIN / "rq"), "worker", "--burst", "--url", URL, "--quiet"]
    if simple:
        args += ["--worker-class", "rq.SimpleWorker"]
    procs = [subprocess.Popen([*args, queue.name]) for _ in range(workers)]
    for p in procs:
        p.wait()
    seconds = time.perf_counter() - started
    cpu = children_cpu() - cpu0 + redis_cpu(redis) - redis0
    queue.delete(delete_jobs=True)
    leftovers = list(redis.scan_iter(match=f"rq:queue:{queue.name}:*"))
    if leftovers:  # what rq keeps of a queue's jobs once they ran
        redis.delete(*leftovers)
    name = "rq alone, SimpleWorker" if simple else "rq alone, Worker (forks)"
    return Row(name, tasks, workers, seconds, cpu)


def byoa(tasks: int, workers: int, name: str, **env: str) -> Row:
    """N fast tasks pushed on the intake list, routed by one `byoa run`, submitted and
    settled by W `byoa worker` processes; until every task is terminal."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=URL, key_prefix=prefix)
    router = Router(settings)
    try:
        for i in range(OWNERS * ACCOUNTS_PER_OWNER):
            spec = AccountSpec(id=f"a{i}", owner=f"o{i % OWNERS}", plan="mega", fast_limit=100)
            router.apply(router.pool.add(spec))
        environ = {
            **os.environ,
            "BYOA_REDIS_URL": URL,
            "BYOA_KEY_PREFIX": prefix,
            "BYOA_SIM_SPEED": "100000",
            "BYOA_METRICS_ENABLED": "false",
            "BYOA_POLL_INTERVAL_SECONDS": "0.05",
            **env,
        }
        cmd = [sys.executable, "-m", "router", "--log-level", "WARNING"]
        pipe = router.redis.pipeline(transaction=False)
        for i in range(tasks):
            msg = {"id": f"t{i}", "owner": f"o{i % OWNERS}", "input": {"prompt": "a cat"}}
            msg["input"]["process_mode"] = "fast"
            pipe.lpush(router.keys.intake, json.dumps(msg))
        cpu0, redis0 = children_cpu(), redis_cpu(router.redis)
        started = time.perf_counter()
        pipe.execute()
        procs = [subprocess.Popen([*cmd, "run"], env=environ)]
        procs += [subprocess.Popen([*cmd, "worker"], env=environ) for _ in range(workers)]

        def done() -> bool:
            stats = [router.redis.hgetall(router.keys.stats(f"o{i}")) for i in range(OWNERS)]
            finished = sum(
                int(v) for h in stats for k, v in h.items() if k.startswith(b"finished:")
            )
            return finished >= tasks

        wait(done, timeout=1800, what="every task settled")
        seconds = time.perf_counter() - started
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
        cpu = children_cpu() - cpu0 + redis_cpu(router.redis) - redis0
        return Row(name, tasks, 1 + workers, seconds, cpu)
    finally:
        purge(router.redis, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.2, help="simulated submit latency, s")
    parser.add_argument("--slow-tasks", type=int, default=200, help="tasks at that latency")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    redis = Redis.from_url(URL)
    n, w = args.tasks, args.workers
    latency = {"BYOA_SIM__SUBMIT_LATENCY_SECONDS": str(args.latency)}
    rows = [
        rq_alone(redis, n, w, simple=False),
        rq_alone(redis, n, w, simple=True),
        byoa(n, w, "byoa, intake to settled"),
        byoa(args.slow_tasks, w, f"byoa, {args.latency * 1000:g} ms submit latency", **latency),
        byoa(args.slow_tasks, 1, f"byoa, one worker, {args.latency * 1000:g} ms", **latency),
    ]
    floor = rows[1]
    print(f"{'path':<36} {'tasks':>6} {'procs':>5} {'tasks/s':>8} {'CPU ms/task':>11} {'vs rq':>6}")
    for r in rows:
        ratio = r.cpu_ms_per_task / floor.cpu_ms_per_task
        print(
            f"{r.name:<36} {r.tasks:>6} {r.processes:>5} {r.rate:>8.1f} "
            f"{r.cpu_ms_per_task:>11.2f} {ratio:>5.1f}x"
        )
    print("CPU counts every process of the row, the Redis server included; 'vs rq' is CPU per")
    print("task against rq's SimpleWorker no-op cycle in this run.")
    if args.json:
        out = [{**asdict(r), "rate": r.rate, "cpu_ms": r.cpu_ms_per_task} for r in rows]
        print(json.dumps(out))


if __name__ == "__main__":
    main()
