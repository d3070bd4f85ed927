"""The routing rules as pure functions: which account may take what, and which is chosen.

The placement Lua (`router/commands/*.lua`) applies exactly these rules atomically
in Redis; `tests/test_lua_matches_policy.py` checks the two agree on generated pools.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from router.models import ErrorCode, FallbackReason, JobClass, Mode, Plan, Setting, Slot, Strategy

SCORE_LOAD_SCALE = 1_000_000
"""Load fractions are compared to one part in a million."""
SCORE_HOURS_SPAN = 1_000_000_000
"""Available fast milliseconds break load ties; capped below this span (about 277 hours)."""
URGENCY_BUCKET_US = 3_600_000_000
"""`RENEWAL` treats latest starts within the same hour as equally urgent: load decides."""
CHILD_HEADSTART_US = 2_400_000_000
"""A freed slot goes to the oldest task that may run there, a child pinned to the account
counting as submitted this much (40 min) earlier: an upscale, which its user waits for
and which no other account may run, goes ahead of line tasks only up to this much older
than it. Children first without a bound lengthens the tail of the line's wait on a busy
pool; oldest first without a head start lengthens the children's (docs/benchmarks.md)."""
ROOMY_SCAN = 32
"""When the account chosen for fast work has less fast time than the task would reserve,
the first of this many free accounts in the index's order that has enough takes it
(`choose`): a video (eight images' time) goes where it fits while an account can take it."""
NO_VIDEO_LIMIT = 100
"""An account's video limit when it has none of its own (the most slots an account may
have, `settings.MAX_SLOT_LIMIT`: each video job takes one)."""
UNDATED_SCORE = 2**50
"""`RENEWAL` scores of accounts without a renewal date start here, after every dated one
(dated scores stay below 2^23 hours x 2 x SCORE_LOAD_SCALE); all stay below 2^53, which a
Lua number (a double) holds exactly."""
UPGRADE_REASON = "fast_hours_expiring"
"""`upgrade_reason` of a relax task run fast on hours that would surely expire."""


@dataclass(frozen=True)
class AccountState:
    """The part of an account the rules look at."""

    id: str
    plan: Plan
    setting: Setting
    fast_ms: int
    fast_reserved_ms: int = 0
    fast_limit: int = 3
    relax_limit: int = 3
    fast_inflight: int = 0
    relax_inflight: int = 0
    enabled: bool = True
    paced_until: int = 0
    """No job start before this instant (µs): the minimum gap since the last start."""
    cooldown_until: int = 0
    """Resting after repeated transient failures until this instant (µs)."""
    daily_cap: int = 0
    """Most jobs started per UTC day; 0: no cap."""
    day: int = 0
    day_jobs: int = 0
    """Jobs started on UTC day `day` (days since the epoch)."""
    work_hours: tuple[int, int] | None = None
    """UTC hours [start, end) in which it may start jobs (may wrap midnight); None: always."""
    renews_at_us: int | None = None
    """The next renewal (µs): what fast time is left then is lost. None: no date known."""
    plan_relax: bool | None = None
    """Whether the plan gives relax time (`Settings.plans[plan].relax`); None: the default
    plans' answer (every plan but Basic)."""
    plan_relax_video: bool | None = None
    """Whether the plan runs relax video (`relax_video`); None: the default (Pro, Mega)."""
    plan_hd_video: bool | None = None
    """Whether the plan runs HD video (`hd_video`); None: the default (all but Basic)."""
    video_limit: int = NO_VIDEO_LIMIT
    video_inflight: int = 0

    @property
    def relax_plan(self) -> bool:
        """The plan gives relax time: relax work may run here (rule 2)."""
        return self.plan is not Plan.BASIC if self.plan_relax is None else self.plan_relax

    @property
    def relax_video_plan(self) -> bool:
        if self.plan_relax_video is None:
            return self.plan in (Plan.PRO, Plan.MEGA)
        return self.plan_relax_video

    @property
    def hd_plan(self) -> bool:
        return self.plan is not Plan.BASIC if self.plan_hd_video is None else self.plan_hd_video

    def inflight(self, slot: Slot) -> int:
        return self.fast_inflight if slot is Slot.FAST else self.relax_inflight

    def limit(self, slot: Slot) -> int:
        return self.fast_limit if slot is Slot.FAST else self.relax_limit


