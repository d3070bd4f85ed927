"""Scheduling quality: a day of traffic through the real routing scripts, in virtual time.

The same trace (owners, a mixed pool, bursts, fast/turbo/relax tasks, upscales of finished
images) runs once per strategy: ours (`least_loaded`) and the open proxies' rules
(`random`, `round_robin`, `weighted`, `best_wait_idle`). Each run uses the real SUBMIT,
START and SETTLE scripts and the simulated driver against real Redis, with the scripts and
the driver reading a virtual clock (`Settings.sim_clock`): a worker is modelled as taking a
placed task at once, so waits are the router's alone. Nothing sleeps.

Printed per strategy: the share of fast/turbo requests served fast, fallbacks to relax
while the owner still had fast hours, relax jobs on Basic accounts, mean and p95 wait per
mode, slot utilisation within the day against its upper bound, and fast hours left unused
by owners whose tasks fell back. Uses its own key prefixes on the Redis at
BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and deletes them afterwards.

    python -m bench.scheduling [--hours 24] [--owners 5] [--rate 4.0] [--seed 1]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from router.core import Router
from router.models import Mode, Plan, Strategy, TaskType
from router.pool import AccountSpec
from router.redis_server import purge
from router.requests import Rejection, check_message
from router.scripts import Outcome, text, text_hash
from router.settings import Settings
from workers.drivers.base import OutOfFastHours
from workers.jobs import driver_job

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
US = 1_000_000
PLAN_MIX = (Plan.BASIC, Plan.BASIC, Plan.STANDARD, Plan.STANDARD, Plan.STANDARD, Plan.STANDARD,
            Plan.PRO, Plan.PRO, Plan.PRO, Plan.MEGA)  # fmt: skip
"""Each owner's ten accounts."""


@dataclass(frozen=True)
class Arrival:
    """One task of the trace; `upscale_after` seconds after it completes, an upscale."""

    at_us: int
    owner: str
    task_id: str
    mode: Mode
    in_prompt: bool
    """The mode as a prompt flag (else as `process_mode`)."""
    upscale_after: float | None


@dataclass(frozen=True)
class Trace:
    accounts: list[AccountSpec]
    arrivals: list[Arrival]
    horizon_us: int


def make_trace(hours: float, owners: int, rate: float, seed: int) -> Trace:
    """A reproducible trace: per owner a daily wave of `rate` tasks/min on average, bursts
    of five times that for ten minutes, and fast hours that run out for some owners."""
    rng = random.Random(seed)
    accounts: list[AccountSpec] = []
    arrivals: list[Arrival] = []
    horizon = hours * 3600
    for o in range(owners):
        owner = f"owner{o}"
        budget = (0.15, 0.4, 1.0)[o % 3]  # of the plan's monthly fast hours still left
        for i, plan in enumerate(PLAN_MIX):
            allowance = {Plan.BASIC: 3.3, Plan.STANDARD: 15, Plan.PRO: 30, Plan.MEGA: 60}[plan]
            fast_hours = round(allowance * budget * rng.uniform(0.5, 1.0), 2)
            accounts.append(AccountSpec(id=f"{owner}-a{i}", owner=owner, plan=plan,
                                        fast_hours=fast_hours))  # fmt: skip
        bursts = [rng.uniform(0, horizon) for _ in range(max(1, round(hours / 4)))]
        t, n = 0.0, 0
        peak = rate * 5 / 60  # tasks per second in a burst
        while True:
            t += rng.expovariate(peak)  # thinning of a Poisson process at the peak rate
            if t >= horizon:
                break
            wave = rate / 60 * (1 + 0.6 * math.sin(2 * math.pi * t / 86400 - math.pi / 2))
            now_rate = peak if any(b <= t < b + 600 for b in bursts) else wave
            if rng.random() >= now_rate / peak:
                continue
            r = rng.random()
            mode = Mode.FAST if r < 0.45 else Mode.TURBO if r < 0.55 else Mode.RELAX
            up = rng.uniform(5, 120) if rng.random() < 0.3 else None
            arrivals.append(
                Arrival(round(t * US), owner, f"{owner}-t{n}", mode, rng.random() < 0.5, up)
            )
            n += 1
    arrivals.sort(key=lambda a: a.at_us)
    return Trace(accounts, arrivals, round(horizon * US))


