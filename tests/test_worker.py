"""Workers and the simulated account: re-routing on "out of fast hours", cancel, shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from router.client import Client
from router.core import Router
from router.driver import AccountRef, DriverError, DriverJob
from router.models import Mode, Plan, Slot
from tests.conftest import terminal, wait_for
from workers.drivers.simulated import SimulatedDriver, draw
from workers.process import Worker

AddAccount = Callable[..., None]
Drain = Callable[[], None]


def test_driver_out_of_fast_hours_flips_account_and_falls_back(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard", fast_hours=10)
    SimulatedDriver(router.settings, router.redis).set_fast_ms("a-std", 0)  # the truth: none
    task = client.submit("alice", "a cat", mode="fast")
    drain()
    done = client.wait(task.id, timeout=10)
    assert (done.status, done.effective_mode) == ("completed", "relax")
    assert done.fallback_reason == "fast_hours_exhausted"
    assert done.attempt == 2 and done.prompt == "a cat --relax"
    account = router.pool.get("a-std")
    assert account is not None and account.setting == "relax"
    assert account.fast_hours_remaining == 0 and account.auto_flips == 1
    assert account.inflight == {"fast": 0, "relax": 0} and account.fast_hours_reserved == 0


def test_driver_out_of_fast_hours_reroutes_to_another_account_with_hours(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-mega", "alice", "mega", fast_hours=50)
    add_account("a-std", "alice", "standard", fast_hours=5)
    SimulatedDriver(router.settings, router.redis).set_fast_ms("a-mega", 0)
    task = client.submit("alice", "a cat", mode="turbo")
    assert task.account_id == "a-mega"  # most fast time left, as far as the router knows
    drain()
    done = client.wait(task.id, timeout=10)
    assert (done.status, done.effective_mode, done.account_id) == ("completed", "turbo", "a-std")
    assert done.fallback_reason is None
    assert router.pool.get("a-mega").setting == "relax"  # type: ignore[union-attr]


def test_simulator_refuses_a_prompt_without_exactly_the_jobs_flag(router: Router) -> None:
    driver = SimulatedDriver(router.settings, router.redis)
    account = AccountRef("a1", "alice", Plan.PRO, 3_600_000)
    for prompt in ("a cat", "a cat --fast", "a cat --relax --turbo"):
        with pytest.raises(DriverError):
            driver.submit(account, DriverJob("t1", "imagine", Mode.TURBO, prompt, {}))
    child = DriverJob("t2", "upscale", Mode.FAST, None, {}, parent_result={"job_ref": "a2:t0"})
    with pytest.raises(DriverError, match="not on account"):
        driver.submit(account, child)


def test_cancel_running_task_ends_it_cancelled_and_frees_the_slot(
    client: Client,
    add_account: AddAccount,
    router: Router,
    spawn: Callable[..., object],
    env: dict[str, str],
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)
    env["BYOA_SIM_SPEED"] = "10"  # a fast job lasts about 5 s
    spawn("worker")
    task = client.submit("alice", "slow cat", mode="fast")
    behind = client.submit("alice", "next cat", mode="fast")
    wait_for(lambda: client.get(task.id).handle is not None, what="the job to be submitted")  # type: ignore[union-attr]
    assert client.cancel(task.id).status == "running"  # type: ignore[union-attr]
    done = client.wait(task.id, timeout=30)
    assert done.status == "cancelled" and done.result is None
    assert client.wait(behind.id, timeout=30).status == "completed"
    account = router.pool.get("a-pro")
    assert account is not None and account.inflight == {"fast": 0, "relax": 0}
    # The cancelled job is charged what the account says it used, so both views agree.
    ref = router.account_ref("alice", "a-pro")
    sim = SimulatedDriver(router.settings, router.redis)
    assert ref is not None and ref.fast_ms == sim.audit("a-pro")["fast_ms"]
    assert sim.audit("a-pro")["jobs"] == 2


def test_router_stops_cleanly_on_sigterm(
    router: Router, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = spawn("run")
    wait_for(lambda: router.redis.zcard(router.keys.routers) == 1, what="the router to register")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert router.redis.zcard(router.keys.routers) == 0


@pytest.mark.slow
def test_demo_runs_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(  # away from the source tree: the package's own example pool
        [sys.executable, "-m", "router", "demo", "--tasks", "30", "--workers", "3"],
        env={**env, "BYOA_SIM_SPEED": "1000"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "fast_hours_exhausted",
        "no_relax_account",
        "upscale",
        "dave-standard",
        "bob-mega",
        "dead letters: 1",
    ):
        assert expected in out, expected


def test_transient_submit_errors_are_retried_then_fail_with_the_reason(
    client: Client,
    add_account: AddAccount,
    router: Router,
    drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_TRANSIENT_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("BYOA_MAX_RETRIES", "0")  # no second account to try: fail at once
    monkeypatch.setenv("BYOA_SIM__TRANSIENT_FAILURE_RATE", "0.5")
    add_account("a-pro", "alice", "pro")
    # Task ids the simulator refuses on the first try only, and on every try.
    flaky = next(
        f"f{i}"
        for i in range(1000)
        if draw(f"f{i}", "transient-1") < 0.5 <= draw(f"f{i}", "transient-2")
    )
    doomed = next(
        f"d{i}"
        for i in range(10000)
        if all(draw(f"d{i}", f"transient-{n}") < 0.5 for n in range(1, 5))
    )
    for task_id in (flaky, doomed):
        client.submit("alice", "a cat", mode="fast", id=task_id)
    drain()
    assert client.wait(flaky, timeout=10).status == "completed"
    failed = client.wait(doomed, timeout=10)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "driver_error" and "rate limited" in failed.error.message
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_worker_stopped_with_sigterm_leaves_its_running_job_to_other_workers(
    client: Client, add_account: AddAccount, router: Router, spawn: Callable[..., object]
) -> None:
    add_account("a-pro", "alice", "pro")
    worker: subprocess.Popen[bytes] = spawn("worker", BYOA_SIM_SPEED="10")  # type: ignore[assignment]
    task = client.submit("alice", "a cat", mode="fast")  # runs about 5 s
    wait_for(lambda: client.get(task.id).handle is not None, what="the job to be submitted")  # type: ignore[union-attr]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert client.get(task.id).status == "running"  # type: ignore[union-attr]
    assert router.polls.size() == 1  # the job runs on its account, scheduled for polling
    spawn("worker")
    done = client.wait(task.id, timeout=30)
    assert (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert SimulatedDriver(router.settings, router.redis).audit("a-pro")["jobs"] == 1
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_one_worker_process_carries_every_running_job_of_the_pool(
    client: Client, add_account: AddAccount, router: Router, spawn: Callable[..., object]
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=6)
    add_account("a-std", "alice", "standard", fast_limit=3, relax_limit=3)
    spawn("worker", BYOA_SIM_SPEED="30")  # a fast job lasts ~2 s, relax longer
    fast = [client.submit("alice", f"cat {i}", mode="fast").id for i in range(9)]
    relax = [client.submit("alice", f"dog {i}", mode="relax").id for i in range(3)]
    wait_for(terminal(router, fast + relax), timeout=120, what="every task to end")
    sim = SimulatedDriver(router.settings, router.redis)
    assert sim.audit("a-pro")["max_running_fast"] == 6  # all at once, in one process
    assert sim.audit("a-std")["max_running_fast"] == 3
    relax_peaks = [sim.audit(a).get("max_running_relax", 0) for a in ("a-pro", "a-std")]
    assert sum(int(p) for p in relax_peaks) == 3


def test_job_past_its_run_timeout_fails_timeout_and_is_stopped_on_the_account(
    client: Client, add_account: AddAccount, router: Router, spawn: Callable[..., object]
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)
    spawn("worker", BYOA_SIM_SPEED="10", BYOA_RUN_TIMEOUT_SECONDS='{"fast": 0.5}')
    task = client.submit("alice", "slow cat", mode="fast")  # would run about 5 s
    done = client.wait(task.id, timeout=30)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "timeout" and "0.5 s run timeout" in done.error.message
    running = router.redis.zcard(router.keys.sim_running("a-pro", Slot.FAST))
    assert running == 0  # the account no longer runs it
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]


def test_a_settings_file_edited_under_a_running_worker_changes_none_of_its_jobs(
    client: Client,
    add_account: AddAccount,
    router: Router,
    spawn: Callable[..., object],
    tmp_path: Path,
) -> None:
    """Each job used to read the settings again (rq forked a process per job), so a bad
    edit failed every job (and the reaper dispatched it again for ever)."""
    from rq import Worker

    config = tmp_path / "settings.toml"
    config.write_text("max_retries = 2\n")
    add_account("a-pro", "alice", "pro")
    spawn("worker", BYOA_CONFIG=str(config))
    wait_for(lambda: Worker.all(connection=router.redis, queue=router.queue), what="the worker")
    config.write_text("max_retries = -5\n")  # invalid: a process reading it now cannot start
    task = client.submit("alice", "a cat", mode="fast")
    (done,) = wait_for(terminal(router, [task.id]), what="the task to end")
    assert (done.status, done.attempt) == ("completed", 1)


def test_a_worker_stops_reading_its_command_channel_at_once(router: Router) -> None:
    """rq reads a worker's command channel in 60 s waits and redis-py's stop() waits for
    the read in hand: a burst's end or a warm shutdown stalled up to a minute. The worker
    here reads in short waits, so stopping its reader ends within one."""
    worker = Worker([router.queue], connection=router.redis)
    worker.subscribe()
    reader = worker.pubsub_thread
    assert reader is not None
    wait_for(reader.is_alive, 5, "the command reader to run")
    stopping = threading.Thread(target=reader.stop)
    stopping.start()
    stopping.join(10)  # rq's own reader: 60 s
    assert not stopping.is_alive() and not reader.is_alive()
    worker.pubsub.close()
