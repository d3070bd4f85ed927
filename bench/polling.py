"""Polling benchmark: what following running jobs costs. Two parts, in one run on one Redis.

1. One worker process carrying N running jobs (default 1,000 and 5,000, and an idle worker
   for its floor), the simulator at x1 speed. A pool of Mega accounts (12 fast slots each,
   ten per owner) gets N fast tasks through `Router.submit_many`; one `byoa worker`
   process submits them all (the real path: rq job, START, the simulator, the handle, the
   poll entry) and then only polls them. The simulator's jobs last about seven minutes
   (`sim.fast_wall_factor` 7), so none ends while it is measured. After a warm-up, the
   worker's CPU (/proc/<pid>/stat, every thread) and the Redis server's (INFO cpu) are
   read over `--seconds`, as CPU seconds per poll interval and as cores. The worker is
   `byoa worker` started through this module (`--counted-worker`) so that it can say how
   many jobs its poller polled: polls/s, and the seconds between two polls of a job (the
   poll interval, 1 s, when the worker keeps up). How late the earliest due poll is (the
   schedule's head against the Redis clock, sampled every 0.2 s) says the same. With
   `--profile`, the poller then runs in this process under cProfile over the same jobs
   (its checks inline) and the top costs are printed.

2. HTTP requests to the backends for 1,000 running jobs on 100 accounts (ten jobs each),
   each account behind its own midjourney-proxy model (tests/mjproxy_stub.py, trueai by
   default; jobs run an hour), the proxies in a child process that counts the requests
   they receive. One poller runs in this process with the midjourney-proxy driver,
   polling jobs one by one (a subclass whose `poll_many` answers nothing, so each job is
   fetched alone: `GET /mj/task/{id}/fetch`) or in batches (one
   `POST /mj/task/list-by-condition` per account in each round: a claim of up to
   `poll_batch` due jobs, 1,000 by default). Batched four times: the jobs all submitted
   before polling starts (all come due together, claimed in the order of their schedule
   entries, `<owner>/<task id>/<attempt>`), with ten and with 25 accounts per owner; the
   jobs submitted steadily over `--ramp` seconds while the poller runs (as jobs arriving
   over time leave the schedule); and two of those again with `poll_batch` 100 (the
   default before: a round of 100 asks an account once for every round its jobs land in).

Uses its own key prefixes on BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and
deletes them afterwards.

    python -m bench.polling [--jobs 0,1000,5000] [--seconds 20] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis import Redis

from bench.measure import proc_cpu, redis_cpu, wait
from router.accounts import AccountSpec
from router.core import Router
from router.driver import DriverError, DriverResult
from router.polls import Claim
from router.redis_server import purge
from router.requests import NewTask, check_message
from router.settings import Settings
from workers.drivers.mjproxy import MjProxyDriver
from workers.jobs import run_task, submissions, use_settings
from workers.poller import Poller

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ROOT = Path(__file__).resolve().parents[1]
FAST_SLOTS = 12
"""A Mega account's concurrent fast jobs (the plan's default)."""
ACCOUNTS_PER_OWNER = 10
WALL_FACTOR = 7.0
"""Simulated fast jobs last 60 GPU s x 7 (+-20 %): 5.6 to 8.4 minutes, within the run
timeout (10 minutes), longer than any row takes."""
SECRET = "bench-secret"
FETCH = re.compile(r"/mj/task/[^/]+/fetch")


@dataclass
class CpuRow:
    jobs: int
    accounts: int
    seconds: float
    interval: float
    worker_cpu: float
    redis_cpu: float
    polls: int
    """Jobs the worker's poller polled in the window."""
    rounds: int
    """Its poll rounds (claims of up to `poll_batch` due jobs)."""
    late_max_ms: float
    late_end_ms: float

    @property
    def polls_per_second(self) -> float:
        return self.polls / self.seconds

    @property
    def period(self) -> float:
        """Seconds between two polls of a job (the poll interval when the worker keeps up)."""
        return self.jobs / self.polls_per_second if self.polls else 0.0

    @property
    def cpu_ms_per_1000_polls(self) -> float:
        return 1e6 * self.worker_cpu / self.polls if self.polls else 0.0

    @property
    def worker_per_interval(self) -> float:
        return self.worker_cpu / (self.seconds / self.interval)

    @property
    def worker_cores(self) -> float:
        return self.worker_cpu / self.seconds

    @property
    def redis_cores(self) -> float:
        return self.redis_cpu / self.seconds


