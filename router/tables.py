"""Plain-text tables for people: the one table layout every human listing uses, and the
listings of tasks, dead letters and API keys."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from router.apikeys import ApiKey
from router.tasks import Task
from router.terminal import visible
from router.times import iso


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left-aligned plain-text table; a cell's controls and line breaks are escaped
    (`router.terminal`), so none moves the cursor or forges a row."""
    cells = [[str(h) for h in headers]]
    cells += [["" if c is None else visible(str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_tasks(tasks: Sequence[Task]) -> str:
    """Tasks (newest first, as listed) as a table; `mode` is the one it runs in, or the
    one asked for while it has none yet."""
    return table(
        ["task", "owner", "type", "status", "mode", "account", "created"],
        [
            [
                t.id,
                t.owner,
                t.task_type or "-",
                t.status.value,
                (t.effective_mode or t.requested_mode or "-"),
                t.account_id or "-",
                iso(t.created_at, "seconds") if t.created_at else "-",
            ]
            for t in tasks
        ],
    )


RAW_SHOWN = 60
"""Characters of a dead letter's message shown in its table (`--json` has all of it)."""
REASON_SHOWN = 80
"""Characters of a dead letter's reason shown in its table."""


def _clip(value: str, most: int) -> str:
    return value if len(value) <= most else value[: most - 3] + "..."


def dead_letter(raw: str) -> dict[str, Any]:
    """A stored dead letter as shown (`byoa dead-letters`, its `--json` too): its time in
    the one format (letters from before it carry `+00:00`); an entry that is not the JSON
    a router writes is shown whole as its `raw`."""
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        return {"code": None, "message": None, "at": None, "raw": raw}
    at = entry.get("at")
    if isinstance(at, str):
        with contextlib.suppress(ValueError):
            entry["at"] = iso(datetime.fromisoformat(at))
    return entry


def render_dead_letters(entries: Sequence[dict[str, Any]]) -> str:
    """Dead letters (newest first) as a table: when, why, and the start of the message."""
    rows = []
    for e in entries:
        at = e.get("at")
        if isinstance(at, str):
            with contextlib.suppress(ValueError):
                at = iso(datetime.fromisoformat(at), "seconds")
        reason = _clip(str(e.get("message") or ""), REASON_SHOWN)
        rows.append(
            [at or "-", e.get("code") or "-", reason, _clip(str(e.get("raw", "")), RAW_SHOWN)]
        )
    return table(["at", "code", "reason", "message received"], rows)


def render_keys(records: Sequence[ApiKey]) -> str:
    """API keys' records (never the keys) as a table."""
    return table(
        ["key id", "owner", "name", "rate", "created", "state"],
        [
            [
                r.id,
                r.owner,
                r.name or "-",
                f"{r.rate:g}/s" if r.rate is not None else "-",
                iso(r.created_at, "seconds"),
                f"revoked {iso(r.revoked_at, 'seconds')}" if r.revoked_at else "active",
            ]
            for r in records
        ],
    )
