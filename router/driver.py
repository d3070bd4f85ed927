"""The account driver interface: submit a job, poll it by handle, switch the account's mode.

The router owns it; implementations live beneath it (`workers.drivers`), registered as
entry points of the group `byoa.drivers` and loaded by the `driver` setting's name
(`make_driver`), so the router never imports one by name.

Submission is split from completion: `submit` returns a handle that any worker process can
`poll` later, so one process carries many running jobs and a worker's death loses nothing.

The interface is also a boundary for what may be said of a failure. A driver holds the
account's credentials, and an exception raised by a library it calls may quote them (with a
secret that ends in a newline, http.client raises `ValueError: Invalid header value
b'<secret>\\n'`). So every driver's public methods are wrapped when the driver class is
defined: an exception the driver did not raise itself (not a DriverError, nor a lost Redis,
which callers wait out) leaves as a DriverError whose message we wrote and which names the
foreign exception by its class only. Callers log and record DriverError messages and, for
anything else, the class name (`said`) and where it was raised (`frames`), never its text.
"""

from __future__ import annotations

import abc
import functools
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import SecretStr
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.timeouts import JobTimeoutException

from router.models import Mode, Plan, Setting
from router.settings import Settings

ENTRY_POINTS = "byoa.drivers"
"""The entry-point group under which drivers are registered, by the names the `driver`
setting takes (pyproject.toml: `simulated`, `mjproxy`)."""


@dataclass(frozen=True)
class AccountRef:
    """The account a job runs on, as a driver sees it."""

    id: str
    owner: str
    plan: Plan
    fast_ms: int
    """The router's view of fast time left (a simulator seeds its own balance from it)."""
    credentials: SecretStr | None = field(default=None, repr=False)
    backend_url: str | None = None
    """Base URL of the account's backend, for drivers that call one over HTTP."""
    backend_server: str | None = None
    """Which server that backend is, where the operator said (a driver may ask it)."""
    setting: Setting = Setting.FAST
    """The account's own mode setting as the router holds it: relax once it flipped (rule
    4) or an operator set it (rule 3). A driver whose backend runs a job in the account's
    Midjourney mode, not the job's, reads it to tell whether a relax job would run relax."""
    flipped: bool = False
    """The setting is relax because the router flipped it by its own reckoning of fast
    hours (rule 4), not because an operator set it: the account's Midjourney mode may
    still be fast (a backend whose driver cannot switch it)."""


@dataclass(frozen=True)
class DriverJob:
    """One task to run on an account, in exactly one mode."""

    task_id: str
    task_type: str
    mode: Mode
    prompt: str | None
    """Carries exactly one mode flag, `mode` (children without a prompt: None)."""
    input: dict[str, Any]
    parent_result: dict[str, Any] | None = None
    key: str = ""
    """Unique per attempt at a task: a backend that takes a client reference stores it, so
    `lookup` can find a job whose submitter died before recording its handle."""
    notify_url: str | None = None
    """Where the backend may POST when the job changes (`router.callbacks`): a hint that
    makes the job's next poll due at once, never trusted. None: the job is only polled."""


@dataclass(frozen=True)
class DriverResult:
    gpu_ms: int
    """GPU time the job used, at the fast rate (turbo is charged twice by the router)."""
    output: dict[str, Any]
    mode: Mode | None = None
    """The mode the backend says the job ran in, where it says (None: it does not). When
    it differs from the mode the job was sent in, the router records the mismatch and
    charges the account for what really ran."""


@dataclass(frozen=True)
class BackendAccount:
    """What a backend says about an account, where it says anything (None: not told)."""

    fast_ms: int | None = None
    """Fast time left by the backend's reckoning."""
    exhausted: bool | None = None
    """True when the backend says the account has no fast time left."""
    setting: Setting | None = None
    """The mode the backend runs the account's new jobs in."""
    source: str = ""
    """Where it was read (an endpoint), for logs and the account record."""


class DriverError(Exception):
    """The account could not run the job; the task fails with `driver_error`."""