@dataclass
class RequestRow:
    name: str
    jobs: int
    accounts: int
    seconds: float
    interval: float
    requests: int
    job_polls: int
    rounds: int
    """The poller's rounds (claims of up to `poll_batch` due jobs)."""
    late_max_ms: float
    paths: dict[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def per_account_interval(self) -> float:
        return self.requests / self.accounts / (self.seconds / self.interval)

    @property
    def per_job_poll(self) -> float:
        return self.requests / max(self.job_polls, 1)


def forget(router: Router) -> None:
    """Delete the run's keys, its rq queue's name among rq's queues too."""
    purge(router.redis, router.keys.prefix)
    router.redis.srem("rq:queues", f"rq:queue:{router.settings.queue_name}")


class Lateness:
    """How long the earliest due entry of the poll schedule has been waiting unclaimed."""

    def __init__(self, router: Router) -> None:
        self.redis, self.key = router.redis, router.keys.polls
        self.max_ms = self.last_ms = 0.0

    def sample(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.zrange(self.key, 0, 0, withscores=True)
        (seconds, micros), head = pipe.execute()
        now = int(seconds) * 1_000_000 + int(micros)
        self.last_ms = max(0.0, (now - head[0][1]) / 1000) if head else 0.0
        self.max_ms = max(self.max_ms, self.last_ms)

    def over(self, seconds: float) -> None:
        """Sample every 0.2 s for `seconds`."""
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            self.sample()
            time.sleep(min(0.2, left))
        self.sample()


def add_accounts(
    router: Router, count: int, per_owner: int = ACCOUNTS_PER_OWNER, **spec: Any
) -> list[tuple[str, str]]:
    """Mega accounts, `per_owner` per owner, as (owner, id); `spec` values may be lists
    (one per account)."""
    added = []
    for i in range(count):
        own = {k: v[i] if isinstance(v, list) else v for k, v in spec.items()}
        owner = f"o{i // per_owner}"
        router.apply(router.pool.add(AccountSpec(id=f"a{i}", owner=owner, plan="mega", **own)))
        added.append((owner, f"a{i}"))
    return added


def place(
    router: Router, per_owner: dict[str, int], accounts: list[tuple[str, str]]
) -> list[NewTask]:
    """Fast tasks routed in-process (placed, rq jobs enqueued); every one must be placed on
    one of `accounts` (owner, id)."""
    tasks: list[NewTask] = []
    for owner, n in per_owner.items():
        for _ in range(n):
            message = {
                "id": f"t{len(tasks):05d}",
                "owner": owner,
                "input": {"prompt": "a lighthouse at dusk", "process_mode": "fast"},
            }
            checked = check_message(message, router.settings)
            assert isinstance(checked, NewTask), checked
            tasks.append(checked)
    for i in range(0, len(tasks), 500):
        router.submit_many(tasks[i : i + 500])
    pipe = router.redis.pipeline(transaction=False)
    for owner, account_id in accounts:
        pipe.hget(router.keys.account(owner, account_id), "fast_inflight")
    placed = sum(int(n or 0) for n in pipe.execute())
    if placed != len(tasks):
        raise SystemExit(f"{placed} of {len(tasks)} tasks placed; the pool is short")
    return tasks


def tasks_by_owner(
    accounts: Sequence[tuple[str, str]], jobs: int, per_account: int
) -> dict[str, int]:
    """`jobs` tasks over the accounts' owners, `per_account` for each account in turn."""
    counts: Counter[str] = Counter()
    left = jobs
    for owner, _ in accounts:
        take = min(per_account, left)
        counts[owner] += take
        left -= take
    return dict(counts)


# Part 1: one worker process carrying N running jobs.


def carrying(jobs: int, seconds: float, warmup: float, profile: bool) -> tuple[CpuRow, str]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=URL, key_prefix=prefix, metrics_enabled=False)
    router = Router(settings)
    profiled = ""
    try:
        accounts = math.ceil(jobs / FAST_SLOTS)
        pool = add_accounts(router, accounts)
        place(router, tasks_by_owner(pool, jobs, FAST_SLOTS), pool)
        env = {
            **os.environ,
            "BYOA_REDIS_URL": URL,
            "BYOA_KEY_PREFIX": prefix,
            "BYOA_SIM_SPEED": "1",
            "BYOA_SIM__FAST_WALL_FACTOR": str(WALL_FACTOR),
            "BYOA_METRICS_ENABLED": "false",
        }
        worker = CountedWorker(env)
        try:
            wait(lambda: router.polls.size() >= jobs, 600, f"{jobs} jobs submitted")
            time.sleep(warmup)
            late = Lateness(router)
            (polls0, rounds0), redis0 = worker.polled(), redis_cpu(router.redis)
            cpu0, started = proc_cpu(worker.proc.pid), time.perf_counter()
            late.over(seconds)
            wall, cpu = time.perf_counter() - started, proc_cpu(worker.proc.pid) - cpu0
            rcpu = redis_cpu(router.redis) - redis0
            polls1, rounds1 = worker.polled()
            polls, rounds = polls1 - polls0, rounds1 - rounds0
            if router.polls.size() != jobs:
                print(f"warning: {jobs - router.polls.size()} jobs ended while measured")
            interval = settings.poll_interval_seconds
            row = CpuRow(
                jobs, accounts, wall, interval, cpu, rcpu, polls, rounds, late.max_ms,
                late.last_ms,
            )  # fmt: skip
        finally:
            worker.stop()
        if profile and jobs:
            profiled = profile_poller(settings, seconds)
        return row, profiled
    finally:
        forget(router)


class CountedWorker:
    """A `byoa worker` process (`--counted-worker`: the same command, with a count of the
    jobs its poller polls, read through its stdin and stdout)."""

    def __init__(self, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "bench.polling", "--counted-worker"]
        env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def polled(self) -> tuple[int, int]:
        """Jobs polled and poll rounds (claims) so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"the worker exited with {self.proc.returncode}")
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        polls, rounds = json.loads(self.proc.stdout.readline())
        return int(polls), int(rounds)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def counted_worker() -> None:
    """The child: `byoa worker`, counting what its poller polls; answers `count` on stdin."""
    from router.cli import main as byoa

    counts = [0, 0]
    poll = Poller._poll

    def counted(self: Poller, claim: Claim) -> None:
        poll(self, claim)
        counts[0] += len(claim.entries)
        counts[1] += 1

    Poller._poll = counted  # type: ignore[method-assign]

    def answer() -> None:
        for _ in sys.stdin:
            print(json.dumps(counts), flush=True)

    threading.Thread(target=answer, name="bench-count", daemon=True).start()
    byoa(["--log-level", "WARNING", "worker"])


class Inline:
    """The poller's thread pool run in the calling thread, so that cProfile sees the checks."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterable[Any]:
        return list(map(fn, items))

    def shutdown(self, **_: Any) -> None:
        pass


def profile_poller(settings: Settings, seconds: float, top: int = 15) -> str:
    """The same poller, in this process under cProfile (checks inline), over `seconds`."""
    poller = Poller(Router(settings))
    poller.threads.shutdown()
    poller.threads = Inline()  # type: ignore[assignment]
    prof = cProfile.Profile()
    cpu0, deadline = time.process_time(), time.monotonic() + seconds
    prof.enable()
    while (left := deadline - time.monotonic()) > 0:
        pause = poller.poll_once()
        if pause > 0:
            time.sleep(min(pause, left))
    prof.disable()
    cpu = time.process_time() - cpu0
    out = io.StringIO()
    print(f"cProfile of the poller, in-process, {seconds:g} s: {cpu:.2f} CPU s", file=out)
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_callees(r"\(poll_once\)|\(_poll\)|\(_check\)")
    return out.getvalue()


# Part 2: HTTP requests to the backends, one by one vs in batches.


class Counting(MjProxyDriver):
    """The midjourney-proxy driver, counting job polls it answers (alone or in a batch)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        super().__init__(settings, redis)
        self.polls = self.rounds = 0
        self.counting = threading.Lock()

    def count(self, n: int) -> None:
        with self.counting:
            self.polls += n

    def poll(self, handle: str) -> DriverResult | None:
        self.count(1)
        return super().poll(handle)

    def poll_many(self, handles: Sequence[str]) -> dict[str, DriverResult | DriverError | None]:
        self.rounds += 1  # once per poll round, from the poller's own thread
        known = super().poll_many(handles)
        self.count(len(known))
        return known


class OneByOne(Counting):
    """Asks nothing in batches: the poller polls each job alone (`Driver.poll`)."""

    def poll_many(self, handles: Sequence[str]) -> dict[str, DriverResult | DriverError | None]:
        self.rounds += 1
        return {}


class Proxies:
    """`count` midjourney-proxy models in a child process (`--serve-proxies`)."""

    def __init__(self, count: int, server: str) -> None:
        cmd = [sys.executable, "-m", "bench.polling", "--serve-proxies", str(count)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        self.proc = subprocess.Popen(
            [*cmd, "--server", server], cwd=ROOT, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.urls: list[str] = json.loads(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the proxies' process ended")
        return line

    def requests(self) -> Counter[str]:
        """Requests the proxies have received so far, by method and path."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return Counter(json.loads(self._line()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def serve_proxies(count: int, server: str) -> None:
    """The child: start the proxies, print their URLs, answer `count` until stdin ends."""
    from tests.mjproxy_stub import StubProxy

    with contextlib.ExitStack() as stack:
        proxies = []
        for _ in range(count):
            proxy = stack.enter_context(StubProxy(server=server, secret=SECRET, run_ms=3_600_000))
            proxy.core_size = FAST_SLOTS  # the account's concurrent jobs (Mega)
            proxies.append(proxy)
        print(json.dumps([p.url for p in proxies]), flush=True)
        for _ in sys.stdin:
            counts: Counter[str] = Counter()
            for p in proxies:
                with p._lock:
                    seen = list(p.requests)
                counts.update(
                    f"{method} {FETCH.sub('/mj/task/{id}/fetch', path)}" for method, path, _ in seen
                )
            print(json.dumps(counts), flush=True)


def backend_requests(
    name: str, server: str, jobs: int, accounts: int, seconds: float, ramp: float,
    one_by_one: bool, arrivals: bool, per_owner: int = ACCOUNTS_PER_OWNER,
    poll_batch: int | None = None,
) -> RequestRow:  # fmt: skip
    proxies = Proxies(accounts, server)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=URL, key_prefix=prefix, driver="mjproxy", metrics_enabled=False)
    if poll_batch is not None:
        settings = settings.model_copy(update={"poll_batch": poll_batch})
    router = Router(settings)
    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        added = add_accounts(
            router, accounts, per_owner, backend_url=proxies.urls, backend_server=server,
            credentials=SecretStr(SECRET),
        )  # fmt: skip
        tasks = place(router, tasks_by_owner(added, jobs, math.ceil(jobs / accounts)), added)
        use_settings(settings)
        polling = Router(settings)
        driver = (OneByOne if one_by_one else Counting)(settings, polling.redis)
        polling.__dict__["driver"] = driver  # the cached property, set beforehand
        poller = Poller(polling)
        thread = threading.Thread(target=poller.run, args=(stop,), name="bench-poller")
        if arrivals:
            thread.start()
        started = time.perf_counter()
        for i, t in enumerate(tasks):
            if arrivals:  # a steady rate over `ramp` seconds
                time.sleep(max(0.0, started + i * ramp / len(tasks) - time.perf_counter()))
            run_task(t.owner, t.id, 1)
        pool = submissions()
        if pool is not None:
            pool.wait_idle()
        router.queue.empty()  # these rq jobs ran here
        if not arrivals:
            thread.start()
        wait(lambda: router.polls.size() >= jobs, 120, f"{jobs} jobs submitted")
        time.sleep(3 * settings.poll_interval_seconds)
        late = Lateness(router)
        before, polls0, rounds0 = proxies.requests(), driver.polls, driver.rounds
        t0 = time.perf_counter()
        late.over(seconds)
        after, polls1, rounds1 = proxies.requests(), driver.polls, driver.rounds
        wall = time.perf_counter() - t0
        if router.polls.size() != jobs:
            print(f"warning: {jobs - router.polls.size()} jobs ended while measured")
        paths = dict(after - before)
        return RequestRow(
            name, jobs, accounts, wall, settings.poll_interval_seconds, sum(paths.values()),
            polls1 - polls0, rounds1 - rounds0, late.max_ms, paths,
        )  # fmt: skip
    finally:
        stop.set()
        if thread is not None and thread.is_alive():
            thread.join(timeout=60)
        use_settings(None)
        forget(router)
        proxies.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="0,1000,5000", help="running jobs one worker carries")
    parser.add_argument("--seconds", type=float, default=20.0, help="each measurement, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="after the last submission, s")
    parser.add_argument("--http-jobs", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=100, help="accounts in part 2")
    parser.add_argument("--server", choices=["trueai", "novicezk"], default="trueai")
    parser.add_argument("--ramp", type=float, default=5.0, help="arrivals spread over, s")
    parser.add_argument("--skip", choices=["cpu", "http"], help="leave one part out")
    parser.add_argument("--profile", action="store_true", help="cProfile the poller, most jobs")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--serve-proxies", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--counted-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_worker:
        counted_worker()
        return
    if args.serve_proxies:
        serve_proxies(args.serve_proxies, args.server)
        return
    load0 = os.getloadavg()[0]
    cpu_rows: list[CpuRow] = []
    profiles: list[str] = []
    if args.skip != "cpu":
        counts = [int(n) for n in args.jobs.split(",")]
        for n in counts:
            profile = args.profile and n == max(counts)
            row, profiled = carrying(n, args.seconds, args.warmup, profile)
            cpu_rows.append(row)
            profiles.append(profiled)
    http_rows: list[RequestRow] = []
    if args.skip != "http":
        n, a, s, server = args.http_jobs, args.accounts, args.seconds, args.server
        ramp, owned = args.ramp, ACCOUNTS_PER_OWNER
        for name, one, arrivals, per_owner, batch in (
            ("one by one", True, False, owned, None),
            ("batched, submitted at once", False, False, owned, None),
            ("batched, at once, 25 accounts per owner", False, False, 25, None),
            (f"batched, arriving over {ramp:g} s", False, True, owned, None),
            ("batched, arriving, poll_batch 100 (before)", False, True, owned, 100),
            ("batched, at once, 25 per owner, poll_batch 100", False, False, 25, 100),
        ):
            row = backend_requests(name, server, n, a, s, ramp, one, arrivals, per_owner, batch)
            http_rows.append(row)
    if cpu_rows:
        print("One worker process carrying running jobs (simulator x1, poll interval 1 s):")
        print(
            f"{'jobs':>6} {'accounts':>8} {'polls/s':>8} {'s per job':>9} {'rounds/s':>8} "
            f"{'worker CPU s/interval':>21} {'worker cores':>12} {'CPU ms/1k polls':>15} "
            f"{'Redis cores':>11} {'late max ms':>11}"
        )
        for r in cpu_rows:
            per_1000 = f"{r.cpu_ms_per_1000_polls:.0f}" if r.polls else "-"
            print(
                f"{r.jobs:>6} {r.accounts:>8} {r.polls_per_second:>8.0f} {r.period:>9.2f} "
                f"{r.rounds / r.seconds:>8.1f} {r.worker_per_interval:>21.3f} "
                f"{r.worker_cores:>12.3f} {per_1000:>15} "
                f"{r.redis_cores:>11.3f} {r.late_max_ms:>11.0f}"
            )
    if http_rows:
        r0 = http_rows[0]
        print(
            f"HTTP requests to {r0.accounts} {args.server} proxies for {r0.jobs} running jobs "
            f"(poll interval {r0.interval:g} s; poll_batch {Settings().poll_batch} unless said):"
        )
        print(
            f"{'polling':<40} {'requests/s':>10} {'per account per interval':>24} "
            f"{'job polls/s':>11} {'rounds/s':>8} {'requests per job poll':>21} "
            f"{'late max ms':>11}"
        )
        for h in http_rows:
            print(
                f"{h.name:<40} {h.rate:>10.1f} {h.per_account_interval:>24.2f} "
                f"{h.job_polls / h.seconds:>11.1f} {h.rounds / h.seconds:>8.1f} "
                f"{h.per_job_poll:>21.3f} {h.late_max_ms:>11.0f}"
            )
    print(f"load average (1 min) {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for p in profiles:
        if p:
            print(p)
    if args.json:
        out = {
            "cpu": [
                {**asdict(r), "worker_cores": r.worker_cores, "redis_cores": r.redis_cores}
                for r in cpu_rows
            ],
            "http": [
                {**asdict(h), "rate": h.rate, "per_account_interval": h.per_account_interval}
                for h in http_rows
            ],
        }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
