"""Exceptions that carry a stable error code, for callers and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from redis import exceptions as redis_errors

from router.models import ErrorCode

T = TypeVar("T")


class ByoaError(Exception):
    """An error with a stable machine-readable `code` and a human `message`.

    One subclass per failure (rq's `exceptions.py` way), each naming its code as a class
    attribute, so a caller catches by type (`except UnknownAccount`) and reads `e.code`
    for the stable string. `code=` is for an error raised on another's behalf only (a
    rejection whose code the message's check chose)."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(f"{self.code}: {message}")
        self.message = message


class TaskRejected(ByoaError):
    """The task could not be accepted (bad input, or an id another owner uses)."""

    code = ErrorCode.INVALID_TASK


class InvalidTask(TaskRejected):
    code = ErrorCode.INVALID_TASK


class InvalidJson(TaskRejected):
    code = ErrorCode.INVALID_JSON


class UnknownTaskType(TaskRejected):
    code = ErrorCode.UNKNOWN_TASK_TYPE


class PromptTooLong(TaskRejected):
    code = ErrorCode.PROMPT_TOO_LONG


class MessageTooLarge(TaskRejected):
    code = ErrorCode.MESSAGE_TOO_LARGE


class DuplicateId(TaskRejected):
    """The task id belongs to another owner."""

    code = ErrorCode.DUPLICATE_ID


_REJECTIONS: dict[ErrorCode, type[TaskRejected]] = {
    c.code: c
    for c in (
        InvalidTask,
        InvalidJson,
        UnknownTaskType,
        PromptTooLong,
        MessageTooLarge,
        DuplicateId,
    )
}


def rejected(code: ErrorCode, message: str) -> TaskRejected:
    """The TaskRejected subclass for a rejection's code (a message's check chose it)."""
    kind = _REJECTIONS.get(code)
    return kind(message) if kind is not None else TaskRejected(message, code=code)


class AccountError(ByoaError):
    """An account operation was refused (unknown id, id taken, bad file)."""

    code = ErrorCode.INVALID_ACCOUNT


class UnknownAccount(AccountError):
    code = ErrorCode.ACCOUNT_NOT_FOUND


class AccountExists(AccountError):
    """The id is taken (by this owner or another: ids are unique across owners)."""

    code = ErrorCode.ACCOUNT_EXISTS


class AccountBusy(AccountError):
    """The account has jobs in flight, or kept changing under the write: try again later."""

    code = ErrorCode.ACCOUNT_BUSY


class InvalidAccount(AccountError):
    """A value out of its bounds, or a combination the rules forbid."""

    code = ErrorCode.INVALID_ACCOUNT


class InvalidCredentials(InvalidAccount):
    code = ErrorCode.INVALID_CREDENTIALS


class InvalidAccountsFile(AccountError):
    """An accounts file that cannot be read, or holds an account that cannot be loaded."""

    code = ErrorCode.INVALID_ACCOUNTS_FILE


class ApiKeyError(ByoaError):
    """An API-key operation was refused."""

    code = ErrorCode.INVALID_KEY


class InvalidKey(ApiKeyError):
    code = ErrorCode.INVALID_KEY


class UnknownKey(ApiKeyError):
    code = ErrorCode.KEY_NOT_FOUND


class KeyIdCollision(ApiKeyError):
    """A fresh key's random id met an existing one (nothing was overwritten): try again."""

    code = ErrorCode.INTERNAL_ERROR


class UnknownTask(ByoaError):
    code = ErrorCode.TASK_NOT_FOUND


class NothingToCancel(ByoaError):
    """The task has ended already: there is nothing left to cancel."""

    code = ErrorCode.TASK_FINISHED


class WaitTimedOut(ByoaError, TimeoutError):
    """A wait for a task's end gave up; the task goes on (a TimeoutError too)."""

    code = ErrorCode.WAIT_TIMEOUT


class RedisProblem(ByoaError):
    """The configured Redis cannot be used."""

    code = ErrorCode.REDIS_UNREACHABLE


class BadRedisUrl(RedisProblem):
    code = ErrorCode.BAD_REDIS_URL


class RedisUnreachable(RedisProblem):
    code = ErrorCode.REDIS_UNREACHABLE


class NotReplicated(RedisProblem, redis_errors.ConnectionError):
    """Redis took a write but fewer than `redis_min_replicas` replicas acknowledged it
    within `redis_wait_timeout_seconds` (WAIT): a failover now could lose it, so it is not
    reported as done. Retry the same call (the same task id or Idempotency-Key): what was
    written is found again, not written twice. A Redis ConnectionError too, so that every
    path that keeps work in hand through an outage keeps it through this."""

    code = ErrorCode.NOT_REPLICATED

    def __init__(self, message: str, *, outcome: object = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        """What the write decided besides its results (a script's Outcome, or None), for
        the caller to carry out before it retries."""


class PortUnavailable(ByoaError):
    """A port to serve on cannot be bound (another process holds it): the process stops
    at start instead of running without what that port serves."""

    code = ErrorCode.METRICS_PORT_UNAVAILABLE


class MetricsPortUnavailable(PortUnavailable):
    code = ErrorCode.METRICS_PORT_UNAVAILABLE


class ApiPortUnavailable(PortUnavailable):
    code = ErrorCode.API_PORT_UNAVAILABLE


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
