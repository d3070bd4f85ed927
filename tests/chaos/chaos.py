"""Chaos run: real routers and workers SIGKILLed at random, Redis restarts, driver faults.

    python -m tests.chaos [--tasks 10000] [--kills 20] [--restarts 2] [--seed 1]

`--kills` SIGKILLs that many routers and that many workers (each with its job horse, as a
lost machine), each replaced by a new process. Prints the figures (lost, doubled,
over-limit instants, leases and polls left, overspend must all be 0; every task terminal;
failures only from the injected faults outlasting every retry) and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from router.accounts import AccountSpec
from router.core import Router
from router.demo import stop_processes
from router.models import Mode, Slot, TaskType, slot_for
from router.policy import fast_cost_ms
from router.settings import Settings
from tests.servers import PrivateRedis, kill_tree
from workers.drivers.simulated import SimulatedDriver

POOL = [  # (account, owner, plan, extra)
    ("a-pro", "alice", "pro", {"fast_limit": 4, "relax_limit": 6}),
    ("a-basic", "alice", "basic", {"fast_hours": 0.3}),
    ("b-std", "bob", "standard", {"fast_hours": 0.5, "relax_limit": 4}),
    ("b-mega", "bob", "mega", {"setting": "relax", "relax_limit": 6}),
    ("c-std", "carol", "standard", {"fast_limit": 2, "relax_limit": 4}),
    ("c-pro", "carol", "pro", {"fast_limit": 3, "relax_limit": 6}),
]
OWNERS = ["alice", "bob", "carol"]
INJECTED = {"driver_error"}
"""The code a task ends with when the injected transient faults outlast all its retries."""
T = TypeVar("T")
MODES = ["fast", "turbo", "relax", ""]


@dataclass
class Figures:
    accepted: int = 0
    terminal: int = 0
    completed: int = 0
    failed_by_code: dict[str, int] | None = None
    lost: int = 0
    doubled: int = 0
    over_limit_instants: int = 0
    leases_left: int = 0
    polls_left: int = 0
    overspent_accounts: int = 0
    router_kills: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not (
                self.lost
                or self.doubled
                or self.over_limit_instants
                or self.leases_left
                or self.polls_left
                or self.overspent_accounts
            )
            and self.terminal == self.accepted
            and set(self.failed_by_code or {}) <= INJECTED
        )


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end and a start at the same time: not both)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def run_chaos(tasks: int, kills: int, restarts: int, seed: int, workdir: Path) -> Figures:
    rng = random.Random(seed)
    server = PrivateRedis(
        workdir,
        ["--port", "{port}", "--appendonly", "yes", "--appendfsync", "always"],
        "redis://127.0.0.1:{port}/0",
    )
    server.start()
    prefix = f"chaos{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "BYOA_REDIS_URL": server.url,
        "BYOA_KEY_PREFIX": prefix,
        "BYOA_SIM_SPEED": "1000",
        "BYOA_SIM__TRANSIENT_FAILURE_RATE": "0.05",
        "BYOA_TRANSIENT_BACKOFF_SECONDS": "0.01",
        "BYOA_ROUTER_DEAD_SECONDS": "2",
        "BYOA_RUN_LEASE_SECONDS": "5",
        "BYOA_DISPATCH_LEASE_SECONDS": "5",
        "BYOA_REAP_INTERVAL_SECONDS": "0.2",
        "BYOA_POLL_INTERVAL_SECONDS": "0.05",
        "BYOA_METRICS_ENABLED": "false",
    }
    settings = Settings(redis_url=server.url, key_prefix=prefix, sim_speed=1000)
    router = Router(settings)
    for acct, owner, plan, extra in POOL:
        router.apply(router.pool.add(AccountSpec(id=acct, owner=owner, plan=plan, **extra)))

    def spawn(role: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "router", "--log-level", "ERROR", role],
            env=env,
            stdout=subprocess.DEVNULL,
        )

    routers = [spawn("run") for _ in range(3)]
    workers = [spawn("worker") for _ in range(6)]
    figures = Figures()
    start = time.monotonic()
    ids = [f"c{i}" for i in range(tasks)]
    events = ["kill-router"] * kills + ["kill-worker"] * kills + ["restart"] * restarts
    rng.shuffle(events)
    chunks = max(1, len(events) + 1)
    try:
        for n, chunk in enumerate(range(0, tasks, -(-tasks // chunks))):
            pipe = router.redis.pipeline()
            for i in range(chunk, min(tasks, chunk + -(-tasks // chunks))):
                msg = {
                    "id": ids[i],
                    "owner": OWNERS[i % 3],
                    "input": {"prompt": f"p{i}", "process_mode": MODES[rng.randrange(4)]},
                }
                pipe.lpush(router.keys.intake, json.dumps(msg))
            _retry(pipe.execute)
            time.sleep(rng.uniform(0.05, 0.4))  # chaos timing, not synchronisation
            if n < len(events):
                if events[n] == "kill-router":
                    victim = routers.pop(rng.randrange(len(routers)))
                    kill_tree(victim)
                    routers.append(spawn("run"))
                    figures.router_kills += 1
                elif events[n] == "kill-worker":
                    victim = workers.pop(rng.randrange(len(workers)))
                    kill_tree(victim)
                    workers.append(spawn("worker"))
                    figures.worker_kills += 1
                else:
                    server.stop()
                    time.sleep(rng.uniform(0.2, 1.0))  # the outage itself
                    server.start()
                    figures.redis_restarts += 1
        deadline = time.monotonic() + 120 + tasks * 0.1  # the pool drains ~50 tasks/s
        while time.monotonic() < deadline:
            records = _retry(lambda: [router.tasks.get(t) for t in ids])
            if all(r is not None and r.status.terminal for r in records):
                break
            time.sleep(0.5)  # polling the outcome of a background run, with a deadline
    finally:
        stop_processes(routers + workers)
    records = [router.tasks.get(t) for t in ids]
    found = [r for r in records if r is not None]
    dead = router.redis.llen(router.keys.dead_letters)
    figures.accepted = len(found)
    figures.lost = tasks - len(found) - dead
    figures.terminal = sum(1 for r in found if r.status.terminal)
    figures.completed = sum(1 for r in found if r.status == "completed")
    codes: dict[str, int] = defaultdict(int)
    for r in found:
        if r.status != "completed":
            codes[r.error.code if r.error else r.status.value] += 1
    figures.failed_by_code = dict(codes)
    sim = SimulatedDriver(settings, router.redis)
    jobs_run = sum(int(sim.audit(a).get("jobs", 0)) for a, *_ in POOL)
    figures.doubled = max(0, jobs_run - figures.completed)
    runs: dict[tuple[str, Slot], list[tuple[datetime, datetime]]] = defaultdict(list)
    for r in found:
        if r.started_at and r.finished_at and r.account_id and r.effective_mode:
            runs[(r.account_id, slot_for(r.effective_mode))].append((r.started_at, r.finished_at))
    turbo_ms = fast_cost_ms(Mode.TURBO, settings.estimate_ms(TaskType.IMAGINE))
    for view in router.pool.accounts():
        for slot in Slot:
            limit = view.fast_limit if slot is Slot.FAST else view.relax_limit
            peak = max(
                max_overlap(runs[(view.id, slot)]),
                int(sim.audit(view.id).get(f"max_running_{slot.value}", 0)),
            )
            figures.over_limit_instants += max(0, peak - limit)
        bound = turbo_ms * (1 + settings.sim.jitter * view.fast_limit)
        figures.overspent_accounts += -int(sim.audit(view.id).get("fast_ms", 0)) > bound
    figures.leases_left = sum(router.redis.zcard(router.keys.inflight(o)) for o in OWNERS)
    figures.polls_left = router.polls.size()
    figures.seconds = round(time.monotonic() - start, 1)
    server.stop()
    return figures


def _retry(call: Callable[[], T], patience: float = 30.0) -> T:
    """The chaos driver itself waits out the Redis restarts it causes."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        figures = run_chaos(args.tasks, args.kills, args.restarts, args.seed, Path(d))
    for name, value in asdict(figures).items():
        print(f"{name:22} {value}")
    print(f"{'verdict':22} {'ok' if figures.ok else 'FAILED'}")
    sys.exit(0 if figures.ok else 1)