def should_flip(a: AccountState) -> bool:
    """Rule 4: an account set to fast whose fast hours are gone flips itself to relax."""
    return a.setting is Setting.FAST and a.fast_ms <= 0


def has_fast_hours(a: AccountState) -> bool:
    """Rules 1 and 3: the account can ever run fast work (its owner is not out of fast hours)."""
    return a.enabled and a.setting is Setting.FAST and a.fast_ms > 0 and a.fast_limit > 0


def has_relax_time(a: AccountState) -> bool:
    """Rule 2: relax work may run here; never on a plan without relax time (Basic)."""
    return a.enabled and a.relax_plan and a.relax_limit > 0


def can_run(a: AccountState, slot: Slot, job_class: JobClass = JobClass.IMAGE) -> bool:
    """The account can ever run a job of `job_class` in `slot`: rules 1-3, and the plan
    rules per job type (video needs a video limit above 0; relax video a plan with relax
    video; HD video runs fast only, on a plan with HD video)."""
    ok = has_fast_hours(a) if slot is Slot.FAST else has_relax_time(a)
    if job_class is JobClass.IMAGE or not ok:
        return ok
    if a.video_limit <= 0:
        return False
    if job_class is JobClass.HD_VIDEO:
        return slot is Slot.FAST and a.hd_plan
    return slot is Slot.FAST or a.relax_video_plan


US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR


def rest_until(a: AccountState, now_us: int) -> int:
    """Until when the account rests (pacing, cooldown, daily cap, working hours); 0: it doesn't.

    A resting account is busy, not unavailable: tasks wait for it, they do not fall back.
    """
    until = max(a.paced_until, a.cooldown_until)
    today = now_us // US_PER_DAY
    if a.daily_cap and a.day == today and a.day_jobs >= a.daily_cap:
        until = max(until, (today + 1) * US_PER_DAY)
    if a.work_hours is not None and a.work_hours[0] != a.work_hours[1]:
        start, end = a.work_hours
        hour = now_us % US_PER_DAY // US_PER_HOUR
        inside = start <= hour < end if start < end else (hour >= start or hour < end)
        if not inside:
            next_start = today * US_PER_DAY + start * US_PER_HOUR
            until = max(until, next_start if next_start > now_us else next_start + US_PER_DAY)
    return until if until > now_us else 0


def can_take(
    a: AccountState, slot: Slot, now_us: int = 0, job_class: JobClass = JobClass.IMAGE
) -> bool:
    """The account can start one more job of `job_class` in `slot` now.

    A fast slot also needs unreserved fast time, so concurrent reservations overspend the
    account's hours by at most one task's estimate; a video also room under the account's
    video limit.
    """
    if rest_until(a, now_us) or not can_run(a, slot, job_class):
        return False
    if job_class is not JobClass.IMAGE and a.video_inflight >= a.video_limit:
        return False
    if slot is Slot.FAST:
        return (
            has_fast_hours(a)
            and a.fast_inflight < a.fast_limit
            and a.fast_ms - a.fast_reserved_ms > 0
        )
    return has_relax_time(a) and a.relax_inflight < a.relax_limit


def available_ms(a: AccountState) -> int:
    """Fast time not yet reserved, capped to the score's span."""
    return min(max(a.fast_ms - a.fast_reserved_ms, 0), SCORE_HOURS_SPAN - 1)


def latest_start_us(a: AccountState) -> int | None:
    """The last instant from which running every fast slot until the renewal still uses the
    account's available fast time (µs); None without a renewal date.

    Least laxity first: unlike the burn rate (available / time left), it sees that an
    account with few slots must start early, and it does not change as time passes (only
    when the account's time does), so it can be an index score. A slot is counted as
    burning 1 ms of fast time per ms, as a fast job about does; turbo work (twice the fast
    time, in less wall time) burns faster.
    """
    if not a.renews_at_us:  # None, or 0 as the scripts store "no date"
        return None
    return a.renews_at_us - available_ms(a) * 1000 // max(a.fast_limit, 1)


