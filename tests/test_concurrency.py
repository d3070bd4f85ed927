"""Several router and worker processes on one Redis never over-commit an account."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

import pytest

from router.core import Router
from router.models import Mode, Slot, TaskType, slot_for
from router.policy import fast_cost_ms
from router.tasks import Task
from tests.chaos.chaos import max_overlap
from tests.conftest import TEST_REDIS_URL, terminal, wait_for
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]

POOL = [  # (account, owner, plan, extra)
    ("a-pro", "alice", "pro", {"fast_limit": 3, "relax_limit": 2}),
    ("a-basic", "alice", "basic", {"fast_hours": 0.05}),
    ("b-std", "bob", "standard", {"fast_hours": 0.1}),
    ("b-mega", "bob", "mega", {"setting": "relax", "relax_limit": 2}),
    ("c-std", "carol", "standard", {"fast_limit": 2, "relax_limit": 1}),
]
MODES = ["fast", "turbo", "relax", ""]


def audit(router: Router, tasks: list[Task]) -> None:
    """Check the invariants from the records and from the simulated accounts' own counters."""
    runs: dict[tuple[str, Slot], list[tuple[datetime, datetime]]] = defaultdict(list)
    for t in tasks:
        assert t.status.terminal
        if t.started_at and t.finished_at and t.account_id and t.effective_mode:
            runs[(t.account_id, slot_for(t.effective_mode))].append((t.started_at, t.finished_at))
    sim = SimulatedDriver(router.settings, router.redis)
    for view in router.pool.accounts():
        for slot in Slot:
            peak = max_overlap(runs[(view.id, slot)])
            limit = view.fast_limit if slot is Slot.FAST else view.relax_limit
            assert peak <= limit, f"{view.id} ran {peak} {slot} jobs at once (limit {limit})"
            assert int(sim.audit(view.id).get(f"max_running_{slot.value}", 0)) <= limit
        assert view.inflight == {"fast": 0, "relax": 0}, view.id  # nothing leaked
        assert view.fast_hours_reserved == 0
        # Reservations stop once an account's fast time is committed, so the account is
        # overspent by at most one task's estimate (a turbo one here), plus the simulator's
        # jitter on the jobs that were in flight at that moment.
        turbo_ms = fast_cost_ms(Mode.TURBO, router.settings.estimate_ms(TaskType.IMAGINE))
        bound_ms = turbo_ms * (1 + router.settings.sim.jitter * view.fast_limit)
        assert -int(sim.audit(view.id).get("fast_ms", 0)) <= bound_ms, view.id
    for t in tasks:  # relax never on Basic, owners never mixed
        if t.effective_mode == "relax" and t.account_id:
            assert router.pool.get(t.account_id).plan != "basic"  # type: ignore[union-attr]
        if t.account_id:
            assert router.pool.get(t.account_id).owner == t.owner  # type: ignore[union-attr]


@pytest.mark.slow
def test_several_routers_and_workers_never_exceed_account_limits(
    router: Router, add_account: AddAccount, spawn: Callable[..., object]
) -> None:
    for acct, owner, plan, extra in POOL:
        add_account(acct, owner, plan, **extra)
    for _ in range(3):
        spawn("run")
    for _ in range(8):
        spawn("worker")
    owners = ["alice", "bob", "carol"]
    ids = [f"task-{i}" for i in range(600)]
    pipe = router.redis.pipeline()
    for i, task_id in enumerate(ids):
        message = {
            "id": task_id,
            "owner": owners[i % 3],
            "input": {"prompt": f"cat {i}", "process_mode": MODES[(i // 3) % 4]},
        }
        pipe.lpush(router.keys.intake, json.dumps(message))
    pipe.execute()
    tasks = wait_for(terminal(router, ids), timeout=240, what="600 tasks to end")
    assert len({t.id for t in tasks}) == 600
    by_status = defaultdict(int)
    for t in tasks:
        by_status[(t.owner, t.status, t.error.code if t.error else None)] += 1
    # carol's relax tasks have no relax-less problem (standard); all owners' tasks complete.
    assert all(status == "completed" for (_, status, _) in by_status), by_status
    # No task ran twice: none was run again after a lost worker, and the accounts themselves
    # ran exactly one job per task. (A task refused by its account, out of fast hours since
    # it was placed, is placed again, so its attempt may be 2: it still ran once.)
    assert [(t.id, t.retry_reason) for t in tasks if t.retries] == []
    sim = SimulatedDriver(router.settings, router.redis)
    jobs = sum(int(sim.audit(view.id).get("jobs", 0)) for view in router.pool.accounts())
    assert jobs == len(tasks)
    flipped = router.pool.get("b-std")
    assert flipped is not None and flipped.setting == "relax"  # bob ran out of fast hours
    # bob's other account, b-mega, is set to relax with its fast hours untouched
    assert any(t.fallback_reason == "account_set_to_relax" for t in tasks if t.owner == "bob")
    audit(router, tasks)


def _client_process(env: dict[str, str], owner: str, n: int, start: int) -> None:
    os.environ.update(env)
    from router.client import Client
    from router.settings import Settings

    client = Client(Settings())
    for i in range(start, start + n):
        client.submit(owner, f"cat {i}", mode=MODES[i % 3], id=f"p-{i}")


@pytest.mark.slow
def test_clients_in_parallel_processes_share_accounts_safely(
    router: Router, add_account: AddAccount, spawn: Callable[..., object], env: dict[str, str]
) -> None:
    add_account("a-std", "alice", "standard", fast_limit=2, relax_limit=2, fast_hours=0.2)
    add_account("a-pro", "alice", "pro", fast_limit=2, relax_limit=1)
    for _ in range(6):
        spawn("worker")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_client_process, args=(env, "alice", 50, k * 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    ids = [f"p-{i}" for i in range(200)]
    tasks = wait_for(terminal(router, ids), timeout=240, what="200 tasks to end")
    assert all(t.status == "completed" for t in tasks)
    audit(router, tasks)
    assert TEST_REDIS_URL in env["BYOA_REDIS_URL"]
