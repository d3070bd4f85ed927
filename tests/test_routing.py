"""Routing rules 1-5 (docs/rules.md), end to end through Redis and a real rq worker."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.errors import TaskRejected
from router.models import Setting
from router.settings import Settings
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]
Drain = Callable[[], None]


def test_fast_task_runs_fast_on_an_account_with_fast_hours(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast")
    drain()
    done = client.wait(task.id, timeout=10)
    assert (done.status, done.effective_mode, done.account_id) == ("completed", "fast", "a-pro")
    assert done.prompt == "a cat --fast"
    assert done.fallback_reason is None
    assert done.started_at is not None and done.finished_at is not None


def test_prompt_sent_to_the_account_carries_only_the_effective_flag(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat --relax --ar 3:2 --fast", mode="turbo")
    drain()
    done = client.wait(task.id, timeout=10)
    assert done.status == "completed"
    assert done.prompt == "a cat --ar 3:2 --turbo"


def test_fast_falls_back_to_relax_when_no_account_of_the_owner_has_fast_hours(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0)
    add_account("b-pro", "bob", "pro")  # another owner's fast hours do not count
    task = client.submit("alice", "a cat", mode="turbo")
    assert task.effective_mode == "relax"
    assert task.fallback_reason == "fast_hours_exhausted"
    drain()
    done = client.wait(task.id, timeout=10)
    assert (done.status, done.requested_mode, done.effective_mode) == (
        "completed",
        "turbo",
        "relax",
    )
    assert done.account_id == "a-std"
    assert done.prompt == "a cat --relax"


def test_relax_task_never_runs_on_basic(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-basic", "alice", "basic")
    add_account("a-std", "alice", "standard")
    ids = [client.submit("alice", f"cat {i}", mode="relax").id for i in range(6)]
    drain()
    for task_id in ids:
        done = client.wait(task_id, timeout=10)
        assert (done.status, done.account_id) == ("completed", "a-std")


def test_relax_task_fails_at_once_when_owner_has_only_basic_accounts(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-basic", "alice", "basic")
    task = client.submit("alice", "a cat --relax")
    assert task.status == "failed"
    assert task.error is not None and task.error.code == "no_relax_account"
    assert task.finished_at is not None


def test_fast_task_of_an_exhausted_basic_only_owner_fails_no_relax_account(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-basic", "alice", "basic", fast_hours=0)
    task = client.submit("alice", "a cat", mode="fast")
    assert task.status == "failed" and task.error is not None
    assert task.error.code == "no_relax_account"


def test_owner_without_enabled_account_fails_no_account(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    assert client.submit("nobody", "a cat").error.code == "no_account"  # type: ignore[union-attr]
    add_account("a-pro", "alice", "pro")
    router.apply(router.pool.update("a-pro", enabled=False))
    task = client.submit("alice", "a cat", mode="fast")
    assert task.error is not None and task.error.code == "no_account"


def test_relax_setting_account_never_takes_fast_work(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-mega", "alice", "mega", setting="relax")
    add_account("a-std", "alice", "standard")
    fast = [client.submit("alice", f"f{i}", mode="fast").id for i in range(5)]
    relax = [client.submit("alice", f"r{i}", mode="relax").id for i in range(5)]
    drain()
    for task_id in fast:
        done = client.wait(task_id, timeout=10)
        assert (done.effective_mode, done.account_id) == ("fast", "a-std")
    assert {client.wait(t, timeout=10).account_id for t in relax} <= {"a-mega", "a-std"}


def test_fast_task_on_relax_only_pool_falls_back(client: Client, add_account: AddAccount) -> None:
    add_account("a-mega", "alice", "mega", setting="relax")
    task = client.submit("alice", "a cat", mode="fast")
    assert (task.effective_mode, task.fallback_reason) == ("relax", "account_set_to_relax")
    add_account("b-std", "bob", "standard", fast_hours=0)  # flipped: nothing left
    task = client.submit("bob", "a dog", mode="fast")
    assert (task.effective_mode, task.fallback_reason) == ("relax", "fast_hours_exhausted")


def test_busy_account_makes_tasks_wait_not_fall_back(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_limit=1)
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(4)]
    placed = [t for t in (client.get(i) for i in ids) if t and t.account_id]
    assert len(placed) == 1  # one slot: the rest wait in line
    assert all(client.get(i).effective_mode == "fast" for i in ids)  # type: ignore[union-attr]
    drain()
    done = [client.wait(i, timeout=10) for i in ids]
    assert all(d.status == "completed" and d.effective_mode == "fast" for d in done)
    starts = sorted((d.started_at, d.finished_at) for d in done)
    for (_, prev_end), (next_start, _) in itertools.pairwise(starts):
        assert prev_end is not None and next_start is not None and prev_end <= next_start


def test_waiting_fast_task_does_not_block_relax_tasks_behind_it(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard", fast_limit=1)
    client.submit("alice", "first", mode="fast")
    waiting = client.submit("alice", "second", mode="fast")
    relax = client.submit("alice", "behind", mode="relax")
    assert client.get(waiting.id).account_id is None  # type: ignore[union-attr]
    assert client.get(relax.id).account_id == "a-std"  # type: ignore[union-attr]


def test_account_flips_to_relax_when_fast_hours_run_out(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0.02)  # 72 s: about one task
    ids = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(4)]
    drain()
    done = [client.wait(i, timeout=10) for i in ids]
    account = router.pool.get("a-std")
    assert account is not None
    assert account.setting == "relax"
    assert account.flip_reason == "fast_hours_exhausted" and account.flipped_at_us
    assert account.auto_flips == 1
    assert account.fast_hours_remaining == 0
    assert done[0].effective_mode == "fast"
    fell_back = [d for d in done if d.fallback_reason == "fast_hours_exhausted"]
    assert fell_back and all(d.effective_mode == "relax" for d in fell_back)
    assert all(d.status == "completed" for d in done)
    assert SimulatedDriver(router.settings, router.redis).audit("a-std")["setting"] == "relax"


def test_topping_up_fast_hours_flips_the_account_back(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=0.01)
    client.submit("alice", "cat", mode="fast")
    drain()
    assert router.pool.get("a-std").setting == "relax"  # type: ignore[union-attr]
    router.apply(router.pool.update("a-std", fast_hours=5))
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "fast" and account.flip_reason is None
    task = client.submit("alice", "cat again", mode="fast")
    assert task.effective_mode == "fast"


def test_operator_relax_setting_is_not_undone_by_a_top_up(
    add_account: AddAccount, router: Router
) -> None:
    add_account("a-std", "alice", "standard")
    router.apply(router.pool.update("a-std", setting=Setting.RELAX))
    router.apply(router.pool.update("a-std", fast_hours=10))
    assert router.pool.get("a-std").setting == "relax"  # type: ignore[union-attr]


def test_turbo_debits_twice_its_gpu_time_and_relax_nothing(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro", fast_hours=10)
    ids = {m: client.submit("alice", f"cat {m}", mode=m).id for m in ("fast", "turbo", "relax")}
    drain()
    for task_id in ids.values():
        assert client.wait(task_id, timeout=10).status == "completed"
    account = router.pool.get("a-pro")
    assert account is not None
    used = account.gpu_seconds_used
    spent_s = (10 - account.fast_hours_remaining) * 3600
    assert spent_s == pytest.approx(used["fast"] + 2 * used["turbo"], abs=0.01)
    assert used["relax"] > 0 and account.fast_hours_reserved == 0
    assert account.inflight == {"fast": 0, "relax": 0}


def test_child_inherits_parent_mode_and_account(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    add_account("a-std", "alice", "standard")
    parent = client.submit("alice", "a cat", mode="turbo")
    drain()
    parent = client.wait(parent.id, timeout=10)
    children = [
        client.submit("alice", task_type=t, parent_id=parent.id, input={"index": 2})
        for t in ("upscale", "variation", "reroll", "outpaint", "pan", "inpaint")
    ]
    drain()
    for child in children:
        done = client.wait(child.id, timeout=10)
        assert done.status == "completed", done.error
        assert (done.requested_mode, done.effective_mode) == ("turbo", "turbo")
        assert done.account_id == parent.account_id
        assert done.input == {"index": 2}


def test_child_runs_relax_when_parent_account_flipped(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard")
    parent = client.submit("alice", "a cat", mode="fast")
    drain()
    router.apply(router.pool.update("a-std", setting=Setting.RELAX))
    child = client.submit("alice", task_type="upscale", parent_id=parent.id)
    assert (child.effective_mode, child.fallback_reason) == ("relax", "account_set_to_relax")
    drain()
    assert client.wait(child.id, timeout=10).account_id == "a-std"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"enabled": False}, "parent_account_unavailable"),
        ({"remove": True}, "parent_account_unavailable"),
        ({"fast_hours": 0}, "parent_account_unavailable"),  # Basic flipped: no relax time
    ],
)
def test_child_fails_when_parent_account_cannot_run_it(
    client: Client,
    add_account: AddAccount,
    router: Router,
    drain: Drain,
    change: dict[str, Any],
    code: str,
) -> None:
    add_account("a-basic", "alice", "basic")
    add_account("a-pro", "alice", "pro", fast_limit=0)  # keeps the owner routable
    parent = client.submit("alice", "a cat", mode="fast")
    drain()
    assert client.wait(parent.id, timeout=10).account_id == "a-basic"
    if change.pop("remove", False):
        router.apply(router.pool.remove("a-basic"))
    else:
        router.apply(router.pool.update("a-basic", **change))
    child = client.submit("alice", task_type="upscale", parent_id=parent.id)
    assert child.status == "failed" and child.error is not None and child.error.code == code


def test_waiting_child_fails_when_its_account_is_disabled(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)
    parent = client.submit("alice", "a cat", mode="fast")
    drain()
    client.submit("alice", "hog", mode="fast")  # takes the only fast slot
    child = client.submit("alice", task_type="upscale", parent_id=parent.id)
    assert client.get(child.id).status == "queued"  # type: ignore[union-attr]
    router.apply(router.pool.update("a-pro", enabled=False))
    failed = client.get(child.id)
    assert failed is not None and failed.error is not None
    assert failed.error.code == "parent_account_unavailable"


def test_child_errors_for_missing_unfinished_or_foreign_parent(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    add_account("b-pro", "bob", "pro")
    missing = client.submit("alice", task_type="upscale", parent_id="nope")
    assert missing.error is not None and missing.error.code == "parent_not_found"
    running = client.submit("alice", "a cat", mode="fast")
    early = client.submit("alice", task_type="upscale", parent_id=running.id)
    assert early.error is not None and early.error.code == "parent_not_completed"
    drain()
    bobs = client.submit("bob", "a dog", mode="fast")
    drain()
    client.wait(bobs.id, timeout=10)
    foreign = client.submit("alice", task_type="upscale", parent_id=bobs.id)
    assert foreign.error is not None and foreign.error.code == "parent_not_found"


def test_tasks_only_run_on_their_owners_accounts(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    owners = {"alice": ["a1", "a2"], "bob": ["b1"], "carol": ["c1", "c2"]}
    for owner, accounts in owners.items():
        for acct in accounts:
            add_account(acct, owner, "standard")
    ids = [
        (owner, client.submit(owner, f"{owner} {i}", mode=m).id)
        for i in range(6)
        for owner in owners
        for m in ("fast", "relax")
    ]
    drain()
    for owner, task_id in ids:
        done = client.wait(task_id, timeout=10)
        assert done.status == "completed" and done.account_id in owners[owner]


def test_caller_id_makes_submit_idempotent(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    first = client.submit("alice", "a cat", mode="fast", id="order-42")
    again = client.submit("alice", "a different prompt", mode="relax", id="order-42")
    assert again.id == first.id == "order-42"
    assert (again.prompt, again.attempt) == ("a cat --fast", 1)
    assert router.queue.count == 1
    with pytest.raises(TaskRejected) as info:
        client.submit("bob", "a cat", id="order-42")
    assert info.value.code == "duplicate_id"


def test_cancel_queued_task_frees_its_slot_for_the_next(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_limit=1)
    first = client.submit("alice", "first", mode="fast")
    second = client.submit("alice", "second", mode="fast")
    cancelled = client.cancel(first.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert client.get(second.id).account_id == "a-std"  # type: ignore[union-attr]
    drain()
    assert client.wait(second.id, timeout=10).status == "completed"
    assert client.get(first.id).started_at is None  # type: ignore[union-attr]
    assert client.cancel("no-such-task") is None


def test_bad_client_input_raises_a_stable_code(client: Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"task_type": "paint"}, "unknown_task_type"),
        ({"prompt": "x" * 501}, "prompt_too_long"),
        ({"task_type": "upscale"}, "invalid_task"),
        ({"id": "bad id!"}, "invalid_task"),
    ]
    for kwargs, code in cases:
        with pytest.raises(TaskRejected) as info:
            client.submit("alice", **kwargs)
        assert info.value.code == code


def test_relax_time_is_what_the_configured_plan_table_says(
    router: Router, client: Client, add_account: AddAccount
) -> None:
    """Plans live in config: an operator who takes Standard's relax time away and gives
    Basic some sees relax work start on Basic and never on Standard, in the scripts
    themselves, even on an account written under the old table."""
    add_account("a-std", "alice", "standard")  # relax time, by the default table
    plans = {"basic": {"relax": True, "relax_limit": 2}, "standard": {"relax": False}}
    settings = router.settings.model_copy(update={"plans": Settings(plans=plans).plans})
    turned = Router(settings, router.redis)
    stale = Client(settings, router.redis).submit("alice", "a cat", mode="relax")
    assert stale.account_id == "a-std"  # placed by the index the old table wrote
    assert turned.tasks.start("alice", stale.id, stale.attempt)[0] is False  # never started
    failed = client.get(stale.id)
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert failed.error.code == "no_relax_account"
    turned.apply(turned.pool.add(AccountSpec(id="a-basic", owner="alice", plan="basic")))
    task = Client(settings, router.redis).submit("alice", "a dog", mode="relax")
    assert (task.account_id, task.effective_mode) == ("a-basic", "relax")
    assert turned.tasks.start("alice", task.id, task.attempt)[0] is True
