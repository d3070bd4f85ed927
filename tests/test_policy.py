"""The routing rules as pure functions (docs/rules.md, "Which account", "Capacity and owners")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.models import ErrorCode, FallbackReason, Mode, Plan, Setting, Slot
from router.policy import (
    AccountState,
    Route,
    account_score,
    can_take,
    choose,
    fast_cost_ms,
    has_fast_hours,
    has_relax_time,
    route,
    route_child,
    should_flip,
)

HOUR_MS = 3_600_000


def acct(**kw: Any) -> AccountState:
    """A healthy Standard account set to fast, with an hour of fast time and idle slots."""
    base: dict[str, Any] = {
        "id": "a",
        "plan": Plan.STANDARD,
        "setting": Setting.FAST,
        "fast_ms": HOUR_MS,
        "fast_limit": 3,
        "relax_limit": 3,
    }
    return AccountState(**{**base, **kw})


HEALTHY = acct()


# --- has_fast_hours / has_relax_time / should_flip ----------------------------------


def test_a_fast_account_with_time_and_slots_has_fast_hours() -> None:
    assert has_fast_hours(HEALTHY)


@pytest.mark.parametrize(
    "change",
    [
        {"setting": Setting.RELAX},
        {"enabled": False},
        {"fast_ms": 0},
        {"fast_ms": -5},
        {"fast_limit": 0},
    ],
)
def test_no_fast_hours_when_relax_disabled_out_of_time_or_without_fast_slots(
    change: dict[str, Any],
) -> None:
    assert not has_fast_hours(replace(HEALTHY, **change))


def test_a_busy_fast_account_still_has_fast_hours() -> None:
    assert has_fast_hours(replace(HEALTHY, fast_inflight=3, fast_reserved_ms=HOUR_MS))


@pytest.mark.parametrize("plan", [Plan.STANDARD, Plan.PRO, Plan.MEGA])
@pytest.mark.parametrize("setting", list(Setting))
def test_paid_plans_with_relax_slots_have_relax_time(plan: Plan, setting: Setting) -> None:
    assert has_relax_time(acct(plan=plan, setting=setting, fast_ms=0))


@pytest.mark.parametrize(
    "change",
    [
        {"plan": Plan.BASIC},
        {"plan": Plan.BASIC, "relax_limit": 5},
        {"relax_limit": 0},
        {"enabled": False},
    ],
)
def test_no_relax_time_on_basic_without_relax_slots_or_disabled(change: dict[str, Any]) -> None:
    assert not has_relax_time(replace(HEALTHY, **change))


@pytest.mark.parametrize(
    ("setting", "fast_ms", "expected"),
    [
        (Setting.FAST, 0, True),
        (Setting.FAST, -1, True),
        (Setting.FAST, 1, False),
        (Setting.RELAX, 0, False),
        (Setting.RELAX, HOUR_MS, False),
    ],
)
def test_should_flip_only_a_fast_setting_account_out_of_fast_time(
    setting: Setting, fast_ms: int, expected: bool
) -> None:
    assert should_flip(acct(setting=setting, fast_ms=fast_ms)) is expected


# --- can_take --------------------------------------------------------------------------


def test_a_healthy_account_can_take_both_slots() -> None:
    assert can_take(HEALTHY, Slot.FAST)
    assert can_take(HEALTHY, Slot.RELAX)


@pytest.mark.parametrize(
    "change",
    [
        {"setting": Setting.RELAX},
        {"enabled": False},
        {"fast_ms": 0},
        {"fast_limit": 0},
        {"fast_inflight": 3},
        {"fast_inflight": 4},
        {"fast_reserved_ms": HOUR_MS},
        {"fast_reserved_ms": HOUR_MS + 1},
    ],
)
def test_fast_slot_refused_without_setting_enabled_time_limit_free_slot_or_unreserved_time(
    change: dict[str, Any],
) -> None:
    assert not can_take(replace(HEALTHY, **change), Slot.FAST)


def test_fast_slot_taken_while_one_millisecond_is_unreserved() -> None:
    assert can_take(replace(HEALTHY, fast_reserved_ms=HOUR_MS - 1, fast_inflight=2), Slot.FAST)


@pytest.mark.parametrize(
    "change",
    [
        {"plan": Plan.BASIC},
        {"plan": Plan.BASIC, "relax_limit": 3, "relax_inflight": 0},
        {"relax_limit": 0},
        {"relax_inflight": 3},
        {"enabled": False},
    ],
)
def test_relax_slot_refused_on_basic_without_limit_or_free_slot_or_disabled(
    change: dict[str, Any],
) -> None:
    assert not can_take(replace(HEALTHY, **change), Slot.RELAX)


def test_relax_slot_does_not_need_fast_time_or_a_fast_setting() -> None:
    a = acct(setting=Setting.RELAX, fast_ms=0, fast_inflight=3, relax_inflight=2)
    assert can_take(a, Slot.RELAX)
    assert not can_take(a, Slot.FAST)


@pytest.mark.parametrize("plan", list(Plan))
@pytest.mark.parametrize("slot", list(Slot))
def test_a_disabled_account_takes_nothing(plan: Plan, slot: Slot) -> None:
    assert not can_take(acct(plan=plan, enabled=False), slot)


# --- account_score and choose --------------------------------------------------------


@pytest.mark.parametrize("slot", list(Slot))
def test_the_less_loaded_account_scores_lower(slot: Slot) -> None:
    inflight = "fast_inflight" if slot is Slot.FAST else "relax_inflight"
    limit = "fast_limit" if slot is Slot.FAST else "relax_limit"
    # 2 of 12 is less loaded than 1 of 3, although it runs more jobs
    light = acct(id="light", **{inflight: 2, limit: 12}, fast_ms=1)
    heavy = acct(id="heavy", **{inflight: 1, limit: 3}, fast_ms=100 * HOUR_MS)
    assert account_score(light, slot) < account_score(heavy, slot)
    assert choose([heavy, light], slot) == light


def test_for_fast_equal_load_prefers_more_available_fast_time() -> None:
    rich = acct(id="z-rich", fast_ms=2 * HOUR_MS, fast_reserved_ms=HOUR_MS // 2)
    poor = acct(id="a-poor", fast_ms=2 * HOUR_MS, fast_reserved_ms=HOUR_MS)
    assert account_score(rich, Slot.FAST) < account_score(poor, Slot.FAST)
    assert choose([poor, rich], Slot.FAST) == rich


def test_for_relax_fast_time_does_not_matter() -> None:
    rich = acct(id="rich", fast_ms=10 * HOUR_MS)
    poor = acct(id="poor", fast_ms=0)
    assert account_score(rich, Slot.RELAX) == account_score(poor, Slot.RELAX)


def test_equal_scores_are_broken_by_id() -> None:
    pool = [acct(id="b"), acct(id="c"), acct(id="a")]
    assert choose(pool, Slot.RELAX) == pool[2]
    assert choose(pool, Slot.FAST) == pool[2]


@pytest.mark.parametrize("slot", list(Slot))
def test_choose_returns_none_when_all_are_busy(slot: Slot) -> None:
    pool = [
        acct(id="a", fast_inflight=3, relax_inflight=3),
        acct(id="b", plan=Plan.PRO, fast_limit=12, fast_inflight=12, relax_inflight=3),
    ]
    assert choose(pool, slot) is None


def test_choose_of_an_empty_pool_is_none() -> None:
    assert choose([], Slot.FAST) is None


def test_choose_never_gives_a_fast_slot_on_a_relax_setting_account() -> None:
    idle_relax = acct(id="idle", setting=Setting.RELAX, fast_ms=100 * HOUR_MS)
    busy_fast = acct(id="busy", fast_inflight=3, relax_inflight=3)
    assert choose([idle_relax, busy_fast], Slot.FAST) is None
    assert choose([idle_relax, busy_fast], Slot.RELAX) == idle_relax


def test_choose_never_gives_a_relax_slot_on_a_basic_account() -> None:
    idle_basic = acct(id="idle", plan=Plan.BASIC, relax_limit=3)
    busy_std = acct(id="busy", relax_inflight=3, fast_inflight=3)
    assert choose([idle_basic, busy_std], Slot.RELAX) is None
    assert choose([idle_basic, busy_std], Slot.FAST) == idle_basic


accounts = st.builds(
    AccountState,
    id=st.sampled_from("abcdefgh"),
    plan=st.sampled_from(list(Plan)),
    setting=st.sampled_from(list(Setting)),
    fast_ms=st.integers(-HOUR_MS, 3 * HOUR_MS),
    fast_reserved_ms=st.integers(0, 3 * HOUR_MS),
    fast_limit=st.integers(0, 12),
    relax_limit=st.integers(0, 3),
    fast_inflight=st.integers(0, 13),
    relax_inflight=st.integers(0, 4),
    enabled=st.booleans(),
)
pools = st.lists(accounts, max_size=8)


@given(pools, st.sampled_from(list(Slot)))
def test_choose_picks_a_least_scored_account_that_can_take_the_slot(
    pool: list[AccountState], slot: Slot
) -> None:
    chosen = choose(pool, slot)
    takers = [a for a in pool if can_take(a, slot)]
    if not takers:
        assert chosen is None
        return
    assert chosen is not None
    assert can_take(chosen, slot)
    assert chosen.enabled
    assert account_score(chosen, slot) == min(account_score(a, slot) for a in takers)
    if slot is Slot.FAST:
        assert chosen.setting is Setting.FAST
        assert chosen.fast_inflight < chosen.fast_limit
        assert chosen.fast_ms > chosen.fast_reserved_ms
    else:
        assert chosen.plan is not Plan.BASIC
        assert chosen.relax_inflight < chosen.relax_limit


# --- route -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_route_without_an_enabled_account_fails_with_no_account(mode: Mode) -> None:
    assert route(mode, []) == Route(None, error=ErrorCode.NO_ACCOUNT)
    assert route(mode, [acct(enabled=False)]) == Route(None, error=ErrorCode.NO_ACCOUNT)


@pytest.mark.parametrize("mode", list(Mode))
def test_route_keeps_the_requested_mode_when_an_account_can_serve_it(mode: Mode) -> None:
    assert route(mode, [HEALTHY]) == Route(mode)


@pytest.mark.parametrize("mode", [Mode.FAST, Mode.TURBO])
def test_fast_and_turbo_fall_back_to_relax_when_no_account_has_fast_hours(mode: Mode) -> None:
    pool = [acct(id="out", fast_ms=0), acct(id="set", setting=Setting.RELAX, fast_ms=0)]
    assert route(mode, pool) == Route(Mode.RELAX, FallbackReason.FAST_HOURS_EXHAUSTED)


def test_a_disabled_account_with_fast_hours_does_not_prevent_the_fallback() -> None:
    pool = [acct(id="off", enabled=False), acct(id="out", fast_ms=0)]
    assert route(Mode.FAST, pool) == Route(Mode.RELAX, FallbackReason.FAST_HOURS_EXHAUSTED)


def test_relax_setting_accounts_do_not_count_as_fast_hours() -> None:
    """Their hours are left, so the fallback says the accounts are set to relax."""
    pool = [acct(setting=Setting.RELAX, plan=Plan.MEGA, fast_ms=60 * HOUR_MS)]
    assert route(Mode.TURBO, pool) == Route(Mode.RELAX, FallbackReason.ACCOUNT_SET_TO_RELAX)


def test_relax_with_only_basic_accounts_fails_with_no_relax_account() -> None:
    pool = [acct(plan=Plan.BASIC, relax_limit=0), acct(id="b", plan=Plan.BASIC, relax_limit=3)]
    assert route(Mode.RELAX, pool) == Route(None, error=ErrorCode.NO_RELAX_ACCOUNT)


def test_fast_fallback_with_only_basic_accounts_fails_with_no_relax_account() -> None:
    pool = [acct(plan=Plan.BASIC, relax_limit=0, fast_ms=0)]
    assert route(Mode.FAST, pool) == Route(None, error=ErrorCode.NO_RELAX_ACCOUNT)


def test_fast_on_basic_accounts_with_fast_hours_routes_fast() -> None:
    assert route(Mode.FAST, [acct(plan=Plan.BASIC, relax_limit=0)]) == Route(Mode.FAST)


def test_busy_is_not_unavailable_fast_still_routes_fast() -> None:
    busy = acct(id="busy", fast_inflight=3, fast_reserved_ms=HOUR_MS)
    out = acct(id="out", fast_ms=0)
    assert choose([busy, out], Slot.FAST) is None
    assert route(Mode.FAST, [busy, out]) == Route(Mode.FAST)


def test_busy_is_not_unavailable_relax_still_routes_relax() -> None:
    busy = acct(relax_inflight=3)
    assert choose([busy], Slot.RELAX) is None
    assert route(Mode.RELAX, [busy]) == Route(Mode.RELAX)


@given(st.sampled_from(list(Mode)), pools)
def test_route_only_answers_a_mode_some_account_can_eventually_serve(
    requested: Mode, pool: list[AccountState]
) -> None:
    r = route(requested, pool)
    enabled = [a for a in pool if a.enabled]
    assert (r.error is ErrorCode.NO_ACCOUNT) == (not enabled)
    if r.error is not None:
        assert r.mode is None
        assert r.fallback is None
        return
    assert r.mode is not None
    if r.mode is Mode.RELAX:
        assert any(has_relax_time(a) for a in enabled)
    else:
        assert r.mode is requested
        assert any(has_fast_hours(a) for a in enabled)
    if r.fallback is not None:
        set_to_relax = any(a.setting is Setting.RELAX and a.fast_ms > 0 for a in enabled)
        assert (r.fallback is FallbackReason.ACCOUNT_SET_TO_RELAX) == set_to_relax
        assert requested is not Mode.RELAX
        assert r.mode is Mode.RELAX
        assert not any(has_fast_hours(a) for a in enabled)


# --- route_child ---------------------------------------------------------------------


@pytest.mark.parametrize("parent_mode", list(Mode))
def test_child_of_a_missing_or_disabled_account_fails_parent_account_unavailable(
    parent_mode: Mode,
) -> None:
    unavailable = Route(None, error=ErrorCode.PARENT_ACCOUNT_UNAVAILABLE)
    assert route_child(parent_mode, None) == unavailable
    assert route_child(parent_mode, acct(enabled=False)) == unavailable


@pytest.mark.parametrize("parent_mode", list(Mode))
def test_child_inherits_the_parent_mode_on_a_healthy_account(parent_mode: Mode) -> None:
    assert route_child(parent_mode, HEALTHY) == Route(parent_mode)


@pytest.mark.parametrize("parent_mode", [Mode.FAST, Mode.TURBO])
def test_fast_child_on_an_account_set_to_relax_runs_relax(parent_mode: Mode) -> None:
    a = acct(setting=Setting.RELAX, fast_ms=10 * HOUR_MS)
    assert route_child(parent_mode, a) == Route(Mode.RELAX, FallbackReason.ACCOUNT_SET_TO_RELAX)


def test_fast_child_on_a_basic_account_flipped_to_relax_fails() -> None:
    a = acct(plan=Plan.BASIC, setting=Setting.RELAX, fast_ms=0, relax_limit=0)
    assert route_child(Mode.FAST, a) == Route(None, error=ErrorCode.PARENT_ACCOUNT_UNAVAILABLE)


def test_relax_child_on_a_standard_account_runs_relax() -> None:
    assert route_child(Mode.RELAX, acct(setting=Setting.FAST)) == Route(Mode.RELAX)
    assert route_child(Mode.RELAX, acct(setting=Setting.RELAX)) == Route(Mode.RELAX)


def test_fast_child_on_a_busy_fast_account_still_runs_fast() -> None:
    busy = acct(fast_inflight=3, fast_reserved_ms=HOUR_MS)
    assert route_child(Mode.FAST, busy) == Route(Mode.FAST)


@given(st.sampled_from(list(Mode)), accounts)
def test_route_child_never_picks_a_mode_the_account_cannot_run(
    parent_mode: Mode, a: AccountState
) -> None:
    r = route_child(parent_mode, a)
    if r.error is not None:
        assert r.error is ErrorCode.PARENT_ACCOUNT_UNAVAILABLE
        assert r.mode is None
        return
    assert a.enabled
    if r.mode is Mode.RELAX:
        assert has_relax_time(a)
        assert (r.fallback is not None) == (parent_mode is not Mode.RELAX)
    else:
        assert r.mode is parent_mode
        assert r.fallback is None
        assert has_fast_hours(a)


# --- fast_cost_ms ----------------------------------------------------------------------


@given(st.integers(0, 10 * HOUR_MS))
def test_fast_cost_turbo_is_twice_fast_and_relax_is_free(gpu_ms: int) -> None:
    assert fast_cost_ms(Mode.FAST, gpu_ms) == gpu_ms
    assert fast_cost_ms(Mode.TURBO, gpu_ms) == 2 * gpu_ms
    assert fast_cost_ms(Mode.RELAX, gpu_ms) == 0


def test_fast_cost_example() -> None:
    assert [fast_cost_ms(m, 60_000) for m in (Mode.RELAX, Mode.FAST, Mode.TURBO)] == [
        0,
        60_000,
        120_000,
    ]
