"""Scale benchmark (issue 23): what holding N running jobs costs Redis and the workers.

For each N, on a Redis of its own (a private `redis-server` on a free port, unless
`--redis-url` or BYOA_BENCH_REDIS_URL names one), with the simulator at realistic pace
(`--speed` 1: a fast imagine runs about 48 s, a relax one about 3 min, each +-20 %):

1. A pool of Mega accounts, ten per owner: owners `f*` take fast imagines (12 slots an
   account), owners `r*` relax ones (3 slots), so 80 % of the N jobs are fast. This process
   routes tasks in (`Router.submit_many`, as a router's intake loop does: this process's
   CPU is routing's), `--workers` `byoa worker` processes start, submit, poll and settle
   them, and one `byoa run` reaps and wakes. Each owner is kept at its share of N: filled
   over one job duration of its kind (so ends are spread, not a wave), then every job that
   ends is replaced.
2. **Hold**: over `--window` s, everything: Redis CPU (INFO cpu, user + sys), every worker's
   and the router's CPU (/proc), commands (INFO commandstats: those scripts call too), jobs
   polled (the workers count them), tasks routed, and the running
   jobs (the poll schedule's size, sampled each second). Per running job per second and
   per 1,000 running jobs.
3. **Carrying**: no task is routed any more, and every running job is made to overrun its
   end by an hour (the simulator's own end; the router still expects the realistic one),
   so over `--quiet` s no job starts or ends: what is left is the cost of carrying running
   jobs alone (schedule, polls, leases). Jobs past their expected end are then polled as
   an overrunning job is (waits doubling up to `poll_max_interval_seconds`), more often
   than a job that ends: this is an upper bound of the carrying cost.

Beside them, on the same Redis: rq's own cycle (`enqueue_many` of no-op jobs, one
`rq worker --burst` SimpleWorker), and routing alone (tasks routed and enqueued, 20 owners
x 10 Mega accounts, as the issue measured): Redis CPU and process CPU per job or task.
And the extrapolation of each window to 150,000 running jobs.

    python -m bench.scale [--jobs 5000,20000] [--window 60] [--quiet 30] [--json]
    python -m bench.scale --short     # seconds, for CI: 300 jobs, time compressed 20x
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue

from bench.measure import children_cpu, proc_cpu, redis_cpu, self_cpu, wait
from bench.polling import CountedWorker
from router.accounts import AccountSpec
from router.core import Router
from router.lua import OWNER_SCRIPTS, PLAIN_SCRIPTS
from router.redis_server import purge
from router.requests import NewTask, check_message
from router.scripts import text
from router.settings import Settings
from workers.drivers.simulated import SIM_START

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCOUNTS_PER_OWNER = 10
FAST_SLOTS, RELAX_SLOTS = 12, 3
"""A Mega account's concurrent fast and relax jobs (the plan's defaults)."""
FAST_SECONDS, RELAX_SECONDS = 60 * 0.8, 60 * 3.0
"""Expected wall time of a fast and a relax imagine at speed 1 (60 GPU s, the simulator's
wall factors 0.8 and 3.0)."""
FAST_SHARE = FAST_SLOTS / (FAST_SLOTS + RELAX_SLOTS)
TARGET_JOBS = 150_000
REDIS_TARGET_US = 3.0
WORKER_TARGET_CORES = 0.05
SHIFT_US = 3_600_000_000
OVERRUN = """
-- The simulated job KEYS[1] ends ARGV[1] µs later, if it exists (never creates one).
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'ends', ARGV[1]) end
"""


@dataclass
class Counters:
    """Cumulative readings at one instant."""

    at: float
    redis_cpu: float
    commands: int
    workers_cpu: float
    router_cpu: float
    routing_cpu: float
    polls: int
    rounds: int
    routed: int
    stats: dict[str, tuple[int, int]]


@dataclass
class Window:
    """What one window cost, and the running jobs it carried."""

    name: str
    seconds: float
    running: float
    """Mean of the poll schedule's size (submitted jobs running), sampled each second."""
    redis_cpu: float
    commands: int
    workers_cpu: float
    router_cpu: float
    routing_cpu: float
    polls: int
    rounds: int
    routed: int
    load: float
    """1-minute load average at the window's end."""
    top: list[tuple[str, float, float]] = field(default_factory=list)
    """The commands run most in the window: (name, calls per running job per second, µs a
    call; a script's µs include the commands it calls)."""

    def per_job_second(self, value: float) -> float:
        return value / self.seconds / max(self.running, 1.0)

    @property
    def redis_us(self) -> float:
        """Redis CPU µs per running job per second."""
        return 1e6 * self.per_job_second(self.redis_cpu)

    @property
    def worker_cores_per_1000(self) -> float:
        return 1000 * self.per_job_second(self.workers_cpu)

    @property
    def commands_per_job_second(self) -> float:
        return self.per_job_second(self.commands)

    @property
    def polls_per_job_second(self) -> float:
        return self.per_job_second(self.polls)

    @property
    def tasks_per_second(self) -> float:
        return self.routed / self.seconds

    def derived(self) -> dict[str, float]:
        return {
            "redis_us_per_job_second": self.redis_us,
            "worker_cores_per_1000_jobs": self.worker_cores_per_1000,
            "commands_per_job_second": self.commands_per_job_second,
            "polls_per_job_second": self.polls_per_job_second,
            "tasks_per_second": self.tasks_per_second,
            "redis_cores_at_150k": self.redis_us * TARGET_JOBS / 1e6,
            "worker_cores_at_150k": self.worker_cores_per_1000 * TARGET_JOBS / 1000,
        }


