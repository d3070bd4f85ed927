"""Routing throughput of one router process: intake messages -> routed -> rq jobs enqueued.

Prints tasks/s for a few pool sizes next to rq's own enqueue_many rate for the same number
of jobs (the floor rq itself costs). Uses its own key prefix on the Redis at
BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and deletes it afterwards.

    python bench/route_throughput.py [--tasks 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from rq import Queue

from router.core import Router
from router.daemon import IntakeDaemon
from router.pool import AccountSpec
from router.redis_server import purge
from router.settings import Settings

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def rq_baseline(router: Router, n: int) -> float:
    """Jobs/s of rq's enqueue_many, in batches like the router's."""
    queue = Queue(f"{router.keys.prefix}-baseline", connection=router.redis)
    start = time.perf_counter()
    for i in range(0, n, router.settings.intake_batch):
        jobs = [
            Queue.prepare_data(
                "workers.jobs.run_task",
                args=("o", f"t{j}", 1),
                job_id=f"{router.keys.prefix}-b{j}",
                result_ttl=0,
            )
            for j in range(i, min(n, i + router.settings.intake_batch))
        ]
        pipe = router.redis.pipeline()
        queue.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()
    return n / (time.perf_counter() - start)


def routed_rate(n_accounts: int, n_tasks: int) -> float:
    """Tasks/s through the intake daemon with every task placed at once (slots to spare)."""
    settings = Settings(redis_url=URL, key_prefix=f"bench{uuid.uuid4().hex[:8]}")
    router = Router(settings)
    try:
        owners = max(1, n_accounts // 10)
        per_account = -(-n_tasks // n_accounts)
        for i in range(n_accounts):
            spec = AccountSpec(
                id=f"acct{i}",
                owner=f"owner{i % owners}",
                plan="pro",
                fast_limit=per_account,
                relax_limit=per_account,
                fast_hours=1000,
            )
            router.pool.add(spec)
        pipe = router.redis.pipeline(transaction=False)
        for i in range(n_tasks):
            mode = ("fast", "relax", "turbo")[i % 3]
            pipe.lpush(
                router.keys.intake,
                json.dumps(
                    {
                        "owner": f"owner{i % owners}",
                        "input": {"prompt": f"p{i}", "process_mode": mode},
                    }
                ),
            )
        pipe.execute()
        daemon = IntakeDaemon(router)
        start = time.perf_counter()
        routed = 0
        while routed < n_tasks:  # stop before claim() would block on an empty list
            routed += daemon.handle(daemon.claim()).created
        elapsed = time.perf_counter() - start
        assert routed == n_tasks and router.queue.count == n_tasks, (routed, router.queue.count)
        return n_tasks / elapsed
    finally:
        purge(router.redis, settings.key_prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    settings = Settings(redis_url=URL, key_prefix=f"bench{uuid.uuid4().hex[:8]}")
    router = Router(settings)
    try:
        baseline = rq_baseline(router, args.tasks)
    finally:
        purge(router.redis, settings.key_prefix)
    print(f"{'what':<34}{'tasks/s':>10}{'x rq':>8}")
    print(f"{'rq enqueue_many (baseline)':<34}{baseline:>10.0f}{1:>8.2f}")
    for n_accounts in (10, 100, 1000):
        rate = routed_rate(n_accounts, args.tasks)
        print(f"{f'routed, {n_accounts} accounts':<34}{rate:>10.0f}{rate / baseline:>8.2f}")


if __name__ == "__main__":
    main()