class OutOfFastHours(DriverError):
    """The account has no fast time: flip it to relax and route the task again."""


class AccountNeedsAttention(DriverError):
    """Banned, captcha, moderation notice: the account must leave rotation."""


class TransientError(DriverError):
    """A passing failure (network, rate limit): the same job may succeed later."""


class RetryableFailure(DriverError):
    """The job ended failed for a passing reason (the backend's queue, a timeout on its
    side, an instance restarting): the task is routed again while it has retries left, and
    the account is counted a transient failure, never taken out of rotation for it."""


class ModeUnsupported(DriverError):
    """Raised by `submit`: the backend would not run the job in the mode the router chose
    (it picks a child's mode itself): the task fails `mode_unsupported`, never sent to
    run in another mode."""


class UnknownJob(DriverError):
    """The backend has no job with this handle (never submitted, or long expired)."""


class AccountRefused(TransientError):
    """Raised by `poll` or `cancel`: the backend refused the account's credentials (or its
    access) when asked about a submitted job. This call failed, not the job, which may run
    on: it is followed until it reports an end (or overruns its run timeout), and the
    account is taken out of rotation meanwhile (it gets no new work)."""


class CannotCancel(DriverError):
    """Raised by `cancel`: the backend cannot stop the job (no cancel endpoint, or one it
    refuses); it runs on and still holds its slot. `gpu_ms`: its run so far."""

    def __init__(self, message: str, gpu_ms: int = 0) -> None:
        super().__init__(message)
        self.gpu_ms = gpu_ms


class CancelUnsupported(CannotCancel):
    """Raised by `cancel`: the backend has no way to cancel a job at all (`cancel_unsupported`
    on the task): it runs to its end and is charged."""


class SubmitOutcomeUnknown(DriverError):
    """Raised by `submit`: the request failed after it may have reached the backend (a
    timeout or reset once it was sent, a 5xx), and no job was found under its key yet. It is
    never submitted again within the attempt: the task stays running without a handle until
    its lease expires, and a reaper then looks the job up by its key (adopts it if found,
    runs the task again only once the backend surely has no such job)."""


log = logging.getLogger(__name__)

PASSED_THROUGH = (DriverError, RedisConnectionError, RedisTimeoutError, JobTimeoutException)
"""What leaves a driver as it was raised: its own errors, a lost Redis (whose text names
host and port, never a password), which callers wait out, and rq's job timeout, which
ends the rq job (its tasks' leases then run out for a reaper)."""
FOREIGN_AS: dict[str, type[DriverError]] = {
    "submit": DriverError,  # the task fails: a retry could run the job twice
    "switch_mode": DriverError,
    "poll": TransientError,  # this poll failed, not the job: poll again
    "poll_many": TransientError,  # the batch failed: each job is polled alone
    "cancel": TransientError,
    "lookup": TransientError,  # cannot tell now: ask again later
    "account_state": TransientError,  # not told now: the router's reckoning stands
}
"""The driver error a foreign exception becomes, per driver method."""


def said(e: BaseException) -> str:
    """An exception as a log, a task record or a dead letter may show it: a DriverError's
    message (drivers build it from their own words and the backend's answers), else the
    class name alone (the text of a foreign exception may quote a credential)."""
    return str(e) if isinstance(e, DriverError) else type(e).__name__


def frames(e: BaseException) -> str:
    """Where an exception was raised (file, line, function, source line), without its
    message or the values it carried: safe to log."""
    return "".join(traceback.format_tb(e.__traceback__)).rstrip()