@dataclass
class Baseline:
    name: str
    count: int
    redis_cpu: float
    process_cpu: float
    commands: int

    def derived(self) -> dict[str, float]:
        return {
            "redis_us_each": 1e6 * self.redis_cpu / self.count,
            "process_ms_each": 1e3 * self.process_cpu / self.count,
            "commands_each": self.commands / self.count,
        }


@dataclass
class Profile:
    """Where Redis spends its time while jobs are held, by script (SLOWLOG with every
    command logged, over a short sample after the hold window; a script's time includes
    the commands it calls)."""

    seconds: float
    routed: int
    redis_cpu: float
    rows: list[tuple[str, int, int]]
    """(script, calls, µs running them), most µs first."""


@dataclass
class Run:
    jobs: int
    accounts: int
    owners: int
    windows: list[Window] = field(default_factory=list)
    profile: Profile | None = None


def commands(redis: Redis) -> int:
    """Commands Redis has run so far, those scripts call included (INFO commandstats)."""
    return sum(calls for calls, _ in command_stats(redis).values())


def command_stats(redis: Redis) -> dict[str, tuple[int, int]]:
    """Per command: (calls so far, µs spent running them), from INFO commandstats; a
    script's µs include those of the commands it calls."""
    stats = redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
        if isinstance(v, dict)
    }


