"""Account health: pacing, daily caps, working hours, cooldown, renewal, reset."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.accounts import US_PER_MONTH, next_renewal
from router.client import Client
from router.core import Router
from router.models import Plan, Setting, Slot
from router.policy import US_PER_DAY, US_PER_HOUR, AccountState, can_take, rest_until
from router.reaper import Reaper
from router.settings import Settings
from tests.conftest import wait_for

AddAccount = Callable[..., None]
NOON = 20_000 * US_PER_DAY + 12 * US_PER_HOUR  # some day, 12:00 UTC


def state(**kw: object) -> AccountState:
    return AccountState(id="a", plan=Plan.PRO, setting=Setting.FAST, fast_ms=10**7, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "rests_until"),
    [
        ({}, 0),
        ({"paced_until": NOON + 5}, NOON + 5),
        ({"paced_until": NOON - 5}, 0),
        ({"cooldown_until": NOON + 9}, NOON + 9),
        ({"daily_cap": 3, "day": 20_000, "day_jobs": 3}, 20_001 * US_PER_DAY),
        ({"daily_cap": 3, "day": 19_999, "day_jobs": 3}, 0),  # yesterday's count
        ({"daily_cap": 3, "day": 20_000, "day_jobs": 2}, 0),
        ({"work_hours": (8, 20)}, 0),
        ({"work_hours": (14, 20)}, 20_000 * US_PER_DAY + 14 * US_PER_HOUR),
        ({"work_hours": (8, 11)}, 20_001 * US_PER_DAY + 8 * US_PER_HOUR),
        ({"work_hours": (22, 6)}, 20_000 * US_PER_DAY + 22 * US_PER_HOUR),  # wraps midnight
        ({"work_hours": (10, 2)}, 0),
    ],
)
def test_rest_until_combines_pacing_cooldown_cap_and_hours(
    kw: dict[str, object], rests_until: int
) -> None:
    a = state(**kw)
    assert rest_until(a, NOON) == rests_until
    assert can_take(a, Slot.FAST, NOON) == (rests_until == 0)


def test_pacing_keeps_a_gap_between_starts_and_tasks_wait_not_fall_back(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro", min_gap_seconds=0.3)
    first = client.submit("alice", "one", mode="fast")
    second = client.submit("alice", "two", mode="fast")
    assert first.account_id == "a-pro"
    waiting = client.get(second.id)
    assert waiting is not None and waiting.account_id is None and waiting.effective_mode == "fast"
    reaper = Reaper(router)
    reaper.grace = False
    wait_for(
        lambda: reaper.wake_accounts() and client.get(second.id).account_id,
        timeout=10,  # type: ignore[union-attr]
        what="the pacing gap to pass",
    )
    placed = router.redis.hget(router.keys.task("alice", second.id), "placed_at")
    first_placed = router.redis.hget(router.keys.task("alice", first.id), "placed_at")
    assert placed is not None and first_placed is not None
    assert int(placed) - int(first_placed) >= 300_000


def test_daily_cap_stops_starts_for_the_day(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro", daily_cap=2)
    tasks = [client.submit("alice", f"t{i}", mode="fast") for i in range(3)]
    assert [t.account_id for t in tasks] == ["a-pro", "a-pro", None]
    view = router.pool.get("a-pro")
    assert view is not None and view.jobs_today == 2
    timer = router.redis.zscore(router.keys.timers("alice"), "a-pro")
    assert timer is not None and int(timer) % US_PER_DAY == 0  # wakes at UTC midnight


def test_outside_working_hours_an_account_rests(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    hour = datetime.now(UTC).hour
    closed = ((hour + 2) % 24, (hour + 3) % 24)
    add_account("a-pro", "alice", "pro", work_hours=closed)
    add_account("a-std", "alice", "standard", work_hours=(hour, (hour + 1) % 24))
    task = client.submit("alice", "cat", mode="fast")
    assert task.account_id == "a-std"
    router.apply(router.pool.update("a-std", work_hours=closed))
    waiting = client.submit("alice", "cat 2", mode="fast")
    assert waiting.account_id is None and waiting.fallback_reason is None


def test_repeated_transient_failures_rest_the_account_and_reroute_the_task(
    client: Client, add_account: AddAccount, router: Router, settings: Settings
) -> None:
    tuned = Router(
        settings.model_copy(update={"cooldown_after_failures": 1, "cooldown_seconds": 0.3}),
        router.redis,
    )
    add_account("a-mega", "alice", "mega")
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "cat", mode="fast")
    assert task.account_id == "a-mega"
    assert tuned.tasks.start("alice", task.id, 1)[0]
    status, outcome = tuned.tasks.settle(
        "alice", task.id, 1, "transient", error=("driver_error", "rate limited")
    )
    assert status == "queued"
    assert [p.account_id for p in outcome.placed] == ["a-std"]
    again = client.get(task.id)
    assert again is not None and (again.retries, again.retry_reason) == (1, "transient")
    resting = router.pool.get("a-mega")
    assert resting is not None and resting.cooldown_until_us
    assert client.submit("alice", "next", mode="fast").account_id == "a-std"
    reaper = Reaper(router)
    reaper.grace = False
    wait_for(lambda: reaper.wake_accounts() == 1, timeout=10, what="the cooldown to end")
    assert router.redis.zscore(router.keys.owner_base("alice") + ":free:fast", "a-mega")


def test_renewal_date_restores_fast_hours_and_undoes_the_flip(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    add_account("a-std", "alice", "standard", fast_hours=0, renews_at=soon)
    assert router.pool.get("a-std").setting == "relax"  # type: ignore[union-attr]
    reaper = Reaper(router)
    reaper.grace = False
    wait_for(lambda: reaper.wake_accounts(), timeout=10, what="the renewal date")
    view = router.pool.get("a-std")
    assert view is not None and view.setting == "fast" and view.fast_hours_remaining == 15
    assert view.renews_at_us is not None and view.renews_at_us > soon.timestamp() * 1e6
    assert client.submit("alice", "cat", mode="fast").effective_mode == "fast"


def test_reset_puts_an_account_back_into_rotation(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "cat", mode="fast")
    router.tasks.start("alice", task.id, 1)
    router.tasks.settle("alice", task.id, 1, "attention", error=("account_attention", "captcha"))
    assert not router.pool.get("a-pro").enabled  # type: ignore[union-attr]
    router.apply(router.pool.reset("a-pro"))
    view = router.pool.get("a-pro")
    assert view is not None and view.enabled and view.attention_reason is None
    assert client.submit("alice", "again", mode="fast").account_id == "a-pro"


def test_an_account_inside_its_working_hours_is_woken_when_they_end(
    add_account: AddAccount, router: Router
) -> None:
    now = datetime.now(UTC)
    add_account("a-pro", "alice", "pro", work_hours=(now.hour, (now.hour + 1) % 24))
    timer = router.redis.zscore(router.keys.timers("alice"), "a-pro")
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert timer is not None and int(timer) == int(end.timestamp()) * 1_000_000


YEARS_US = st.integers(min_value=946_684_800 * 10**6, max_value=4_102_444_800 * 10**6)
"""Instants from 2000 to 2100, in microseconds."""


@given(anchor=YEARS_US, now=YEARS_US)
def test_a_renewal_date_stands_for_the_first_date_of_its_cycle_after_now(
    anchor: int, now: int
) -> None:
    """What a declared renewal date is stored as: never due now (writing it renews nothing),
    on the 30-day cycle the scripts step, and no later than that cycle's next date."""
    at = next_renewal(anchor, now)
    assert at > now
    assert (at - anchor) % US_PER_MONTH == 0
    assert at == anchor or at - US_PER_MONTH <= now
