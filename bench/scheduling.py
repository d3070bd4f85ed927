"""Scheduling quality: traffic through the real routing scripts, in virtual time.

The same trace runs once per strategy (every `Strategy`; ours is `renewal` where the
router has it) and, where the router has the per-owner opt-in, once more as ours with
every owner opted in to spend fast hours that will surely expire. Each run uses the real
SUBMIT, START, SETTLE and WAKE scripts and the simulated driver against real Redis, with
the scripts and the driver reading a virtual clock (`Settings.sim_clock`): a worker is
modelled as taking a placed task at once, so waits are the router's alone, and the
reaper's wake-up is modelled at each renewal date. Nothing sleeps.

Traces (`bench.traces`): `day` (a day on a large pool at about 12 % utilisation), `busy`
(a day at 80 % or more of the slots) and `month` (36 days of several owners whose
accounts renew on different days, fast demand near what they bought). For the month the
offline bound (`bench.offline_bound`) says how much fast work could have been served.

Per strategy: fast work served fast (fast hours, turbo twice, of top-level fast/turbo
tasks), fast hours forfeited (left on an account just before each of its renewals within
the trace), fallbacks to relax while the owner had an account able to run fast, relax
jobs on Basic accounts, waits per mode, slot utilisation against its bound. Uses its own
key prefixes on the Redis at BYOA_BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and
deletes them afterwards.

    python -m bench.scheduling [--trace day|busy|month] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from bench.offline_bound import offline_bound
from bench.replay import Run
from bench.traces import US, Trace, make_busy, make_month, make_trace
from router.core import Router
from router.models import Plan, Strategy, TaskType
from router.pool import Pool
from router.redis_server import purge
from router.scripts import text_hash
from router.settings import Settings, SimSettings
from workers.drivers.simulated import draw

__all__ = ["Figures", "main", "make_trace", "simulate", "strategies"]

URL = os.environ.get("BYOA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
MS_PER_HOUR = 3_600_000
UPGRADE = "+upgrade_expiring"
"""Suffix of a run whose owners opted in to spend hours that will surely expire."""


def ours() -> Strategy:
    """Renewal-aware placement where the router has it, else the default."""
    return Strategy.__members__.get("RENEWAL") or Settings().strategy


def strategies() -> list[str]:
    """Ours first, then every other strategy, then ours with the opt-in (if it exists)."""
    names = [ours().value] + [s.value for s in Strategy if s is not ours()]
    if ours().name == "RENEWAL" and hasattr(Pool, "set_owner_options"):
        names.append(ours().value + UPGRADE)
    return names


@dataclass
class Figures:
    """What one strategy did with the trace."""

    strategy: str
    tasks: int
    completed: int
    failed: dict[str, int]
    """Failed tasks by error code."""
    fast_share: float
    """Fast/turbo requests served fast, by fast time (turbo twice)."""
    fast_hours_asked: float
    fast_hours_served: float
    fallbacks_with_fast_left: int
    relax_on_basic: int
    upgraded: int
    """Relax tasks run fast on hours that would expire (opted-in owners only)."""
    waits: dict[str, tuple[float, float]]
    """Per effective mode: mean and p95 wait (s), submission to start."""
    utilisation: float
    bound: float
    forfeited_hours: float
    seconds: float
    cpu_seconds: float = 0.0
    """CPU time of this process in the run (Redis's own is not in it)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "fast_served_fraction": round(self.fast_share, 6),
            "fast_hours_forfeited": round(self.forfeited_hours, 3),
            "fallbacks_while_owner_had_fast_hours": self.fallbacks_with_fast_left,
            "relax_on_basic": self.relax_on_basic,
            "wait_p95_seconds": {m: round(w[1], 2) for m, w in self.waits.items()},
            "wait_mean_seconds": {m: round(w[0], 2) for m, w in self.waits.items()},
            "utilisation": round(self.utilisation, 5),
            "utilisation_bound": round(self.bound, 5),
            "fast_hours_requested": round(self.fast_hours_asked, 3),
            "fast_hours_served_fast": round(self.fast_hours_served, 3),
            "relax_tasks_upgraded": self.upgraded,
            "tasks": self.tasks,
            "completed": self.completed,
            "failed": self.failed,
            "runtime_seconds": round(self.seconds, 1),
            "runtime_cpu_seconds": round(self.cpu_seconds, 1),
        }


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else 0.0