@dataclass
class Run:
    """One strategy's pass over a trace, event by event in virtual time."""

    router: Router
    trace: Trace
    events: list[tuple[int, int, str, tuple[Any, ...]]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)
    exhausted_at: dict[str, int] = field(default_factory=dict)
    """When each owner's last fast hours were gone (no account left that can run fast)."""
    children: dict[str, float] = field(default_factory=dict)

    def at(self, t_us: int, kind: str, *data: Any) -> None:
        heapq.heappush(self.events, (t_us, next(self.seq), kind, data))

    def run(self) -> None:
        settings = self.router.settings
        for a in self.trace.arrivals:
            self.at(a.at_us, "arrive", a)
        while self.events:
            t, _, kind, data = heapq.heappop(self.events)
            self.router.redis.set(self.router.keys.clock, t)
            if kind == "arrive":
                owner = self._arrive(data[0], settings)
            elif kind == "child":
                owner = self._child(*data, settings=settings)
            else:
                owner = self._end(*data)
            fastcap = self.router.keys.fastcap(owner)
            if owner not in self.exhausted_at and not self.router.redis.scard(fastcap):
                self.exhausted_at[owner] = t

    def _submit(self, message: dict[str, Any], settings: Settings) -> None:
        task = check_message(message, settings)
        assert not isinstance(task, Rejection), task
        _, outcome = self.router.tasks.submit_many([task])
        self._carry_out(outcome)

    def _arrive(self, a: Arrival, settings: Settings) -> str:
        prompt = f"a lighthouse at dusk --{a.mode.value}" if a.in_prompt else "a lighthouse"
        inp: dict[str, Any] = {"prompt": prompt}
        if not a.in_prompt:
            inp["process_mode"] = a.mode.value
        if a.upscale_after is not None:
            self.children[a.task_id] = a.upscale_after
        self._submit({"id": a.task_id, "owner": a.owner, "input": inp}, settings)
        return a.owner

    def _child(self, owner: str, parent: str, settings: Settings) -> str:
        message = {"id": f"{parent}-u", "owner": owner, "task_type": TaskType.UPSCALE.value,
                   "parent_id": parent, "input": {"index": 1}}  # fmt: skip
        self._submit(message, settings)
        return owner

    def _carry_out(self, outcome: Outcome) -> None:
        """What a worker would do with placed tasks, at once: start and submit them."""
        router = self.router
        for owner, account_id, setting in outcome.switches:
            ref = router.account_ref(owner, account_id)
            if ref is not None:
                router.driver.switch_mode(ref, setting)
        for p in outcome.placed:
            ok, _, started = router.tasks.start(p.owner, p.task_id, p.attempt)
            self._carry_out(started)
            if ok:
                self._run_job(p.owner, p.task_id, p.attempt)

    def _run_job(self, owner: str, task_id: str, attempt: int) -> None:
        router = self.router
        account, job = driver_job(router, owner, task_id, attempt)  # as a worker builds it
        try:
            handle = router.driver.submit(account, job)
        except OutOfFastHours:
            _, out = router.tasks.settle(owner, task_id, attempt, "out_of_fast", 0, None, None)
            self._carry_out(out)
            return
        ends = router.redis.hget(router.keys.sim_job(handle), "ends")
        assert ends is not None
        self.at(int(ends), "end", owner, task_id, attempt, handle)

    def _end(self, owner: str, task_id: str, attempt: int, handle: str) -> str:
        router = self.router
        result = router.driver.poll(handle)
        assert result is not None, f"job {handle} has not ended at its end time"
        status, out = router.tasks.settle(
            owner, task_id, attempt, "completed", result.gpu_ms, result.output, None
        )
        self._carry_out(out)
        after = self.children.pop(task_id, None)
        if status == "completed" and after is not None:
            now = int(text(router.redis.get(router.keys.clock) or b"0"))
            self.at(now + round(after * US), "child", owner, task_id)
        return owner


