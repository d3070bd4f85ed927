"""The traces `bench.scheduling` replays: a day, a busy day and a billing month.

Each is reproducible from its seed. Times are microseconds on the virtual clock; a trace
starts at `start_us` (the month starts on a real date, since renewal dates must be one).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from router.accounts import AccountSpec, epoch_us
from router.models import Mode, Plan, TaskType

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
PLAN_HOURS = {Plan.BASIC: 3.3, Plan.STANDARD: 15.0, Plan.PRO: 30.0, Plan.MEGA: 60.0}
"""The plans' default fast hours a cycle (as `router.settings.DEFAULT_PLANS`)."""
PLAN_MIX = (Plan.BASIC, Plan.BASIC, Plan.STANDARD, Plan.STANDARD, Plan.STANDARD, Plan.STANDARD,
            Plan.PRO, Plan.PRO, Plan.PRO, Plan.MEGA)  # fmt: skip
"""Each owner's ten accounts in the day trace."""
MONTH_MIX = (Plan.BASIC, Plan.STANDARD, Plan.STANDARD, Plan.PRO, Plan.PRO, Plan.MEGA)
"""Each owner's six accounts in the month trace: 153.3 fast hours a cycle."""
BUSY_MIX = (Plan.BASIC, Plan.STANDARD, Plan.STANDARD, Plan.PRO)
"""Each owner's four accounts in the busy trace: 21 fast slots, 9 relax slots."""
MONTH_START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
MONTH_GPU_SECONDS = 300.0
"""GPU seconds of one month-trace task at the fast rate: a task stands for five one-minute
jobs, so a month of fast hours is a few thousand tasks per owner, not tens of thousands."""
BUSY_GPU_SECONDS = 360.0
"""GPU seconds of one busy-trace image (its upscale a third): six one-minute jobs."""
WALL = {Mode.FAST: 0.8, Mode.TURBO: 0.35, Mode.RELAX: 3.0}
"""The simulated driver's wall time per GPU second (`SimSettings`' defaults)."""


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
    """When arrivals stop (absolute, on the virtual clock)."""
    name: str = "day"
    seed: int = 1
    start_us: int = 0
    gpu_seconds: dict[TaskType, float] = field(default_factory=dict)
    """Overrides of the settings' GPU seconds per task type."""
    jitter: float | None = None
    """Override of the simulator's GPU-time jitter (None: its default)."""
    note: str = ""


def _arrivals(
    rng: random.Random,
    start: float,
    end: float,
    peak: float,
    rate: Callable[[float], float],
) -> list[float]:
    """Times (s) of a Poisson process of intensity `rate(t)` <= `peak`, by thinning."""
    out: list[float] = []
    t = start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() < rate(t) / peak:
            out.append(t)


def _scaled(rate: float, shape: Callable[[float], float]) -> Callable[[float], float]:
    return lambda t: rate * shape(t)


def daily(t: float, depth: float) -> float:
    """A daily wave of mean 1: lowest at midnight UTC, highest at noon."""
    return 1 + depth * math.sin(2 * math.pi * t / 86400 - math.pi / 2)


def make_trace(hours: float, owners: int, rate: float, seed: int) -> Trace:
    """The day trace: per owner a daily wave of `rate` tasks/min on average, bursts of five
    times that for ten minutes, and fast hours that run out for some owners."""
    rng = random.Random(seed)
    accounts: list[AccountSpec] = []
    arrivals: list[Arrival] = []
    horizon = hours * 3600
    for o in range(owners):
        owner = f"owner{o}"
        budget = (0.15, 0.4, 1.0)[o % 3]  # of the plan's monthly fast hours still left
        for i, plan in enumerate(PLAN_MIX):
            fast_hours = round(PLAN_HOURS[plan] * budget * rng.uniform(0.5, 1.0), 2)
            accounts.append(AccountSpec(id=f"{owner}-a{i}", owner=owner, plan=plan,
                                        fast_hours=fast_hours))  # fmt: skip
        bursts = [rng.uniform(0, horizon) for _ in range(max(1, round(hours / 4)))]
        t, n = 0.0, 0
        peak = rate * 5 / 60  # tasks per second in a burst
        while True:
            t += rng.expovariate(peak)  # thinning of a Poisson process at the peak rate
            if t >= horizon:
                break
            wave = rate / 60 * daily(t, 0.6)
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
    return Trace(accounts, arrivals, round(horizon * US), name="day", seed=seed)


