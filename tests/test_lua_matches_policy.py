"""The placement Lua keeps its indexes exactly as `router.policy` says, on generated pools."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router import policy
from router.core import Router
from router.models import Mode, Plan, Setting, Slot
from router.policy import AccountState
from router.requests import NewTask
from router.scripts import text

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
)
pools = st.lists(accounts, max_size=4, unique_by=lambda a: a.id)
SLOW = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


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
            score = router.redis.zscore(f"{base}:free:{slot.value}", a.id)
            assert (score is not None) == policy.can_take(a, slot), (a, slot)
            if score is not None:
                assert int(score) == policy.account_score(a, slot)
        stored = router.pool.get(a.id)
        assert stored is None or stored.setting == a.setting  # the flip happened


@SLOW
@given(pool=pools, mode=st.sampled_from(list(Mode)))
# These two run first, in this order: the first leaves a fast task waiting as a relax
# fallback; the second must still place its own task on the one free fast slot.
@example(
    pool=[
        AccountState("a0", Plan.STANDARD, Setting.RELAX, fast_ms=1, relax_limit=1, relax_inflight=1)
    ],
    mode=Mode.FAST,
)
@example(
    pool=[AccountState("a1", Plan.STANDARD, Setting.FAST, fast_ms=1, fast_limit=1)],
    mode=Mode.FAST,
)
def test_submit_routes_as_policy_route_and_places_on_policy_choice(
    router: Router, pool: list[AccountState], mode: Mode
) -> None:
    load(router, "o", pool)
    states = [flipped(a) for a in pool]
    expected = policy.route(mode, states)
    task = NewTask(uuid.uuid4().hex, "o", "imagine", mode.value, "", "x", "{}", 60_000)
    router.redis.set(router.keys.task_owner(task.id), "o")
    (submitted,), outcome = router.tasks.submit_many([task])
    assert submitted.created
    record = router.tasks.get(task.id)
    assert record is not None
    if expected.error is not None:
        assert record.error is not None and record.error.code == expected.error
        assert not outcome.placed
        return
    assert record.effective_mode == expected.mode
    assert record.fallback_reason == expected.fallback
    assert expected.mode is not None
    choice = policy.choose(states, Slot.RELAX if expected.mode is Mode.RELAX else Slot.FAST)
    if choice is None:
        assert not outcome.placed and record.account_id is None  # busy: it waits
    else:
        assert [p.account_id for p in outcome.placed] == [choice.id]
