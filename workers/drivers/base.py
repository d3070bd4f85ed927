"""The account driver interface: submit a job, poll it by handle, switch the account's mode.

Submission is split from completion: `submit` returns a handle that any worker process can
`poll` later, so one process carries many running jobs and a worker's death loses nothing.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from router.models import Mode, Plan, Setting


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


@dataclass(frozen=True)
class DriverResult:
    gpu_ms: int
    """GPU time the job used, at the fast rate (turbo is charged twice by the router)."""
    output: dict[str, Any]


class DriverError(Exception):
    """The account could not run the job; the task fails with `driver_error`."""


class OutOfFastHours(DriverError):
    """The account has no fast time: flip it to relax and route the task again."""


class AccountNeedsAttention(DriverError):
    """Banned, captcha, moderation notice: the account must leave rotation."""


class TransientError(DriverError):
    """A passing failure (network, rate limit): the same job may succeed later."""


class UnknownJob(DriverError):
    """The backend has no job with this handle (never submitted, or long expired)."""


class Driver(abc.ABC):
    """One backend's way of running jobs on an account."""

    @abc.abstractmethod
    def submit(self, account: AccountRef, job: DriverJob) -> str:
        """Start the job on the account; return a handle that any process can `poll`."""

    @abc.abstractmethod
    def poll(self, handle: str) -> DriverResult | None:
        """The job's result if it has finished, else None. Raises DriverError on failure
        (TransientError if only this poll failed: the job may still be running)."""

    @abc.abstractmethod
    def cancel(self, handle: str) -> int:
        """Stop the job if the backend can (cancelled tasks, run timeouts); idempotent.
        Returns the GPU ms (fast rate) it used, which the account is charged."""

    def lookup(self, account: AccountRef, key: str) -> str | None:
        """The handle of a job submitted with `key`, if the backend can tell; else None.

        Lets a reaper adopt a job whose submitter died after submitting it but before
        recording its handle, rather than run the task a second time.
        """
        return None

    @abc.abstractmethod
    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        """Set the account's own mode (Midjourney's /fast or /relax)."""