def surely_expires(a: AccountState, now_us: int) -> bool:
    """Some of the account's fast time cannot be used before its renewal, even if every fast
    slot ran fast work until then (available ms x 1000 > fast_limit x µs left, give or take
    a µs): its latest start has passed."""
    start = latest_start_us(a)
    return start is not None and now_us > start


def account_score(a: AccountState, slot: Slot, strategy: Strategy = Strategy.LEAST_LOADED) -> int:
    """Lower is chosen first (ties: `tie_break`, then the id).

    `LEAST_LOADED` (and relax under every strategy): the least loaded account; for fast,
    then the most fast time left. `RENEWAL`, fast: the earliest latest start by the hour,
    then Basic (its slots serve nothing else), then the least loaded; undated accounts after
    every dated one, as `LEAST_LOADED` orders them.
    """
    load = a.inflight(slot) * SCORE_LOAD_SCALE // max(a.limit(slot), 1)
    if slot is Slot.RELAX:
        return load
    today = load * SCORE_HOURS_SPAN + (SCORE_HOURS_SPAN - 1 - available_ms(a))
    start = latest_start_us(a) if strategy is Strategy.RENEWAL else None
    if start is None:
        return today if strategy is not Strategy.RENEWAL else UNDATED_SCORE + today
    urgency = max(start, 0) // URGENCY_BUCKET_US
    plan = 1 if a.relax_plan else 0  # a plan without relax (Basic): its slots serve only fast
    return (urgency * 2 + plan) * SCORE_LOAD_SCALE + load


def tie_break(a: AccountState, slot: Slot) -> int:
    """Between equal scores, the most fast time left first (`RENEWAL`'s dated scores
    leave it out; it is already in every other fast score)."""
    return 0 if slot is Slot.RELAX else SCORE_HOURS_SPAN - 1 - available_ms(a)


def choose(
    accounts: Iterable[AccountState],
    slot: Slot,
    now_us: int = 0,
    strategy: Strategy = Strategy.LEAST_LOADED,
    job_class: JobClass = JobClass.IMAGE,
    need_ms: int = 0,
) -> AccountState | None:
    """The account a task needing `slot` (and `job_class`) goes to now, or None if every
    eligible one is busy. Fast work that would reserve `need_ms` goes to the best account
    only if it has that much fast time left, else to the first of ROOMY_SCAN free accounts
    in the index's order (score, id) that has (the best if none does).

    `FILL_FIRST`: the first free account in id order (when none is free, the scripts bind
    the task to an account on arrival, as the other peers do; that is not modelled here).
    """
    free = [a for a in accounts if can_take(a, slot, now_us, job_class)]
    if strategy is Strategy.FILL_FIRST:
        return min(free, key=lambda a: a.id, default=None)
    best = min(
        free,
        key=lambda a: (account_score(a, slot, strategy), tie_break(a, slot), a.id),
        default=None,
    )
    if best is None or slot is not Slot.FAST or _left(best) >= need_ms:
        return best
    listed = sorted(free, key=lambda a: (account_score(a, slot, strategy), a.id))
    return next((a for a in listed[:ROOMY_SCAN] if _left(a) >= need_ms), best)


def _left(a: AccountState) -> int:
    """Fast time not yet reserved (uncapped)."""
    return a.fast_ms - a.fast_reserved_ms


def upgrade_target(accounts: Iterable[AccountState], now_us: int) -> AccountState | None:
    """Where an opted-in owner's relax task runs fast now, or None: a non-Basic account that
    can take fast work now and whose fast time surely expires unused (the most surplus first).

    Basic is left out: relax work never lands on Basic, even upgraded.
    """
    ready = [
        a
        for a in accounts
        if a.relax_plan and can_take(a, Slot.FAST, now_us) and surely_expires(a, now_us)
    ]
    return min(ready, key=lambda a: (latest_start_us(a) or 0, a.id), default=None)


@dataclass(frozen=True)
class Route:
    """Where a new top-level task goes: its effective mode, or the error it fails with."""

    mode: Mode | None
    fallback: FallbackReason | None = None
    error: ErrorCode | None = None