@dataclass
class Figures:
    """What one strategy did with the trace."""

    strategy: Strategy
    tasks: int
    completed: int
    failed: dict[str, int]
    """Failed tasks by error code."""
    fast_share: float
    fallbacks_with_fast_left: int
    relax_on_basic: int
    waits: dict[str, tuple[float, float]]
    """Per effective mode: mean and p95 wait (s), submission to start."""
    utilisation: float
    bound: float
    unused_fast_hours: float
    seconds: float


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else 0.0


def measure(run: Run, strategy: Strategy, seconds: float) -> Figures:
    """The figures, from the task records and accounts the run left in Redis."""
    router, trace = run.router, run.trace
    owners = sorted({a.owner for a in trace.accounts})
    plans = {a.id: a.plan for a in trace.accounts}
    limits = {a.id: router.settings.plans[a.plan] for a in trace.accounts}
    ids = [(a.owner, a.task_id) for a in trace.arrivals]
    ids += [(o, f"{t}-u") for o, t in ids]
    pipe = router.redis.pipeline(transaction=False)
    for owner, tid in ids:
        pipe.hgetall(router.keys.task(owner, tid))
    records = [text_hash(h) for h in pipe.execute() if h]
    waits: dict[str, list[float]] = defaultdict(list)
    asked_fast = served_fast = relax_on_basic = early = completed = 0
    failed: dict[str, int] = defaultdict(int)
    busy_us = demand_us = 0
    fell_back: set[str] = set()
    for r in records:
        completed += r["status"] == "completed"
        if r["status"] == "failed":
            failed[r.get("error_code", "")] += 1
        mode = r.get("effective_mode", "")
        child = bool(r.get("parent_id"))
        if not child and r.get("requested_mode") in ("fast", "turbo"):
            asked_fast += 1
            served_fast += mode in ("fast", "turbo")
            if r.get("fallback_at"):
                fell_back.add(r["owner"])
                exhausted = run.exhausted_at.get(r["owner"], math.inf)
                early += int(r["fallback_at"]) < exhausted
        if mode == "relax" and r.get("account_id") and plans[r["account_id"]] is Plan.BASIC:
            relax_on_basic += 1
        if r.get("started_at") and r.get("created_at"):
            waits[mode].append((int(r["started_at"]) - int(r["created_at"])) / US)
        if r["status"] == "completed" and r.get("started_at"):
            start, end = int(r["started_at"]), int(r["finished_at"])
            demand_us += end - start
            busy_us += max(0, min(end, trace.horizon_us) - min(start, trace.horizon_us))
    capacity_us = trace.horizon_us * sum(
        lim.fast_limit + (lim.relax_limit if lim.relax else 0) for lim in limits.values()
    )
    unused_ms = 0
    for owner in owners:
        if owner in fell_back:
            for a in trace.accounts:
                if a.owner == owner:
                    fast_ms = router.redis.hget(router.keys.account(owner, a.id), "fast_ms")
                    unused_ms += max(0, int(fast_ms or 0))
    return Figures(
        strategy=strategy,
        tasks=len(records),
        completed=completed,
        failed=dict(failed),
        fast_share=served_fast / asked_fast if asked_fast else 1.0,
        fallbacks_with_fast_left=early,
        relax_on_basic=relax_on_basic,
        waits={m: (statistics.fmean(w), p95(w)) for m, w in sorted(waits.items())},
        utilisation=busy_us / capacity_us,
        bound=min(1.0, demand_us / capacity_us),
        unused_fast_hours=unused_ms / 3_600_000,
        seconds=seconds,
    )