def measure(run: Run, strategy: str, seconds: float) -> Figures:
    """The figures, from the task records and accounts the run left in Redis."""
    router, trace = run.router, run.trace
    plans = {a.id: a.plan for a in trace.accounts}
    limits = {a.id: router.settings.plans[a.plan] for a in trace.accounts}
    jitter = router.settings.sim.jitter
    gpu_s = router.settings.gpu_seconds[TaskType.IMAGINE]
    ids = [(a.owner, a.task_id) for a in trace.arrivals]
    ids += [(a.owner, f"{a.task_id}-u") for a in trace.arrivals if a.upscale_after is not None]
    pipe = router.redis.pipeline(transaction=False)
    for owner, tid in ids:
        pipe.hgetall(router.keys.task(owner, tid))
    records = [text_hash(h) for h in pipe.execute() if h]
    waits: dict[str, list[float]] = defaultdict(list)
    asked = served = 0.0
    relax_on_basic = early = completed = upgraded = 0
    failed: dict[str, int] = defaultdict(int)
    busy_us = demand_us = 0
    for r in records:
        completed += r["status"] == "completed"
        if r["status"] == "failed":
            failed[r.get("error_code", "")] += 1
        mode = r.get("effective_mode", "")
        upgraded += bool(r.get("upgrade_reason"))
        if not r.get("parent_id") and r.get("requested_mode") in ("fast", "turbo"):
            cost = gpu_s * (1 + jitter * (2 * draw(r["id"], "gpu") - 1))
            cost *= 2 if r["requested_mode"] == "turbo" else 1
            asked += cost
            served += cost if mode in ("fast", "turbo") else 0.0
            if r.get("fallback_at"):
                early += run.had_fast(r["owner"], int(r["fallback_at"]))
        if mode == "relax" and r.get("account_id") and plans[r["account_id"]] is Plan.BASIC:
            relax_on_basic += 1
        if r.get("started_at") and r.get("created_at"):
            waits[mode].append((int(r["started_at"]) - int(r["created_at"])) / US)
        if r["status"] == "completed" and r.get("started_at"):
            start, end = int(r["started_at"]), int(r["finished_at"])
            demand_us += end - start
            busy_us += max(0, min(end, trace.horizon_us) - min(start, trace.horizon_us))
    capacity_us = (trace.horizon_us - trace.start_us) * sum(
        lim.fast_limit + (lim.relax_limit if lim.relax else 0) for lim in limits.values()
    )
    return Figures(
        strategy=strategy,
        tasks=len(records),
        completed=completed,
        failed=dict(failed),
        fast_share=served / asked if asked else 1.0,
        fast_hours_asked=asked / 3600,
        fast_hours_served=served / 3600,
        fallbacks_with_fast_left=early,
        relax_on_basic=relax_on_basic,
        upgraded=upgraded,
        waits={m: (statistics.fmean(w), p95(w)) for m, w in sorted(waits.items())},
        utilisation=busy_us / capacity_us,
        bound=min(1.0, demand_us / capacity_us),
        forfeited_hours=sum(run.forfeited_ms.values()) / MS_PER_HOUR,
        seconds=seconds,
    )


def simulate(trace: Trace, strategy: Strategy | str, url: str = URL) -> Figures:
    """Run the trace through a fresh pool under `strategy` (a `Strategy`, or its value
    with `+upgrade_expiring`: every owner opted in); its figures."""
    name = strategy.value if isinstance(strategy, Strategy) else strategy
    upgrade = name.endswith(UPGRADE)
    extra: dict[str, Any] = {}
    if trace.gpu_seconds:
        extra["gpu_seconds"] = {t.value: s for t, s in trace.gpu_seconds.items()}
    if trace.jitter is not None:
        extra["sim"] = SimSettings(jitter=trace.jitter)
    settings = Settings(
        redis_url=SecretStr(url),
        key_prefix=f"sched{uuid.uuid4().hex[:8]}",
        strategy=Strategy(name.removesuffix(UPGRADE)),
        sim_clock=True,
        metrics_enabled=False,
        **extra,
    )
    router = Router(settings)
    try:
        router.redis.set(router.keys.clock, trace.start_us)
        for spec in trace.accounts:
            router.pool.add(spec)
        if upgrade:
            for owner in sorted({s.owner for s in trace.accounts}):
                router.apply(router.pool.set_owner_options(owner, upgrade_expiring=True))
        began, cpu = time.perf_counter(), time.process_time()
        run = Run(router, trace)
        run.run()
        figures = measure(run, name, time.perf_counter() - began)
        figures.cpu_seconds = time.process_time() - cpu
        return figures
    finally:
        purge(router.redis, settings.key_prefix)


