"""What a driver's failure may say (issue 11, defect 5): a foreign exception's text, which
can quote a credential, never leaves a driver, nor reaches a worker's log."""

from __future__ import annotations

import ast
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import router
from router.core import Router
from router.driver import (
    ENTRY_POINTS,
    AccountRef,
    Driver,
    DriverError,
    DriverJob,
    DriverResult,
    TransientError,
    said,
)
from router.models import Mode, Plan, Setting
from workers.jobs import classify, keep_running

CANARY = "canary-31f0c9a2"


class Leaky(Driver):
    """A driver whose library raises with the account's secret in its message."""

    def __init__(self, raised: Exception) -> None:
        self.raised = raised

    def submit(self, account: AccountRef, job: DriverJob) -> str:
        raise self.raised

    def poll(self, handle: str) -> DriverResult | None:
        raise self.raised

    def cancel(self, handle: str) -> int:
        raise self.raised

    def lookup(self, account: AccountRef, key: str, started_ms: int | None = None) -> str | None:
        raise self.raised

    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        raise self.raised


ACCOUNT = AccountRef("a1", "alice", Plan.PRO, 0)
JOB = DriverJob("t1", "imagine", Mode.FAST, "a cat --fast", {})


def test_a_foreign_exception_leaves_a_driver_as_a_driver_error_named_by_class_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = Leaky(ValueError(f"Invalid header value b'{CANARY}\\n'"))
    calls = {
        "submit": (lambda: driver.submit(ACCOUNT, JOB), DriverError),
        "poll": (lambda: driver.poll("h"), TransientError),  # poll again: the job may run
        "cancel": (lambda: driver.cancel("h"), TransientError),
        "lookup": (lambda: driver.lookup(ACCOUNT, "k"), TransientError),  # cannot tell now
        "switch_mode": (lambda: driver.switch_mode(ACCOUNT, Setting.RELAX), DriverError),
    }
    for name, (call, kind) in calls.items():
        with pytest.raises(DriverError) as raised:
            call()
        assert isinstance(raised.value, kind), name
        assert "ValueError" in str(raised.value)
        assert CANARY not in str(raised.value)
        assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert CANARY not in caplog.text


def test_driver_errors_and_a_lost_redis_pass_through_unchanged() -> None:
    own = TransientError("the backend answered HTTP 503")
    with pytest.raises(TransientError) as raised:
        Leaky(own).poll("h")
    assert raised.value is own
    lost = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")
    with pytest.raises(RedisConnectionError):  # workers wait a lost Redis out
        Leaky(lost).submit(ACCOUNT, JOB)


def test_classify_records_and_logs_a_foreign_exception_by_class_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError(f"Invalid header value b'{CANARY}\\n'")
    except ValueError as e:
        outcome, error = classify(e, "alice/t1")
    assert (outcome, error) == ("failed", ("internal_error", "ValueError"))
    assert "ValueError" in caplog.text and "test_driver_boundary.py" in caplog.text
    assert CANARY not in caplog.text
    assert said(ValueError(CANARY)) == "ValueError"
    assert said(DriverError("banned prompt")) == "banned prompt"


def test_a_worker_loop_logs_a_failed_step_by_class_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stop = threading.Event()
    steps = iter([ValueError(CANARY), RedisConnectionError(CANARY)])

    def step() -> float:
        failure = next(steps, None)
        if failure is None:
            stop.set()
            return 0.0
        raise failure

    keep_running(step, stop, "poller", idle=0.0)
    assert "poller failed: ValueError" in caplog.text
    assert "poller lost Redis (ConnectionError)" in caplog.text
    assert CANARY not in caplog.text


def test_a_driver_that_cannot_switch_an_accounts_mode_stops_no_router(
    router: Router, add_account: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """An automatic flip tells the driver; its failure is logged by class, never raised
    into the reaper's or a worker's loop (every prompt carries its mode flag anyway)."""
    add_account("a-pro", "alice", "pro")
    router.__dict__["driver"] = Leaky(ValueError(f"secret {CANARY}"))
    outcome = router.pool.update("a-pro", setting=Setting.RELAX)
    assert outcome.switches == [("alice", "a-pro", Setting.RELAX)]
    router.apply(outcome)  # does not raise
    assert "DriverError" in caplog.text and CANARY not in caplog.text


def test_the_router_owns_the_interface_and_imports_no_driver_by_name() -> None:
    """Drivers sit beneath `router.driver`, loaded by the `driver` setting's entry point:
    no module of the router names one."""
    router_dir = Path(router.__file__).parent
    named = []
    for path in sorted(router_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            named += [f"{path.name}: {m}" for m in modules if m.startswith("workers.drivers")]
    assert named == []
    installed = {e.name for e in entry_points(group=ENTRY_POINTS)}
    assert installed >= {"simulated", "mjproxy"}
