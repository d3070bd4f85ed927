"""START / SETTLE / CANCEL edges, driven through the real scripts step by step."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.errors import AccountError
from router.models import Setting
from router.tasks import Task
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]


def start(router: Router, task: Task) -> None:
    ok, status, outcome = router.tasks.start(task.owner, task.id, task.attempt)
    assert ok and status == "running" and not outcome.placed


def test_cancel_wins_over_a_reroute(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    start(router, task)
    assert client.cancel(task.id).status == "running"  # type: ignore[union-attr]
    status, outcome = router.tasks.settle("alice", task.id, 1, "out_of_fast")
    assert status == "cancelled" and not outcome.placed
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt) == ("cancelled", 1)


def test_account_needing_attention_leaves_rotation_and_its_task_is_rerouted(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-mega", "alice", "mega")
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    assert task.account_id == "a-mega"
    start(router, task)
    status, outcome = router.tasks.settle(
        "alice", task.id, 1, "attention", error=("account_attention", "captcha required")
    )
    assert status == "queued"
    assert [(p.task_id, p.account_id) for p in outcome.placed] == [(task.id, "a-std")]
    banned = router.pool.get("a-mega")
    assert banned is not None and not banned.enabled
    assert banned.attention_reason == "captcha required"
    assert banned.inflight == {"fast": 0, "relax": 0}
    later = client.submit("alice", "another", mode="fast")
    assert later.account_id == "a-std"
    router.apply(router.pool.update("a-mega", enabled=True))
    assert router.pool.get("a-mega").attention_reason is None  # type: ignore[union-attr]


def test_relax_task_rerouted_stays_relax_and_off_basic(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-basic", "alice", "basic")
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="relax")
    start(router, task)
    _, outcome = router.tasks.settle("alice", task.id, 1, "out_of_fast")
    assert [(p.account_id, p.slot) for p in outcome.placed] == [("a-std", "relax")]
    again = client.get(task.id)
    assert again is not None and again.effective_mode == "relax"
    basic = router.pool.get("a-basic")
    assert basic is not None and basic.fast_hours_reserved == 0


def test_relax_task_a_backend_calls_out_of_fast_hours_ends_after_its_retries(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    """A relax job cannot want fast time: routing it again for ever would never end it."""
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="relax")
    for attempt in range(1, router.settings.max_retries + 2):
        ok, _, _ = router.tasks.start("alice", task.id, attempt)
        assert ok
        status, _ = router.tasks.settle(
            "alice", task.id, attempt, "out_of_fast", error=("driver_error", "no fast hours")
        )
        assert status == ("failed" if attempt > router.settings.max_retries else "queued")
    done = client.get(task.id)
    assert done is not None and done.error is not None
    assert (done.status, done.retries, done.error.code) == ("failed", 2, "driver_error")
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "fast" and account.fast_hours_remaining > 0


def test_task_placed_on_an_account_disabled_before_it_starts_is_routed_again(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-mega", "alice", "mega")
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    assert task.account_id == "a-mega"
    router.apply(router.pool.update("a-mega", enabled=False))
    ok, _, outcome = router.tasks.start("alice", task.id, 1)
    assert not ok
    assert [(p.account_id, p.attempt) for p in outcome.placed] == [("a-std", 2)]
    assert router.pool.get("a-mega").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_stale_attempt_neither_starts_nor_settles(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    assert router.tasks.start("alice", task.id, 7)[0] is False
    start(router, task)
    assert router.tasks.settle("alice", task.id, 7, "completed")[0] == "running"
    assert router.tasks.settle("alice", task.id, 1, "completed", gpu_ms=1000)[0] == "completed"
    assert router.tasks.settle("alice", task.id, 1, "completed", gpu_ms=1000)[0] == "completed"
    account = router.pool.get("a-std")
    assert account is not None and account.gpu_seconds_used["fast"] == 1  # settled once


def test_account_with_jobs_in_flight_cannot_be_removed(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    with pytest.raises(AccountError) as info:
        router.pool.remove("a-std")
    assert info.value.code == "account_busy"
    client.cancel(task.id)
    router.apply(router.pool.remove("a-std"))
    assert router.pool.get("a-std") is None


def test_top_up_on_a_fast_account_reaches_the_driver(
    add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=1)
    sim = SimulatedDriver(router.settings, router.redis)
    sim.set_fast_ms("a-std", 0)
    router.apply(router.pool.update("a-std", fast_hours=2))
    assert sim.audit("a-std")["fast_ms"] == 2 * 3_600_000


def test_syncing_an_accounts_file_keeps_an_automatic_flip(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0)
    assert router.pool.get("a-std").setting == "relax"  # type: ignore[union-attr]
    router.apply(router.pool.upsert(AccountSpec(id="a-std", owner="alice", plan="standard")))
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "relax" and account.auto_flips == 1


def test_task_placed_fast_on_an_account_set_to_relax_before_it_starts_is_routed_again(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    router.apply(router.pool.update("a-std", setting=Setting.RELAX))
    ok, _, outcome = router.tasks.start("alice", task.id, 1)
    assert not ok  # rule 3: never fast on a relax account
    assert [(p.account_id, p.slot) for p in outcome.placed] == [("a-std", "relax")]
    again = client.get(task.id)
    assert again is not None and again.effective_mode == "relax"
    assert again.fallback_reason == "account_set_to_relax"  # its fast hours are still there


def test_settle_reports_the_status_a_rerouted_task_really_has(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    task = client.submit("alice", "a cat", mode="fast")
    start(router, task)
    status, _ = router.tasks.settle(
        "alice", task.id, 1, "attention", error=("account_attention", "banned")
    )
    done = client.get(task.id)
    assert done is not None and status == done.status == "failed"
    assert done.error is not None and done.error.code == "no_account"


def test_syncing_an_accounts_file_keeps_rotation_and_spent_hours(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    spec = AccountSpec(id="a-std", owner="alice", plan="standard", fast_hours=0.01)
    router.apply(router.pool.upsert(spec))
    task = client.submit("alice", "a cat", mode="fast")
    start(router, task)
    router.tasks.settle("alice", task.id, 1, "attention", error=("account_attention", "banned"))
    router.apply(router.pool.upsert(spec))  # the same file again
    account = router.pool.get("a-std")
    assert account is not None and not account.enabled and account.attention_reason == "banned"
    router.apply(router.pool.update("a-std", enabled=True))
    task = client.submit("alice", "a cat", mode="fast")
    start(router, task)
    router.tasks.settle("alice", task.id, 1, "completed", gpu_ms=60_000)
    assert router.pool.get("a-std").setting == "relax"  # type: ignore[union-attr]
    router.apply(router.pool.upsert(spec))
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "relax"
    assert account.fast_hours_remaining == 0
    router.apply(router.pool.upsert(spec.model_copy(update={"fast_hours": 2})))  # a new top-up
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "fast" and account.fast_hours_remaining == 2


def test_settle_with_an_absurd_gpu_time_or_balance_ends_the_task_and_frees_its_slot(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    """Scripts check before they write: SETTLE used to fail at HINCRBY after releasing the
    slot (Redis does not roll a script back), leaving a running task with no slot or lease."""
    add_account("a-pro", "alice", "pro")
    key = router.keys.account("alice", "a-pro")
    router.redis.hset(key, "fast_ms", "36000000000000000000")  # as 1e13 hours once allowed
    first = client.submit("alice", "a fox", mode="fast")
    start(router, first)
    status, _ = router.tasks.settle("alice", first.id, 1, "completed", gpu_ms=10**30)
    assert status == "completed"
    second = client.submit("alice", "a cat", mode="fast")
    start(router, second)
    status, _ = router.tasks.settle("alice", second.id, 1, "completed", gpu_ms=1000)
    assert status == "completed"
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}
    assert not router.redis.zcard(router.keys.inflight("alice"))  # no lease left behind


def test_account_write_refuses_a_number_it_cannot_hold_and_writes_nothing(
    add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    before = router.redis.hgetall(router.keys.account("alice", "a-pro"))
    for field, value in (("fast_ms", "1e19"), ("fast_limit", "-1"), ("work_end_h", "24")):
        raw = router.scripts.owner_call(
            router.scripts.account_write, "alice", ["set", "a-pro", "daily_cap", "3", field, value]
        )
        (verdict, named), _ = router.scripts.decode("alice", raw)
        assert (verdict, named) == ("invalid", field)
    assert router.redis.hgetall(router.keys.account("alice", "a-pro")) == before


def test_a_job_the_backend_ran_in_another_mode_is_recorded_and_charged_as_what_ran(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    before = router.pool.get("a-pro")
    assert before is not None
    task = client.submit("alice", "a cat", mode="relax")
    start(router, task)
    status, _ = router.tasks.settle(
        "alice", task.id, 1, "completed", gpu_ms=60_000, ran_mode="fast"
    )
    assert status == "completed"
    done = client.get(task.id)
    assert done is not None and (done.effective_mode, done.ran_mode) == ("relax", "fast")
    after = router.pool.get("a-pro")
    assert after is not None
    assert after.fast_hours_remaining == pytest.approx(before.fast_hours_remaining - 60 / 3600)
    assert after.gpu_seconds_used == {"fast": 60.0, "relax": 0.0, "turbo": 0.0}
    stats = router.redis.hgetall(router.keys.stats("alice"))
    assert stats[b"mode_mismatch:relax:fast"] == b"1"

    same = client.submit("alice", "a dog", mode="turbo")
    start(router, same)
    router.tasks.settle("alice", same.id, 1, "completed", gpu_ms=1000, ran_mode="turbo")
    again = client.get(same.id)
    assert again is not None and again.ran_mode is None  # as placed: nothing recorded
    for nonsense in ("", "slow", "FAST"):  # not a mode: charged as placed
        other = client.submit("alice", f"a bird {nonsense}", mode="relax")
        start(router, other)
        router.tasks.settle("alice", other.id, 1, "completed", gpu_ms=1000, ran_mode=nonsense)
        got = client.get(other.id)
        assert got is not None and got.ran_mode is None
    assert router.pool.get("a-pro").gpu_seconds_used["relax"] == 3.0  # type: ignore[union-attr]
