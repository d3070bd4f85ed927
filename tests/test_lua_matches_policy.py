"""The placement Lua keeps its indexes exactly as `router.policy` says, on generated pools,
under each strategy the policy models, with renewal dates, on a virtual clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis

from router import keys, policy
from router.core import Router
from router.keys import NEEDS
from router.models import JobClass, Mode, Plan, Setting, Slot, Strategy
from router.policy import US_PER_DAY, US_PER_HOUR, AccountState
from router.requests import NewTask
from router.scripts import text
from router.settings import Settings

NOW = 1_790_000_000_123_456
"""The virtual clock the scripts read in these tests (µs)."""

renewals = st.one_of(
    st.none(),
    st.integers(NOW + 1, NOW + 6 * US_PER_HOUR),  # soon: hours may surely expire
    st.integers(NOW + 1, NOW + 31 * US_PER_DAY),
    st.sampled_from([NOW + US_PER_DAY, NOW + 2 * US_PER_DAY]),  # ties across accounts
)
accounts = st.builds(
    AccountState,
    id=st.sampled_from(["a0", "a1", "a2", "a3"]),
    plan=st.sampled_from(list(Plan)),
    setting=st.sampled_from(list(Setting)),
    fast_ms=st.integers(-100_000, 10**9),
    fast_reserved_ms=st.integers(0, 10**6),
    fast_limit=st.integers(0, 12),
    relax_limit=st.integers(0, 3),
    fast_inflight=st.integers(0, 12),
    relax_inflight=st.integers(0, 3),
    enabled=st.booleans(),
    renews_at_us=renewals,
    video_limit=st.sampled_from([policy.NO_VIDEO_LIMIT, 0, 1, 2]),
    video_inflight=st.integers(0, 2),
)
pools = st.lists(accounts, max_size=4, unique_by=lambda a: a.id)
SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MODELLED = [Strategy.RENEWAL, Strategy.LEAST_LOADED, Strategy.FILL_FIRST]
"""The strategies `policy.choose` models (the other peers bind on arrival at random etc.)."""


@pytest.fixture(params=MODELLED, ids=[s.value for s in MODELLED])
def router(
    request: pytest.FixtureRequest, settings: Settings, redis_conn: Redis
) -> Iterator[Router]:
    """A router with this strategy whose scripts read the virtual clock, set to NOW."""
    changed = settings.model_copy(update={"strategy": request.param, "sim_clock": True})
    built = Router(changed, redis_conn)
    redis_conn.set(built.keys.clock, NOW)
    yield built


def load(router: Router, owner: str, pool: list[AccountState]) -> None:
    """Empty the owner, write the pool's raw state, then let ACCOUNT_WRITE refresh each
    account's indexes.

    Every key under the owner's base goes, not only the indexes and lines: a task an earlier
    example left waiting is still listed elsewhere (a fast task that fell back to relax is
    in the owner's fallback list), and ACCOUNT_WRITE would put it back in line and place it
    on this example's accounts, taking the slot the example's own task should get.
    """
    base = router.keys.owner_base(owner)
    stale = list(router.redis.scan_iter(match=f"{base}:*", count=1000))
    if stale:
        router.redis.delete(*stale)
    for a in pool:
        router.redis.hset(
            router.keys.account(owner, a.id),
            mapping={
                "id": a.id,
                "owner": owner,
                "plan": a.plan.value,
                "setting": a.setting.value,
                "fast_ms": a.fast_ms,
                "fast_reserved_ms": a.fast_reserved_ms,
                "fast_limit": a.fast_limit,
                "relax_limit": a.relax_limit,
                "fast_inflight": a.fast_inflight,
                "relax_inflight": a.relax_inflight,
                "enabled": int(a.enabled),
                "renews_at": a.renews_at_us or 0,
                "video_limit": a.video_limit,
                "video_inflight": a.video_inflight,
            },
        )
        router.pool._write(owner, "set", a.id, {})


def flipped(a: AccountState) -> AccountState:
    """The account after the rule-4 flip the Lua applies when it refreshes it."""
    if policy.should_flip(a):
        return AccountState(**{**a.__dict__, "setting": Setting.RELAX})
    return a


@SLOW
@given(pool=pools)
def test_indexes_and_scores_match_policy(router: Router, pool: list[AccountState]) -> None:
    check_indexes(router, pool)


TURNED_PLANS = {"basic": {"relax": True, "relax_limit": 2}, "standard": {"relax": False}}
"""A plan table unlike the default: Basic with relax time, Standard without."""


@pytest.fixture
def turned(settings: Settings, redis_conn: Redis) -> Iterator[Router]:
    """A router (renewal strategy, virtual clock) whose configured plans are TURNED_PLANS."""
    plans = Settings(plans=TURNED_PLANS).plans  # merged with the defaults, as from a file
    changed = settings.model_copy(update={"plans": plans, "sim_clock": True})
    built = Router(changed, redis_conn)
    redis_conn.set(built.keys.clock, NOW)
    yield built


@SLOW
@given(pool=pools)
def test_indexes_follow_the_configured_plan_table_not_the_plan_names(
    turned: Router, pool: list[AccountState]
) -> None:
    relax = {p: turned.settings.plans[p].relax for p in Plan}
    assert relax[Plan.BASIC] and not relax[Plan.STANDARD]
    check_indexes(
        turned, [AccountState(**{**a.__dict__, "plan_relax": relax[a.plan]}) for a in pool]
    )


def check_indexes(router: Router, pool: list[AccountState]) -> None:
    load(router, "o", pool)
    base = router.keys.owner_base("o")
    members = {
        name: {text(x) for x in router.redis.smembers(f"{base}:{name}")}
        for name in ("enabled", "fastcap", "relaxcap")
    }
    for a in map(flipped, pool):
        assert (a.id in members["enabled"]) == a.enabled
        assert (a.id in members["fastcap"]) == policy.has_fast_hours(a)
        assert (a.id in members["relaxcap"]) == policy.has_relax_time(a)
        for slot in Slot:
            for job_class in NEEDS[slot]:
                need = keys.need(slot, job_class)
                cap = router.redis.smembers(router.keys.owner_base("o") + ":cap:" + need)
                if job_class is not JobClass.IMAGE:  # fast and relax: the sets above
                    held = a.id.encode() in cap
                    assert held == policy.can_run(a, slot, job_class), (a, need)
                score = router.redis.zscore(f"{base}:free:{need}", a.id)
                free = policy.can_take(a, slot, NOW, job_class)
                assert (score is not None) == free, (a, need)
                if score is not None:
                    assert int(score) == policy.account_score(a, slot, router.settings.strategy)
        stored = router.pool.get(a.id)
        assert stored is None or stored.setting == a.setting  # the flip happened


@SLOW
@given(pool=pools, mode=st.sampled_from(list(Mode)), opted=st.booleans())
# These two run first, in this order: the first leaves a fast task waiting as a relax
# fallback; the second must still place its own task on the one free fast slot.
@example(
    pool=[
        AccountState("a0", Plan.STANDARD, Setting.RELAX, fast_ms=1, relax_limit=1, relax_inflight=1)
    ],
    mode=Mode.FAST,
    opted=False,
)
@example(
    pool=[AccountState("a1", Plan.STANDARD, Setting.FAST, fast_ms=1, fast_limit=1)],
    mode=Mode.FAST,
    opted=False,
)
@example(  # the hours of a0 surely expire: an opted-in owner's relax task runs fast there
    pool=[
        AccountState(
            "a0", Plan.STANDARD, Setting.FAST, fast_ms=10**8, renews_at_us=NOW + US_PER_HOUR
        ),
        AccountState("a1", Plan.STANDARD, Setting.FAST, fast_ms=10**8),
    ],
    mode=Mode.RELAX,
    opted=True,
)
def test_submit_routes_as_policy_route_and_places_on_policy_choice(
    router: Router, pool: list[AccountState], mode: Mode, opted: bool
) -> None:
    submit_matches_policy(router, pool, mode, opted, JobClass.IMAGE, 60_000)


@SLOW
@example(  # the least loaded account has too little fast time for a video: another takes it
    pool=[
        AccountState("a0", Plan.PRO, Setting.FAST, fast_ms=100_000),
        AccountState("a1", Plan.PRO, Setting.FAST, fast_ms=10**8, fast_inflight=1),
    ],
    mode=Mode.FAST,
    job_class=JobClass.VIDEO,
    estimate=480_000,
)
@given(
    pool=pools,
    mode=st.sampled_from(list(Mode)),
    job_class=st.sampled_from([JobClass.VIDEO, JobClass.HD_VIDEO]),
    estimate=st.sampled_from([60_000, 480_000, 1_536_000]),
)
def test_a_video_routes_and_places_as_the_plan_rules_per_job_type_say(
    router: Router, pool: list[AccountState], mode: Mode, job_class: JobClass, estimate: int
) -> None:
    submit_matches_policy(router, pool, mode, False, job_class, estimate)


def submit_matches_policy(
    router: Router,
    pool: list[AccountState],
    mode: Mode,
    opted: bool,
    job_class: JobClass,
    estimate: int,
) -> None:
    load(router, "o", pool)
    if opted:  # as the CLI does it: the choice stored, then the owner's accounts refreshed
        router.apply(router.pool.set_owner_options("o", upgrade_expiring=True))
    states = [flipped(a) for a in pool]
    expected = policy.route(mode, states, job_class)
    task_type = "imagine" if job_class is JobClass.IMAGE else "video"
    task = NewTask(
        uuid.uuid4().hex, "o", task_type, mode.value, "", "x", "{}", estimate,
        job_class=job_class.value,
    )  # fmt: skip
    router.redis.set(router.keys.task_owner(task.id), "o")
    (submitted,), outcome = router.tasks.submit_many([task])
    assert submitted.created
    record = router.tasks.get(task.id)
    assert record is not None
    if expected.error is not None:
        assert record.error is not None and record.error.code == expected.error
        assert not outcome.placed
        return
    assert record.fallback_reason == expected.fallback
    assert expected.mode is not None
    lines = router.settings.strategy in (Strategy.RENEWAL, Strategy.LEAST_LOADED)
    upgrades = opted and mode is Mode.RELAX and lines  # a peer binds the task on arrival
    target = policy.upgrade_target(states, NOW) if upgrades else None
    if target is not None:
        assert record.effective_mode == Mode.FAST
        assert record.upgrade_reason == policy.UPGRADE_REASON
        assert [(p.account_id, p.slot) for p in outcome.placed] == [(target.id, Slot.FAST)]
        return
    assert record.effective_mode == expected.mode
    assert record.upgrade_reason is None
    slot = Slot.RELAX if expected.mode is Mode.RELAX else Slot.FAST
    need_ms = estimate * (2 if expected.mode is Mode.TURBO else 1)
    choice = policy.choose(states, slot, NOW, router.settings.strategy, job_class, need_ms)
    if choice is None:
        assert not outcome.placed  # busy: it waits
        if router.settings.strategy is not Strategy.FILL_FIRST:  # (which binds it on arrival)
            assert record.account_id is None
    else:
        assert [p.account_id for p in outcome.placed] == [choice.id]