def _guarded(method: Callable[..., Any], name: str, error: type[DriverError]) -> Any:
    """`method` with any foreign exception turned into `error`, named by its class only."""

    @functools.wraps(method)
    def guarded(self: Driver, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except PASSED_THROUGH:
            raise
        except Exception as e:
            foreign = type(e).__name__
            log.warning("driver %s failed with %s\n%s", name, foreign, frames(e))
        # Raised outside the handler, so the foreign exception is not even its __context__.
        raise error(f"the driver could not {name.replace('_', ' ')} ({foreign})")

    guarded.__byoa_guarded__ = True  # type: ignore[attr-defined]
    return guarded


class Driver(abc.ABC):
    """One backend's way of running jobs on an account.

    Subclasses' `submit`, `poll`, `cancel`, `lookup` and `switch_mode` are guarded when the
    class is defined (see the module's docstring): whatever they raise is a DriverError or
    a lost Redis.
    """

    calls_back = False
    """Whether the backend POSTs to a job's `DriverJob.notify_url` when the job changes:
    its polls are then only the safety net (`callback_poll_interval_seconds`)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        """Every driver is made from the settings and the process's Redis (`make_driver`)."""
        self.settings, self.redis = settings, redis

    def expected_seconds(self, job: DriverJob) -> float | None:
        """How long the job is expected to run on its account, wall time, where the
        backend's pace is known: its first poll is then due at its expected end, not at
        once. None (this default): not known, polled from its submission on. Asks nothing
        of the backend."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, error in FOREIGN_AS.items():
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__byoa_guarded__", False):
                setattr(cls, name, _guarded(method, name, error))

    @abc.abstractmethod
    def submit(self, account: AccountRef, job: DriverJob) -> str:
        """Start the job on the account; return a handle that any process can `poll`."""

    @abc.abstractmethod
    def poll(self, handle: str) -> DriverResult | None:
        """The job's result if it has finished, else None. Raises DriverError on failure
        (TransientError if only this poll failed: the job may still be running; its
        subclass AccountRefused if the backend refused the account: the job may still be
        running, the account must take no new work)."""

    def poll_many(self, handles: Sequence[str]) -> dict[str, DriverResult | DriverError | None]:
        """What `poll` would say of each job, asked in as few calls as the backend allows
        (many jobs per request): a result, None (still running), or the DriverError `poll`
        would raise. A handle left out is polled alone. This default asks nothing."""
        return {}

    @abc.abstractmethod
    def cancel(self, handle: str) -> int:
        """Stop the job if the backend can (cancelled tasks, run timeouts); idempotent.
        Returns the GPU ms (fast rate) it used, which the account is charged, once the job
        has stopped. Raises CannotCancel if it runs on (the backend cannot stop it), or
        another DriverError (TransientError: ask again later)."""

    def lookup(self, account: AccountRef, key: str, started_ms: int | None = None) -> str | None:
        """The handle of the job submitted with `key`; None only when the backend has been
        asked and surely has no such job; raises DriverError when it cannot tell now.

        Lets a reaper adopt a job whose submitter died after submitting it but before
        recording its handle, rather than run the task a second time: only None lets the
        task run again. `started_ms` (ms since the epoch), when the attempt started, lets a
        backend that lists only its latest jobs tell "absent" from "listed no more".
        This default backend keeps no reference to look up: it can never tell.
        """
        raise DriverError("this backend cannot look a job up by its key")

    def account_state(self, account: AccountRef) -> BackendAccount | None:
        """What the backend says about the account's fast time and mode; None where it
        says nothing (this default). Raises DriverError when it cannot be asked now."""
        return None

    @abc.abstractmethod
    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        """Set the account's own mode (Midjourney's /fast or /relax)."""


def make_driver(settings: Settings, redis: Redis) -> Driver:
    """The driver the `driver` setting names, from the `byoa.drivers` entry points."""
    found = entry_points(group=ENTRY_POINTS, name=settings.driver)
    if not found:
        known = ", ".join(sorted(e.name for e in entry_points(group=ENTRY_POINTS)))
        raise ValueError(f"no driver {settings.driver!r} is installed (installed: {known})")
    driver_class = next(iter(found)).load()
    if not (isinstance(driver_class, type) and issubclass(driver_class, Driver)):
        raise TypeError(f"the {settings.driver!r} entry point is not a Driver class")
    driver: Driver = driver_class(settings, redis)
    return driver