def table(figures: list[Figures]) -> str:
    """The figures side by side, a column per strategy."""
    modes = sorted({m for f in figures for m in f.waits})
    rows: list[tuple[str, list[str]]] = [
        ("tasks (completed)", [f"{f.tasks} ({f.completed})" for f in figures]),
        ("failed, by code", [", ".join(f"{c} {n}" for c, n in sorted(f.failed.items())) or "0"
                             for f in figures]),
        ("fast work served fast (by fast time)", [f"{f.fast_share:.2%}" for f in figures]),
        ("fast hours forfeited at renewals", [f"{f.forfeited_hours:.2f}" for f in figures]),
        ("fallbacks while fast hours left", [str(f.fallbacks_with_fast_left) for f in figures]),
        ("relax jobs on Basic accounts", [str(f.relax_on_basic) for f in figures]),
        ("relax tasks run fast (opt-in)", [str(f.upgraded) for f in figures]),
    ]  # fmt: skip
    for m in modes:
        rows.append((f"{m} wait mean / p95 (s)",
                     [f"{f.waits[m][0]:.1f} / {f.waits[m][1]:.1f}" if m in f.waits else "-"
                      for f in figures]))  # fmt: skip
    rows += [
        ("slot utilisation (bound)", [f"{f.utilisation:.1%} ({f.bound:.1%})" for f in figures]),
        ("simulation time (s)", [f"{f.seconds:.1f}" for f in figures]),
    ]
    head = ["", *(f.strategy for f in figures)]
    width = [max(len(r[0]) for r in rows)] + [
        max(len(head[i + 1]), *(len(r[1][i]) for r in rows)) for i in range(len(figures))
    ]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, width, strict=True))]
    lines.append("-|-".join("-" * w for w in width))
    for name, cells in rows:
        lines.append(" | ".join(c.ljust(w) for c, w in zip([name, *cells], width, strict=True)))
    return "\n".join(lines)


def build(args: argparse.Namespace) -> Trace:
    if args.trace == "month":
        return make_month(args.days or 36, args.owners or 4, args.load or 0.95, args.seed)
    if args.trace == "busy":
        return make_busy(args.hours or 24, args.owners or 2, args.load or 0.85, args.seed)
    return make_trace(args.hours or 24, args.owners or 5, args.rate, args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trace", choices=("day", "busy", "month"), default="day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object, last line")
    parser.add_argument("--hours", type=float, help="day/busy: virtual hours (24)")
    parser.add_argument("--days", type=float, help="month: virtual days (36)")
    parser.add_argument("--owners", type=int, help="owners (day 5, busy 2, month 4)")
    parser.add_argument("--rate", type=float, default=4.0, help="day: tasks/min per owner")
    parser.add_argument("--load", type=float, help="busy: offered load; month: fast demand")
    parser.add_argument("--strategy", action="append", choices=strategies())
    args = parser.parse_args(argv)
    trace = build(args)
    children = sum(a.upscale_after is not None for a in trace.arrivals)
    print(
        f"trace {trace.name}: {trace.note or f'{args.hours or 24:g} h'}, "
        f"{len(trace.accounts)} accounts, {len(trace.arrivals)} tasks (+ up to {children} "
        f"upscales), seed {trace.seed}",
        file=sys.stderr,
    )
    bound = None
    if trace.name == "month":
        served, asked = offline_bound(trace)
        bound = served / asked if asked else 1.0
        print(f"  offline bound: {served:.2f} of {asked:.2f} fast hours", file=sys.stderr)
    figures = []
    for name in args.strategy or strategies():
        figures.append(simulate(trace, name, URL))
        f = figures[-1]
        print(f"  {name}: {f.seconds:.1f} s ({f.cpu_seconds:.1f} s CPU)", file=sys.stderr)
        print(json.dumps({name: f.as_json()}), file=sys.stderr)
    print(table(figures))
    if bound is not None:
        print(f"\noffline bound on fast work served fast: {bound:.2%}")
    if args.json:
        print(
            json.dumps(
                {
                    "default": Settings().strategy.value,
                    "trace": trace.name,
                    "seed": trace.seed,
                    "strategies": {f.strategy: f.as_json() for f in figures},
                    "offline_fast_served_fraction": None if bound is None else round(bound, 6),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
