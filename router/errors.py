"""Exceptions that carry a stable error code, for callers and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from redis import exceptions as redis_errors

T = TypeVar("T")


class ByoaError(Exception):
    """An error with a stable machine-readable `code` and a human `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TaskRejected(ByoaError):
    """The task could not be accepted (bad input, or an id another owner uses)."""


class AccountError(ByoaError):
    """An account operation was refused (unknown id, id taken, bad file)."""


class PartialFailure(Exception, Generic[T]):
    """A call made for several owners at once failed for some after the others' part ran.

    `done` is what the call returns for the parts that ran; `failures` maps each owner whose
    part failed to its error. Raised only when some part ran: otherwise the error itself.
    """

    def __init__(self, done: T, failures: Mapping[str, Exception]) -> None:
        reasons = "; ".join(f"{o}: {type(e).__name__}: {e}" for o, e in failures.items())
        super().__init__(f"failed for {len(failures)} owner(s): {reasons}")
        self.done = done
        self.failures = dict(failures)


REDIS_OUTAGES: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.OutOfMemoryError,
    redis_errors.NoPermissionError,
)
"""Errors that say Redis cannot serve now (down, loading, a replica, full, refused by its
ACL): no message's fault, so what is in hand is kept and tried again, never dead-lettered."""