def fallback_reason(pool: Iterable[AccountState]) -> FallbackReason:
    """Why fast work of an owner with no account able to run fast runs relax: accounts
    that still have fast hours are set to relax, or no account has fast hours left."""
    if any(a.enabled and a.setting is Setting.RELAX and a.fast_ms > 0 for a in pool):
        return FallbackReason.ACCOUNT_SET_TO_RELAX
    return FallbackReason.FAST_HOURS_EXHAUSTED


def no_relax_error(job_class: JobClass) -> ErrorCode:
    """Why a relax task of `job_class` of an owner with enabled accounts cannot run."""
    return {
        JobClass.IMAGE: ErrorCode.NO_RELAX_ACCOUNT,
        JobClass.VIDEO: ErrorCode.NO_RELAX_VIDEO_ACCOUNT,
        JobClass.HD_VIDEO: ErrorCode.HD_VIDEO_FAST_ONLY,
    }[job_class]


def route(
    requested: Mode, accounts: Iterable[AccountState], job_class: JobClass = JobClass.IMAGE
) -> Route:
    """Rules 1 and 2, and the plan rules per job type, for a new task of one owner, given
    that owner's accounts: HD video runs fast only (no fallback), relax video only where
    the plan runs it."""
    pool = [a for a in accounts if a.enabled]
    if not pool:
        return Route(None, error=ErrorCode.NO_ACCOUNT)
    if job_class is JobClass.HD_VIDEO and requested is Mode.RELAX:
        return Route(None, error=ErrorCode.HD_VIDEO_FAST_ONLY)
    mode, fallback = requested, None
    if mode is not Mode.RELAX and not any(can_run(a, Slot.FAST, job_class) for a in pool):
        if job_class is JobClass.HD_VIDEO:
            planned = any(a.hd_plan for a in pool)
            return Route(
                None, error=ErrorCode.NO_FAST_HOURS if planned else ErrorCode.PLAN_DISALLOWS_JOB
            )
        mode, fallback = Mode.RELAX, fallback_reason(pool)
    if mode is Mode.RELAX and not any(can_run(a, Slot.RELAX, job_class) for a in pool):
        return Route(None, error=no_relax_error(job_class))
    return Route(mode, fallback)


def route_child(
    parent_mode: Mode, account: AccountState | None, job_class: JobClass = JobClass.IMAGE
) -> Route:
    """Rule 5: a child runs on its parent's account, in the parent's mode while it can, if
    the account's plan runs a job of its class (else `plan_disallows_job`)."""
    if account is None or not account.enabled:
        return Route(None, error=ErrorCode.PARENT_ACCOUNT_UNAVAILABLE)
    mode, fallback = parent_mode, None
    if mode is not Mode.RELAX and not can_run(account, Slot.FAST, job_class):
        if job_class is JobClass.HD_VIDEO:
            plan_ok = account.hd_plan
            return Route(
                None, error=ErrorCode.NO_FAST_HOURS if plan_ok else ErrorCode.PLAN_DISALLOWS_JOB
            )
        mode, fallback = Mode.RELAX, FallbackReason.ACCOUNT_SET_TO_RELAX  # rule 3
    if mode is Mode.RELAX and job_class is JobClass.HD_VIDEO:
        return Route(None, error=ErrorCode.HD_VIDEO_FAST_ONLY)
    if mode is Mode.RELAX and not can_run(account, Slot.RELAX, job_class):
        if job_class is JobClass.VIDEO and has_relax_time(account):
            return Route(None, error=ErrorCode.PLAN_DISALLOWS_JOB)
        return Route(None, error=ErrorCode.PARENT_ACCOUNT_UNAVAILABLE)
    return Route(mode, fallback)


def fast_cost_ms(mode: Mode, gpu_ms: int) -> int:
    """Fast time a job uses: GPU time at fast, twice that at turbo, nothing at relax."""
    return {Mode.FAST: gpu_ms, Mode.TURBO: 2 * gpu_ms, Mode.RELAX: 0}[mode]
