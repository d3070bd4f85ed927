"""One time format in everything the product shows or answers: ISO 8601 in UTC with a
`Z` (as task records' JSON has it), never epoch microseconds nor the host's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(at: datetime, timespec: str = "auto") -> str:
    """`at` in UTC as ISO 8601 (`2026-12-01T08:30:00Z`); `timespec` as `isoformat`'s
    (`seconds` for a table people read)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_us(us: int | None) -> str | None:
    """Stored epoch microseconds as `iso` says; None for none (0 is how scripts store
    "no date")."""
    if not us:
        return None
    return iso(EPOCH + timedelta(microseconds=us))  # exact: no float on the way


def now_iso() -> str:
    return iso(datetime.now(UTC))
