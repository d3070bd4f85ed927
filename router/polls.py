"""The schedule of submitted driver jobs: which one a worker polls next, and when.

A task's record is the truth (status, attempt, driver handle); an entry here only says
when to look at it again: first at the job's expected end, then after waits that double
up to a most (`workers.poller`), or at once when its backend calls back. Entries are
claimed by pushing them ahead (CLAIM_DUE), so a poller that dies mid-batch leaves them to
come due for another worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from router.keys import Keys
from router.scripts import Scripts, text


@dataclass(frozen=True)
class Entry:
    """One submitted attempt at a task, as named in the schedule."""

    owner: str
    task_id: str
    attempt: int

    @property
    def member(self) -> str:
        return f"{self.owner}/{self.task_id}/{self.attempt}"

    @classmethod
    def parse(cls, member: str) -> Entry:
        owner, task_id, attempt = member.split("/")
        return cls(owner, task_id, int(attempt))


@dataclass(frozen=True)
class Claim:
    now_us: int
    """The Redis clock at the claim."""
    next_due_us: int | None
    """When the earliest entry left in the schedule comes due (None: it is empty)."""
    entries: list[Entry]


class Polls:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis, self.keys, self.scripts = redis, keys, scripts

    def add(self, entry: Entry, due_us: int = 0) -> None:
        """Schedule a submitted job (due at once by default); an existing entry is kept."""
        self.redis.zadd(self.keys.polls, {entry.member: due_us}, nx=True)

    def claim(self, limit: int, hold_us: int) -> Claim:
        """Take up to `limit` due entries for `hold_us` (see CLAIM_DUE)."""
        raw = self.scripts.claim_due(keys=[self.keys.polls], args=[limit, hold_us])
        now, head, *members = (text(x) for x in raw)
        due = int(float(head))
        return Claim(int(now), None if due < 0 else due, [Entry.parse(m) for m in members])

    def later(self, entries: Sequence[Entry], due_us: int) -> None:
        """Poll these entries again by `due_us` (only those still scheduled, and never later
        than they are now due: a callback that made one due at once while it was being
        polled is not undone by that poll's rescheduling)."""
        if entries:
            members = {e.member: due_us for e in entries}
            self.redis.zadd(self.keys.polls, members, xx=True, lt=True)

    def reschedule(self, dues: Mapping[Entry, int]) -> None:
        """Poll each entry again by its own due time, as `later` does (only those still
        scheduled, never later than they are now due)."""
        if dues:
            members = {e.member: due for e, due in dues.items()}
            self.redis.zadd(self.keys.polls, members, xx=True, lt=True)

    def done(self, entries: Sequence[Entry]) -> None:
        if entries:
            self.redis.zrem(self.keys.polls, *(e.member for e in entries))

    def size(self) -> int:
        return int(self.redis.zcard(self.keys.polls))
