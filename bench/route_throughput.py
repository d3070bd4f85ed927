"""Routing benchmark: intake messages -> routed -> rq jobs enqueued, next to rq's own cost.

In one run on one Redis it prints: rq's `enqueue_many` rate for N equivalent jobs (the
floor rq itself costs); end-to-end routing through one router's intake loop with 10,
1,000 and 10,000 accounts (tasks/s, ratio to rq, per-task cost at 10,000 vs 10
accounts); p50/p99 dispatch latency (message pushed -> rq job enqueued) at a steady
500 tasks/s through a `byoa run` process; Redis bytes per waiting task; and the router's
RSS with 1,000 and 100,000 tasks waiting. Uses its own key prefixes on the Redis at
BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and deletes them afterwards.

    python bench/route_throughput.py [--tasks 5000] [--waiting 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC

from rq import Queue
from rq.job import Job

from router.accounts import AccountSpec
from router.core import Router
from router.daemon import IntakeDaemon
from router.models import Slot
from router.redis_server import purge
from router.settings import Settings

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


@contextmanager
def fresh_router(**overrides: object) -> Iterator[Router]:
    settings = Settings(redis_url=URL, key_prefix=f"bench{uuid.uuid4().hex[:8]}", **overrides)
    router = Router(settings)
    try:
        yield router
    finally:
        purge(router.redis, settings.key_prefix)


SMALL_POOL = 50
"""The smallest pool routed: 5,000 tasks placed at once need 50 accounts' slots (an
account has at most 100 of a kind)."""


def add_pool(router: Router, n_accounts: int, slots: int) -> int:
    """`n_accounts` pro accounts, ten per owner, `slots` slots each; returns owners."""
    owners = max(1, n_accounts // 10)
    pipe_size = 500
    for start in range(0, n_accounts, pipe_size):
        for i in range(start, min(n_accounts, start + pipe_size)):
            spec = AccountSpec(
                id=f"acct{i}",
                owner=f"owner{i % owners}",
                plan="pro",
                fast_limit=slots,
                relax_limit=slots,
                fast_hours=1000,
            )
            router.pool.add(spec)
    return owners


def message(i: int, owners: int, **extra: object) -> str:
    mode = ("fast", "relax", "turbo")[i % 3]
    body = {"owner": f"owner{i % owners}", "input": {"prompt": f"p{i}", "process_mode": mode}}
    return json.dumps({**body, **extra})


def push(router: Router, messages: list[str]) -> None:
    for start in range(0, len(messages), 1000):
        router.redis.lpush(router.keys.intake, *messages[start : start + 1000])


def dispatched(router: Router) -> int:
    """Tasks the rq jobs in the queue carry (one job carries a batch)."""
    return sum(len(job.args[0]) for job in router.queue.jobs)


def route_all(router: Router, n: int) -> float:
    """Seconds for one router's intake loop to route `n` queued messages."""
    daemon = IntakeDaemon(router)
    start = time.perf_counter()
    done = 0
    while done < n:  # stop before claim() would block on an empty list
        handled = daemon.handle(daemon.claim())
        done += handled.created + handled.duplicates + handled.dead_letters
    return time.perf_counter() - start


def rq_baseline(n: int) -> float:
    """Jobs/s of rq's enqueue_many, in batches like the router's."""
    with fresh_router() as router:
        queue = Queue(f"{router.keys.prefix}-baseline", connection=router.redis)
        batch = router.settings.intake_batch
        start = time.perf_counter()
        for i in range(0, n, batch):
            jobs = [
                Queue.prepare_data(
                    "workers.jobs.run_task",
                    args=("o", f"t{j}", 1),
                    job_id=f"{router.keys.prefix}-b{j}",
                    result_ttl=0,
                )
                for j in range(i, min(n, i + batch))
            ]
            pipe = router.redis.pipeline()
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
        return n / (time.perf_counter() - start)


