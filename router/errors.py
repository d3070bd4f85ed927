"""Exceptions that carry a stable error code, for callers and the CLI."""

from __future__ import annotations


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