def week_factor(t: float) -> float:
    """Weekdays 1.15, weekends 0.625 (mean 1 over a week starting on a Monday)."""
    return 1.15 if (t // 86400) % 7 < 5 else 0.625


def make_month(days: float = 36, owners: int = 4, load: float = 0.95, seed: int = 1) -> Trace:
    """A billing month and then some: per owner six accounts (Basic, 2 Standard, 2 Pro,
    Mega) renewing on different days of the 30-day cycle, each starting with the hours
    left by spending its plan evenly since its last renewal (times 0.9-1.1); fast/turbo
    demand averaging `load` times what the owner buys a cycle, shaped by a weekly wave
    (weekdays 1.15, weekends 0.625), a daily wave (+-50 %) and two bursts a week (three
    times the rate for two hours); as many relax tasks as fast ones, on the same shape.
    Fast tasks are 85 % fast, 15 % turbo (twice the fast time). No upscales."""
    rng = random.Random(seed)
    start_us = epoch_us(MONTH_START)
    horizon = days * 86400
    cost_h = MONTH_GPU_SECONDS / 3600
    accounts: list[AccountSpec] = []
    arrivals: list[Arrival] = []
    for o in range(owners):
        owner = f"owner{o}"
        # Renewal days spread over the cycle (one account every five days or so, shuffled).
        slots = [(i + rng.uniform(0.1, 0.9)) * 30 / len(MONTH_MIX) for i in range(len(MONTH_MIX))]
        rng.shuffle(slots)
        bought = 0.0
        for i, plan in enumerate(MONTH_MIX):
            day = round(slots[i] * 24) / 24  # on the hour
            anchor = MONTH_START + timedelta(days=day)
            left = min(PLAN_HOURS[plan], PLAN_HOURS[plan] * day / 30 * rng.uniform(0.9, 1.1))
            accounts.append(AccountSpec(id=f"{owner}-a{i}", owner=owner, plan=plan,
                                        fast_hours=round(left, 2), renews_at=anchor))  # fmt: skip
            bought += PLAN_HOURS[plan]
        bursts = [rng.uniform(0, horizon - 7200) for _ in range(max(1, round(days * 2 / 7)))]
        burst_extra = 2 * 7200 * len(bursts) / horizon  # mean added by bursts (x3 = +2)

        def shape(t: float, bursts: list[float] = bursts, extra: float = burst_extra) -> float:
            b = 2.0 if any(s <= t < s + 7200 for s in bursts) else 0.0
            return (week_factor(t) * daily(t, 0.5) + b) / (1 + extra)

        fast_per_s = load * bought / 30 / 86400 / (cost_h * (0.85 + 0.15 * 2))  # tasks/s
        peak = fast_per_s * (1.15 * 1.5 + 2) / (1 + burst_extra) * 1.01
        n = 0
        for mode_kind in ("fast", "relax"):
            for t in _arrivals(rng, 0.0, horizon, peak, _scaled(fast_per_s, shape)):
                if mode_kind == "relax":
                    mode = Mode.RELAX
                else:
                    mode = Mode.TURBO if rng.random() < 0.15 else Mode.FAST
                at = start_us + round(t * US)
                arrivals.append(Arrival(at, owner, f"{owner}-t{n}", mode, rng.random() < 0.5, None))
                n += 1
    arrivals.sort(key=lambda a: (a.at_us, a.task_id))
    return Trace(
        accounts,
        arrivals,
        start_us + round(horizon * US),
        name="month",
        seed=seed,
        start_us=start_us,
        gpu_seconds={t: MONTH_GPU_SECONDS for t in TaskType},
        jitter=0.0,
        note=f"{days:g} days, {owners} owners, fast demand {load:.0%} of what each bought",
    )


def make_busy(hours: float = 24, owners: int = 2, load: float = 0.85, seed: int = 1) -> Trace:
    """A busy day: per owner four accounts (Basic, 2 Standard, Pro: 21 fast and 9 relax
    slots) topped up so fast hours never run out, and traffic offering `load` of each
    kind of slot on average, on a daily wave (+-25 %) with a burst every four hours (1.5
    times the rate for twenty minutes). Fast-slot tasks are 80 % fast, 20 % turbo; 30 %
    of images get an upscale (a third of the GPU time) 5-120 s after they complete."""
    rng = random.Random(seed)
    horizon = hours * 3600
    g = BUSY_GPU_SECONDS
    accounts: list[AccountSpec] = []
    arrivals: list[Arrival] = []
    fast_slots = sum(3 if p in (Plan.BASIC, Plan.STANDARD) else 12 for p in BUSY_MIX)
    relax_slots = sum(0 if p is Plan.BASIC else 3 for p in BUSY_MIX)
    fast_wall = (0.8 * WALL[Mode.FAST] + 0.2 * WALL[Mode.TURBO]) * g * (1 + 0.3 / 3)
    relax_wall = WALL[Mode.RELAX] * g * (1 + 0.3 / 3)
    for o in range(owners):
        owner = f"owner{o}"
        for i, plan in enumerate(BUSY_MIX):
            accounts.append(AccountSpec(id=f"{owner}-a{i}", owner=owner, plan=plan,
                                        fast_hours=500.0))  # fmt: skip
        bursts = [rng.uniform(0, horizon - 1200) for _ in range(max(1, round(hours / 4)))]
        extra = 0.5 * 1200 * len(bursts) / horizon

        def shape(t: float, bursts: list[float] = bursts, extra: float = extra) -> float:
            b = 0.5 if any(s <= t < s + 1200 for s in bursts) else 0.0
            return (daily(t, 0.25) + b) / (1 + extra)

        n = 0
        for slot_rate, kind in (
            (load * fast_slots / fast_wall, "fast"),
            (load * relax_slots / relax_wall, "relax"),
        ):
            peak = slot_rate * 1.8 / (1 + extra)
            for t in _arrivals(rng, 0.0, horizon, peak, _scaled(slot_rate, shape)):
                if kind == "relax":
                    mode = Mode.RELAX
                else:
                    mode = Mode.TURBO if rng.random() < 0.2 else Mode.FAST
                up = rng.uniform(5, 120) if rng.random() < 0.3 else None
                arrivals.append(
                    Arrival(round(t * US), owner, f"{owner}-t{n}", mode, rng.random() < 0.5, up)
                )
                n += 1
    arrivals.sort(key=lambda a: (a.at_us, a.task_id))
    gpu = {t: g for t in TaskType}
    gpu[TaskType.UPSCALE] = g / 3
    return Trace(
        accounts,
        arrivals,
        round(horizon * US),
        name="busy",
        seed=seed,
        gpu_seconds=gpu,
        note=f"{hours:g} h, {owners} owners, offered load {load:.0%} of the slots",
    )