def routed_rate(n_accounts: int, n_tasks: int) -> float:
    """Tasks/s through the intake loop, every task placed at once (slots to spare)."""
    with fresh_router() as router:
        owners = add_pool(router, n_accounts, -(-n_tasks // n_accounts))
        push(router, [message(i, owners) for i in range(n_tasks)])
        elapsed = route_all(router, n_tasks)
        assert dispatched(router) == n_tasks, dispatched(router)
        return n_tasks / elapsed


@contextmanager
def router_process(router: Router) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BYOA_REDIS_URL": URL,
        "BYOA_KEY_PREFIX": router.keys.prefix,
        "BYOA_METRICS_ENABLED": "false",
    }
    proc = subprocess.Popen([sys.executable, "-m", "router", "run"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not router.redis.zcard(router.keys.routers):  # wait for it to register
            if time.monotonic() > deadline:
                raise RuntimeError("the router did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def dispatch_latency(rate: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 ms from LPUSH to rq job enqueued, at a steady `rate` through `byoa run`."""
    n = int(rate * seconds)
    with fresh_router() as router, router_process(router):
        owners = add_pool(router, 100, -(-n // 100))
        pushed: dict[str, float] = {}
        start = time.time()
        for i in range(n):
            due = start + i / rate
            while (now := time.time()) < due:
                time.sleep(min(0.001, due - now))  # pacing the load, not synchronisation
            task_id = f"lat{i}"
            router.redis.lpush(router.keys.intake, message(i, owners, id=task_id))
            pushed[task_id] = time.time()
        deadline = time.monotonic() + 60
        while dispatched(router) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = []
        for task_id, at in pushed.items():
            job_id = router.rq_job_id(f"owner{int(task_id[3:]) % owners}", task_id, 1)
            job = Job.fetch(job_id, connection=router.redis)
            assert job.enqueued_at is not None
            enqueued = job.enqueued_at.replace(tzinfo=UTC).timestamp()
            latencies.append((enqueued - at) * 1000)
        latencies.sort()
        return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def waiting_costs(counts: list[int]) -> tuple[float, list[int]]:
    """Redis bytes per waiting task, and the router's RSS (KiB) at each waiting count."""
    with fresh_router() as router, router_process(router) as proc:
        add_pool(router, 10, 1)  # ten accounts of one owner: 20 tasks run, the rest wait

        def settled(total: int) -> int:
            """Wait until all `total` messages are tasks; returns how many wait."""
            lines = [router.keys.line("owner0", s) for s in Slot]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                waiting = sum(router.redis.llen(line) for line in lines)
                if waiting + dispatched(router) == total:
                    return waiting
                time.sleep(0.1)  # polling a background process, with a deadline
            raise RuntimeError("the router did not route everything")

        push(router, [message(i, 1) for i in range(counts[0])])
        waiting_before = settled(counts[0])
        before = int(router.redis.info("memory")["used_memory"])
        rss = [rss_kib(proc.pid)]
        push(router, [message(i, 1) for i in range(counts[0], counts[1])])
        waiting_after = settled(counts[1])
        after = int(router.redis.info("memory")["used_memory"])
        rss.append(rss_kib(proc.pid))
        return (after - before) / (waiting_after - waiting_before), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="Rates: the median of this many.")
    args = parser.parse_args()

    def median(run: Callable[..., float]) -> float:
        return statistics.median(run() for _ in range(args.repeat))

    baseline = median(lambda: rq_baseline(args.tasks))
    print(f"{'what':<44}{'value':>12}{'x rq':>8}")
    print(f"{'rq enqueue_many (baseline), jobs/s':<44}{baseline:>12.0f}{1:>8.2f}")
    rates = {}
    for n_accounts in (SMALL_POOL, 1000, 10_000):
        rates[n_accounts] = rate = median(lambda n=n_accounts: routed_rate(n, args.tasks))
        print(
            f"{f'routed, {n_accounts:,} accounts, tasks/s':<44}{rate:>12.0f}{rate / baseline:>8.2f}"
        )
    small = f"per-task cost, 10,000 vs {SMALL_POOL} accounts"
    print(f"{small:<44}{rates[SMALL_POOL] / rates[10_000]:>12.2f}")
    p50, p99 = dispatch_latency(500, 6)
    print(f"{'dispatch latency at 500 tasks/s, p50 ms':<44}{p50:>12.2f}")
    print(f"{'dispatch latency at 500 tasks/s, p99 ms':<44}{p99:>12.2f}")
    per_task, rss = waiting_costs([1000, args.waiting])
    print(f"{'Redis bytes per waiting task':<44}{per_task:>12.0f}")
    print(f"{'router RSS, 1,000 waiting, MiB':<44}{rss[0] / 1024:>12.1f}")
    print(f"{f'router RSS, {args.waiting:,} waiting, MiB':<44}{rss[1] / 1024:>12.1f}")


if __name__ == "__main__":
    main()