@contextmanager
def private_redis(url: str | None) -> Iterator[str]:
    """The Redis to measure: `url` if given, else a `redis-server` of this run's own."""
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("no redis-server on PATH: pass --redis-url")
    with tempfile.TemporaryDirectory(prefix="byoa-scale-") as workdir:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", ""]
        proc = subprocess.Popen([*cmd, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        found = f"redis://127.0.0.1:{port}/0"
        try:
            client = Redis.from_url(found)
            wait(lambda: _answers(client), 20, "the private redis-server")
            yield found
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class Pool:
    """The bench's owners and how many jobs each is kept at."""

    def __init__(self, router: Router, jobs: int) -> None:
        self.router = router
        fast_jobs = round(jobs * FAST_SHARE)
        relax_jobs = jobs - fast_jobs
        fast_accounts = math.ceil(fast_jobs / FAST_SLOTS)
        relax_accounts = math.ceil(relax_jobs / RELAX_SLOTS)
        self.accounts = fast_accounts + relax_accounts
        self.target: dict[str, int] = {}
        self.mode: dict[str, str] = {}
        left = {"fast": fast_jobs, "relax": relax_jobs}
        for kind, count, slots in (
            ("fast", fast_accounts, FAST_SLOTS),
            ("relax", relax_accounts, RELAX_SLOTS),
        ):
            for i in range(count):
                owner = f"{kind[0]}{i // ACCOUNTS_PER_OWNER}"
                spec = AccountSpec(id=f"{kind[0]}a{i}", owner=owner, plan="mega")
                router.apply(router.pool.add(spec))
                take = min(slots, left[kind])
                left[kind] -= take
                self.target[owner] = self.target.get(owner, 0) + take
                self.mode[owner] = kind
        self.owners = list(self.target)

    def held(self) -> dict[str, int]:
        """Tasks each owner holds slots for now (placed or running)."""
        pipe = self.router.redis.pipeline(transaction=False)
        for owner in self.owners:
            pipe.zcard(self.router.keys.inflight(owner))
        return dict(zip(self.owners, (int(n) for n in pipe.execute()), strict=True))


class Feeder(threading.Thread):
    """Routes tasks in to keep each owner at its target: ramped over one job duration of
    its kind, then topped up as jobs end (this thread's CPU is routing's)."""

    def __init__(self, pool: Pool, speed: float) -> None:
        super().__init__(name="bench-feeder", daemon=True)
        self.pool, self.speed = pool, speed
        self.stop = threading.Event()
        self.routed = 0
        self.recent: collections.deque[tuple[float, str, str]] = collections.deque()
        self.cpu = 0.0
        self.started = time.monotonic()
        self._n = 0

    def ramp(self, kind: str) -> float:
        duration = (FAST_SECONDS if kind == "fast" else RELAX_SECONDS) / self.speed
        return min(1.0, (time.monotonic() - self.started) / duration)

    def run(self) -> None:
        router, pool = self.pool.router, self.pool
        while not self.stop.is_set():
            cpu0 = time.thread_time()
            held = pool.held()
            tasks: list[NewTask] = []
            for owner in pool.owners:
                kind = pool.mode[owner]
                want = math.floor(pool.target[owner] * self.ramp(kind)) - held[owner]
                for _ in range(max(0, want)):
                    self._n += 1
                    message = {
                        "id": f"s{self._n:07d}",
                        "owner": owner,
                        "input": {"prompt": "a lighthouse at dusk", "process_mode": kind},
                    }
                    checked = check_message(message, router.settings)
                    assert isinstance(checked, NewTask), checked
                    tasks.append(checked)
            now = time.monotonic()
            for i in range(0, len(tasks), 500):
                router.submit_many(tasks[i : i + 500])
            self.recent.extend((now, t.owner, t.id) for t in tasks)
            horizon = now - 1.5 * RELAX_SECONDS / self.speed
            while self.recent and self.recent[0][0] < horizon:
                self.recent.popleft()
            self.routed += len(tasks)
            self.cpu += time.thread_time() - cpu0
            self.stop.wait(0.5)


class Processes:
    """The router and the worker processes, each of this run's settings."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        cmd = [sys.executable, "-m", "router", "--log-level", "WARNING", "run"]
        self.router = subprocess.Popen(cmd, cwd=ROOT, env=self.env)
        self.workers = [CountedWorker(self.env) for _ in range(workers)]

    def polled(self) -> tuple[int, int]:
        counts = [w.polled() for w in self.workers]
        return sum(p for p, _ in counts), sum(r for _, r in counts)

    def workers_cpu(self) -> float:
        return sum(proc_cpu(w.proc.pid) for w in self.workers)

    def router_cpu(self) -> float:
        return proc_cpu(self.router.pid)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.router.send_signal(signal.SIGTERM)
        self.router.wait(timeout=120)


def read(router: Router, procs: Processes, feeder: Feeder) -> Counters:
    polls, rounds = procs.polled()
    return Counters(
        time.perf_counter(),
        redis_cpu(router.redis),
        commands(router.redis),
        procs.workers_cpu(),
        procs.router_cpu(),
        feeder.cpu,
        polls,
        rounds,
        feeder.routed,
        command_stats(router.redis),
    )


def busiest(
    a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]], most: int = 8
) -> list[tuple[str, int, int]]:
    """(command, calls, µs) run between two readings, most calls first."""
    runs = [(n, c - a.get(n, (0, 0))[0], u - a.get(n, (0, 0))[1]) for n, (c, u) in b.items()]
    return sorted((r for r in runs if r[1] > 0), key=lambda r: -r[1])[:most]


def measure(name: str, router: Router, procs: Processes, feeder: Feeder, seconds: float) -> Window:
    """One window of `seconds`: the counters' deltas and the mean running jobs."""
    a = read(router, procs, feeder)
    sizes: list[int] = []
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        sizes.append(router.polls.size())
        time.sleep(min(1.0, left))
    b = read(router, procs, feeder)
    window = Window(
        name,
        b.at - a.at,
        sum(sizes) / max(len(sizes), 1),
        b.redis_cpu - a.redis_cpu,
        b.commands - a.commands,
        b.workers_cpu - a.workers_cpu,
        b.router_cpu - a.router_cpu,
        b.routing_cpu - a.routing_cpu,
        b.polls - a.polls,
        b.rounds - a.rounds,
        b.routed - a.routed,
        os.getloadavg()[0],
    )
    window.top = [
        (n, window.per_job_second(calls), us / calls) for n, calls, us in busiest(a.stats, b.stats)
    ]
    return window


def hold(
    url: str,
    jobs: int,
    window: float,
    quiet: float,
    workers: int,
    speed: float,
    short: bool,
    sample: float = 0.0,
) -> Run:
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    over: dict[str, Any] = {}
    if short:  # every time setting compressed with the jobs' durations
        over = {"poll_interval_seconds": 0.05, "poll_max_interval_seconds": 0.5}
    settings = Settings(redis_url=url, key_prefix=prefix, metrics_enabled=False, **over)
    router = Router(settings)
    env = {
        **os.environ,
        "BYOA_REDIS_URL": url,
        "BYOA_KEY_PREFIX": prefix,
        "BYOA_SIM_SPEED": str(speed),
        "BYOA_METRICS_ENABLED": "false",
        **{f"BYOA_{k.upper()}": str(v) for k, v in over.items()},
    }
    try:
        pool = Pool(router, jobs)
        run = Run(jobs, pool.accounts, len(pool.owners))
        procs = Processes(env, workers)
        feeder = Feeder(pool, speed)
        try:
            feeder.start()
            ramp = RELAX_SECONDS / speed
            wait(lambda: router.polls.size() >= 0.9 * jobs, ramp + 600, f"{jobs} jobs running")
            time.sleep(
                max(0.0, feeder.started + ramp + FAST_SECONDS * 0.2 / speed - time.monotonic())
            )
            run.windows.append(measure("hold", router, procs, feeder, window))
            if sample > 0:
                run.profile = profile(router, feeder, sample)
            feeder.stop.set()
            feeder.join(timeout=60)
            overrun(router, [(owner, tid) for _, owner, tid in feeder.recent])
            queue = Queue(settings.queue_name, connection=router.redis)
            wait(lambda: len(queue) == 0, 120, "the last routed tasks taken by workers")
            time.sleep(2.0 / speed + 1.0)  # their submissions end
            run.windows.append(measure("carrying", router, procs, feeder, quiet))
        finally:
            feeder.stop.set()
            procs.stop()
        return run
    finally:
        purge(router.redis, prefix)
        router.redis.srem("rq:queues", f"rq:queue:{settings.queue_name}")


def profile(router: Router, feeder: Feeder, seconds: float) -> Profile:
    """Every script's run time for `seconds` (SLOWLOG, threshold 0), by script. Logging
    every command costs Redis too: the times are a share of the sample's CPU, no more."""
    redis = router.redis
    names = {getattr(router.scripts, n).sha: n.upper() for n in OWNER_SCRIPTS + PLAIN_SCRIPTS}
    names[hashlib.sha1(SIM_START.encode()).hexdigest()] = "SIM_START (simulator)"
    threshold = redis.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    length = redis.config_get("slowlog-max-len")["slowlog-max-len"]
    redis.config_set("slowlog-max-len", 500_000)
    redis.slowlog_reset()
    redis.config_set("slowlog-log-slower-than", 0)
    routed0, cpu0, t0 = feeder.routed, redis_cpu(redis), time.perf_counter()
    time.sleep(seconds)
    redis.config_set("slowlog-log-slower-than", threshold)
    took, cpu, routed = time.perf_counter() - t0, redis_cpu(redis) - cpu0, feeder.routed - routed0
    rows: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for entry in redis.slowlog_get(-1):
        args = bytes(entry["command"]).split(b" ")
        if args[0].lower() != b"evalsha" or len(args) < 2:
            continue  # the commands scripts call are logged too: scripts alone are counted
        sha = args[1].decode()
        name = names.get(sha, f"script {sha[:8]}")
        rows[name][0] += 1
        rows[name][1] += int(entry["duration"])
    redis.slowlog_reset()
    redis.config_set("slowlog-max-len", length)
    ranked = sorted(((n, c, u) for n, (c, u) in rows.items()), key=lambda r: -r[2])
    return Profile(took, routed, cpu, ranked)


def overrun(router: Router, tasks: Sequence[tuple[str, str]]) -> None:
    """Every running simulated job of these (owner, task id) ends an hour later than it
    would (a job not submitted yet has no handle: it is left alone)."""
    pipe = router.redis.pipeline(transaction=False)
    for owner, tid in tasks:
        pipe.hget(router.keys.task(owner, tid), "handle")
    handles = [text(h) for h in pipe.execute() if h]
    script = router.redis.register_script(OVERRUN)
    pipe = router.redis.pipeline(transaction=False)
    for handle in handles:
        script(keys=[router.keys.sim_job(handle)], args=[SHIFT_US], client=pipe)
    pipe.execute()


def rq_baseline(url: str, count: int) -> Baseline:
    """rq's own cycle: `enqueue_many` no-op jobs, one SimpleWorker empties the queue."""
    redis = Redis.from_url(url)
    queue = Queue(f"scale-rq-{uuid.uuid4().hex[:8]}", connection=redis)
    calls0 = commands(redis)
    redis0, cpu0, children0 = redis_cpu(redis), self_cpu(), children_cpu()
    queue.enqueue_many([Queue.prepare_data("bench.noop.noop", result_ttl=0) for _ in range(count)])
    args = [str(BIN / "rq"), "worker", "--burst", "--url", url, "--quiet"]
    subprocess.run([*args, "--worker-class", "rq.SimpleWorker", queue.name], cwd=ROOT, check=True)
    cpu = self_cpu() - cpu0 + children_cpu() - children0
    rcpu, calls1 = redis_cpu(redis) - redis0, commands(redis)
    queue.delete(delete_jobs=True)
    for key in redis.scan_iter(match=f"rq:queue:{queue.name}:*"):
        redis.delete(key)
    name = "rq: enqueue_many + SimpleWorker, a no-op job"
    return Baseline(name, count, rcpu, cpu, calls1 - calls0)


def routing_baseline(url: str, count: int) -> Baseline:
    """Routing alone: tasks routed and enqueued in this process (20 owners x 10 Mega
    accounts, slots to spare), nothing started."""
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    router = Router(Settings(redis_url=url, key_prefix=prefix, metrics_enabled=False))
    try:
        for i in range(200):
            spec = AccountSpec(id=f"a{i}", owner=f"o{i // 10}", plan="mega", fast_limit=100)
            router.apply(router.pool.add(spec))
        tasks = []
        for n in range(count):
            message = {
                "id": f"r{n:07d}",
                "owner": f"o{n % 20}",
                "input": {"prompt": "a lighthouse at dusk", "process_mode": "fast"},
            }
            checked = check_message(message, router.settings)
            assert isinstance(checked, NewTask)
            tasks.append(checked)
        calls0 = commands(router.redis)
        redis0, cpu0 = redis_cpu(router.redis), self_cpu()
        for i in range(0, count, 200):  # a router's intake batch
            router.submit_many(tasks[i : i + 200])
        cpu, rcpu = self_cpu() - cpu0, redis_cpu(router.redis) - redis0
        calls1 = commands(router.redis)
        return Baseline("routing: a task routed, placed, its rq job enqueued", count, rcpu, cpu,
                        calls1 - calls0)  # fmt: skip
    finally:
        purge(router.redis, prefix)
        router.redis.srem("rq:queues", f"rq:queue:{router.settings.queue_name}")


def report(runs: list[Run], baselines: list[Baseline], load0: float) -> None:
    print(
        f"{'jobs':>6} {'accounts':>8} {'window':<9} {'s':>5} {'running':>8} "
        f"{'Redis µs/job/s':>14} {'worker cores/1k':>15} {'cmds/job/s':>10} "
        f"{'polls/job/s':>11} {'tasks/s':>7} {'router cores':>12} "
        f"{'routing cores':>13} {'load':>5}"
    )
    for r in runs:
        for w in r.windows:
            print(
                f"{r.jobs:>6} {r.accounts:>8} {w.name:<9} {w.seconds:>5.0f} {w.running:>8.0f} "
                f"{w.redis_us:>14.2f} {w.worker_cores_per_1000:>15.4f} "
                f"{w.commands_per_job_second:>10.3f} "
                f"{w.polls_per_job_second:>11.4f} {w.tasks_per_second:>7.1f} "
                f"{w.router_cpu / w.seconds:>12.3f} {w.routing_cpu / w.seconds:>13.3f} "
                f"{w.load:>5.2f}"
            )
    print("\nCommands run most (calls per running job per second, µs a call):")
    for r in runs:
        for w in r.windows:
            top = ", ".join(f"{n} {c:.3f} ({us:.1f})" for n, c, us in w.top)
            print(f"  N={r.jobs:,} {w.name}: {top}")
    for r in runs:
        p = r.profile
        if p is None:
            continue
        per, cpu_us = max(p.routed, 1), p.redis_cpu * 1e6
        print(
            f"\nScripts, N={r.jobs:,}, {p.seconds:.1f} s with every command logged ({p.routed:,} "
            f"tasks routed, Redis {cpu_us / per:.0f} µs of CPU per task meanwhile): calls and "
            f"µs run per task routed, share of that CPU"
        )
        for name, calls, us in p.rows[:12]:
            print(f"  {name:<22} {calls / per:>6.2f} calls {us / per:>7.1f} µs {us / cpu_us:>6.1%}")
    print(f"\nAt {TARGET_JOBS:,} running jobs (each window's per-job cost, times {TARGET_JOBS:,}):")
    for r in runs:
        for w in r.windows:
            d = w.derived()
            redis_ok = "✓" if w.redis_us <= REDIS_TARGET_US else "✗"
            worker_ok = "✓" if w.worker_cores_per_1000 <= WORKER_TARGET_CORES else "✗"
            print(
                f"  N={r.jobs:,} {w.name}: Redis {d['redis_cores_at_150k']:.2f} cores "
                f"({w.redis_us:.2f} µs/job/s, target ≤ {REDIS_TARGET_US:g} {redis_ok}), workers "
                f"{d['worker_cores_at_150k']:.1f} cores ({w.worker_cores_per_1000:.4f}/1k, "
                f"target ≤ {WORKER_TARGET_CORES:g} {worker_ok})"
            )
    print("\nBaselines (same Redis):")
    for b in baselines:
        d = b.derived()
        print(
            f"  {b.name}: Redis {d['redis_us_each']:.1f} µs, process {d['process_ms_each']:.3f} "
            f"ms, {d['commands_each']:.1f} commands each ({b.count:,})"
        )
    print(f"load average (1 min) {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="5000,20000", help="running jobs to hold")
    parser.add_argument("--window", type=float, default=60.0, help="the hold window, s")
    parser.add_argument("--quiet", type=float, default=30.0, help="the carrying window, s")
    parser.add_argument("--workers", type=int, default=2, help="byoa worker processes")
    parser.add_argument("--speed", type=float, default=1.0, help="sim_speed (1: real time)")
    parser.add_argument("--baseline-tasks", type=int, default=2000)
    parser.add_argument(
        "--profile", type=float, default=0.0, help="s of SLOWLOG sample after each hold window"
    )
    parser.add_argument("--redis-url", default=os.environ.get("BYOA_BENCH_REDIS_URL"))
    parser.add_argument("--short", action="store_true", help="seconds: 300 jobs at 20x")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.short:
        args.jobs, args.window, args.quiet, args.speed = "300", 3.0, 2.0, 20.0
        args.baseline_tasks, args.workers = 200, 1
    load0 = os.getloadavg()[0]
    counts = [int(n) for n in args.jobs.split(",")]
    with private_redis(args.redis_url) as url:
        baselines = [
            rq_baseline(url, args.baseline_tasks),
            routing_baseline(url, args.baseline_tasks),
        ]
        runs = [
            hold(
                url, n, args.window, args.quiet, args.workers, args.speed, args.short, args.profile
            )
            for n in counts
        ]
    report(runs, baselines, load0)
    if args.json:
        out = {
            "runs": [
                {
                    "jobs": r.jobs,
                    "accounts": r.accounts,
                    "owners": r.owners,
                    "windows": [{**asdict(w), **w.derived()} for w in r.windows],
                    "profile": asdict(r.profile) if r.profile else None,
                }
                for r in runs
            ],
            "baselines": [{**asdict(b), **b.derived()} for b in baselines],
            "load_start": load0,
            "load_end": os.getloadavg()[0],
        }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
