"""Renewal-aware placement, fill-first and the expiring-hours upgrade as pure functions
(docs/design.md, "Renewal-aware choice")."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from router.models import Plan, Setting, Slot, Strategy
from router.policy import (
    UNDATED_SCORE,
    AccountState,
    account_score,
    choose,
    latest_start_us,
    surely_expires,
    upgrade_target,
)

HOUR_MS = 3_600_000
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
NOW = 1_790_000_000_000_000
R = Strategy.RENEWAL


def acct(**kw: Any) -> AccountState:
    """A healthy Standard account set to fast, with 10 hours of fast time and idle slots."""
    base: dict[str, Any] = {
        "id": "a",
        "plan": Plan.STANDARD,
        "setting": Setting.FAST,
        "fast_ms": 10 * HOUR_MS,
        "fast_limit": 3,
        "relax_limit": 3,
    }
    return AccountState(**{**base, **kw})


def pick(accounts: list[AccountState], strategy: Strategy = R, slot: Slot = Slot.FAST) -> str:
    chosen = choose(accounts, slot, NOW, strategy)
    assert chosen is not None
    return chosen.id


def test_latest_start_is_the_renewal_less_the_time_every_slot_needs_to_burn_the_balance() -> None:
    a = acct(fast_ms=3 * HOUR_MS, fast_reserved_ms=HOUR_MS, fast_limit=2, renews_at_us=NOW)
    assert latest_start_us(a) == NOW - HOUR_US  # 2 h available over 2 slots
    assert latest_start_us(acct()) is None  # no date known


def test_fast_work_goes_first_to_the_hours_that_expire_first() -> None:
    soon = acct(id="z", renews_at_us=NOW + 2 * DAY_US)
    later = acct(id="a", renews_at_us=NOW + 20 * DAY_US, fast_ms=20 * HOUR_MS)
    assert pick([soon, later]) == "z"
    assert pick([soon, later], Strategy.LEAST_LOADED) == "a"  # today's: the most hours left


def test_an_account_with_few_slots_and_many_hours_starts_before_its_renewal_says() -> None:
    """Renewing later, but 60 h on one slot cannot wait: 2.5 days of burning are needed."""
    big = acct(id="big", fast_ms=60 * HOUR_MS, fast_limit=1, renews_at_us=NOW + 3 * DAY_US)
    small = acct(id="small", fast_ms=HOUR_MS, fast_limit=3, renews_at_us=NOW + 2 * DAY_US)
    assert pick([big, small]) == "big"


def test_undated_accounts_come_after_every_dated_one_and_order_as_today() -> None:
    dated = acct(id="d", renews_at_us=NOW + 29 * DAY_US, fast_inflight=2)
    undated = [acct(id="u1", fast_ms=HOUR_MS), acct(id="u2", fast_ms=2 * HOUR_MS)]
    assert pick([dated, *undated]) == "d"
    assert pick(undated) == "u2"  # most fast time left, as least_loaded
    for a in undated:
        today = account_score(a, Slot.FAST, Strategy.LEAST_LOADED)
        assert account_score(a, Slot.FAST, R) == UNDATED_SCORE + today
    assert account_score(dated, Slot.FAST, R) < UNDATED_SCORE


def test_basic_goes_first_among_equally_urgent_accounts_then_load_decides() -> None:
    at = NOW + 5 * DAY_US
    basic = acct(id="b", plan=Plan.BASIC, relax_limit=0, renews_at_us=at, fast_inflight=2)
    std = acct(id="a", renews_at_us=at)
    assert pick([basic, std]) == "b"
    busy = acct(id="a", renews_at_us=at, fast_inflight=2)
    idle = acct(id="c", renews_at_us=at + 60_000_000)  # a minute later: same hour
    assert pick([busy, idle]) == "c"


def test_a_full_or_resting_account_is_never_chosen_however_urgent() -> None:
    urgent = acct(id="u", renews_at_us=NOW + HOUR_US, fast_inflight=3)
    resting = acct(id="r", renews_at_us=NOW + HOUR_US, cooldown_until=NOW + 1)
    other = acct(id="o", renews_at_us=NOW + 20 * DAY_US)
    assert pick([urgent, resting, other]) == "o"


def test_relax_placement_is_unchanged() -> None:
    accounts = [
        acct(id="a", renews_at_us=NOW + HOUR_US, relax_inflight=1),
        acct(id="b", renews_at_us=NOW + 20 * DAY_US),
    ]
    assert pick(accounts, R, Slot.RELAX) == pick(accounts, Strategy.LEAST_LOADED, Slot.RELAX) == "b"


def test_fill_first_takes_the_first_account_with_room_in_id_order() -> None:
    accounts = [acct(id="c"), acct(id="a", fast_inflight=3), acct(id="b", fast_inflight=2)]
    assert pick(accounts, Strategy.FILL_FIRST) == "b"
    assert pick(accounts, Strategy.FILL_FIRST, Slot.RELAX) == "a"


def test_hours_surely_expire_only_past_the_latest_start() -> None:
    a = acct(fast_ms=3 * HOUR_MS, fast_limit=3, renews_at_us=NOW + HOUR_US)
    assert latest_start_us(a) == NOW
    assert not surely_expires(a, NOW)  # three slots for an hour use exactly 3 h
    assert surely_expires(a, NOW + 1)
    assert not surely_expires(acct(), NOW)  # no date: nothing ever expires


def test_upgrade_target_is_a_free_non_basic_account_with_surplus() -> None:
    soon = NOW + HOUR_US
    surplus = acct(id="s", fast_ms=10 * HOUR_MS, renews_at_us=soon)
    assert upgrade_target([surplus], NOW) == surplus
    assert upgrade_target([acct(id="x", renews_at_us=NOW + 10 * DAY_US)], NOW) is None
    basic = acct(id="b", plan=Plan.BASIC, relax_limit=0, fast_ms=10 * HOUR_MS, renews_at_us=soon)
    assert upgrade_target([basic], NOW) is None  # relax work never lands on Basic
    full = acct(id="f", fast_ms=10 * HOUR_MS, renews_at_us=soon, fast_inflight=3)
    assert upgrade_target([full], NOW) is None
    relax_set = acct(id="r", setting=Setting.RELAX, fast_ms=10 * HOUR_MS, renews_at_us=soon)
    assert upgrade_target([relax_set], NOW) is None  # rule 3 holds for upgrades too
    more = acct(id="z", fast_ms=20 * HOUR_MS, renews_at_us=soon)
    assert upgrade_target([surplus, more], NOW) == more  # the most surplus first


@given(
    fast_ms=st.integers(0, 10**9),
    fast_limit=st.integers(1, 12),
    left_us=st.integers(1, 40 * DAY_US),
)
def test_surely_expires_means_every_slot_running_until_the_renewal_leaves_hours(
    fast_ms: int, fast_limit: int, left_us: int
) -> None:
    a = acct(fast_ms=fast_ms, fast_limit=fast_limit, renews_at_us=NOW + left_us)
    if surely_expires(a, NOW):
        assert fast_ms * 1000 > fast_limit * left_us
    if fast_ms * 1000 >= fast_limit * (left_us + 1):
        assert surely_expires(a, NOW)


@given(
    st.lists(
        st.builds(
            acct,
            id=st.sampled_from(["a", "b", "c", "d"]),
            fast_ms=st.integers(1, 10**9),
            fast_limit=st.integers(1, 12),
            fast_inflight=st.integers(0, 12),
            plan=st.sampled_from(list(Plan)),
            renews_at_us=st.one_of(st.none(), st.integers(NOW + 1, NOW + 31 * DAY_US)),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda a: a.id,
    )
)
def test_renewal_only_orders_accounts_that_may_take_the_task(
    accounts: list[AccountState],
) -> None:
    """Same eligibility as today: renewal picks an account exactly when least_loaded does."""
    ours = choose(accounts, Slot.FAST, NOW, R)
    today = choose(accounts, Slot.FAST, NOW, Strategy.LEAST_LOADED)
    assert (ours is None) == (today is None)
    free = [a for a in accounts if a.fast_inflight < a.fast_limit]
    if ours is not None:
        assert ours in free
        dated = [a for a in free if a.renews_at_us is not None]
        if dated:
            assert ours.renews_at_us is not None  # a dated account before any undated
            first = min(latest_start_us(a) or 0 for a in dated) // HOUR_US
            assert (latest_start_us(ours) or 0) // HOUR_US == first