def simulate(trace: Trace, strategy: Strategy, url: str = URL) -> Figures:
    """Run the trace through a fresh pool under `strategy`; its figures."""
    settings = Settings(
        redis_url=url,
        key_prefix=f"sched{uuid.uuid4().hex[:8]}",
        strategy=strategy,
        sim_clock=True,
        metrics_enabled=False,
    )
    router = Router(settings)
    try:
        router.redis.set(router.keys.clock, 0)
        for spec in trace.accounts:
            router.pool.add(spec)
        began = time.perf_counter()
        run = Run(router, trace)
        run.run()
        return measure(run, strategy, time.perf_counter() - began)
    finally:
        purge(router.redis, settings.key_prefix)


def table(figures: list[Figures]) -> str:
    """The figures side by side, a column per strategy."""
    modes = sorted({m for f in figures for m in f.waits})
    rows: list[tuple[str, list[str]]] = [
        ("tasks (completed)", [f"{f.tasks} ({f.completed})" for f in figures]),
        ("failed, by code", [", ".join(f"{c} {n}" for c, n in sorted(f.failed.items())) or "0"
                             for f in figures]),
        ("fast/turbo requests served fast", [f"{f.fast_share:.1%}" for f in figures]),
        ("fallbacks while fast hours left", [str(f.fallbacks_with_fast_left) for f in figures]),
        ("relax jobs on Basic accounts", [str(f.relax_on_basic) for f in figures]),
    ]  # fmt: skip
    for m in modes:
        rows.append((f"{m} wait mean / p95 (s)",
                     [f"{f.waits[m][0]:.1f} / {f.waits[m][1]:.1f}" if m in f.waits else "-"
                      for f in figures]))  # fmt: skip
    rows += [
        ("slot utilisation (bound)", [f"{f.utilisation:.1%} ({f.bound:.1%})" for f in figures]),
        ("fast hours unused, owners fell back", [f"{f.unused_fast_hours:.2f}" for f in figures]),
        ("simulation time (s)", [f"{f.seconds:.1f}" for f in figures]),
    ]
    head = ["", *(f.strategy.value for f in figures)]
    width = [max(len(r[0]) for r in rows)] + [
        max(len(head[i + 1]), *(len(r[1][i]) for r in rows)) for i in range(len(figures))
    ]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, width, strict=True))]
    lines.append("-|-".join("-" * w for w in width))
    for name, cells in rows:
        lines.append(" | ".join(c.ljust(w) for c, w in zip([name, *cells], width, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="virtual hours of traffic")
    parser.add_argument("--owners", type=int, default=5, help="owners of ten accounts each")
    parser.add_argument("--rate", type=float, default=4.0, help="tasks/min per owner, mean")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategy", action="append", choices=[s.value for s in Strategy])
    args = parser.parse_args(argv)
    trace = make_trace(args.hours, args.owners, args.rate, args.seed)
    print(
        f"trace: {args.hours:g} h, {args.owners} owners, {len(trace.accounts)} accounts, "
        f"{len(trace.arrivals)} tasks (+ upscales), seed {args.seed}",
        file=sys.stderr,
    )
    figures = []
    for name in args.strategy or [s.value for s in Strategy]:
        figures.append(simulate(trace, Strategy(name)))
        print(f"  {name}: {figures[-1].seconds:.1f} s", file=sys.stderr)
    print(table(figures))
    ours = figures[0] if figures[0].strategy is Strategy.LEAST_LOADED else None
    if ours is not None and len(figures) > 1:
        beaten = all(
            ours.waits[m][1] <= f.waits[m][1]
            for f in figures[1:]
            for m in ours.waits
            if m in f.waits
        )
        print(f"\nleast_loaded has the lowest p95 wait in every mode: {'yes' if beaten else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
