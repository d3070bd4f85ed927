"""Listing tasks newest first, of one owner or of all, filtered by status and type: read
from the owners' task indexes (`Keys.task_index`), a page of records a round trip."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from router.models import TaskStatus, TaskType
from router.scripts import text
from router.tasks import Task, TaskStore

PAGE = 200
"""Index entries read, and records fetched, per round trip."""
MOST_READ = 20_000
"""Index entries one listing reads at most per owner: a filter that matches almost nothing
ends there, said by `TaskPage.truncated`, instead of reading every record the owner has."""
MAX_LIMIT = 1000
"""Most tasks one listing returns."""


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    more: bool
    """More tasks match beyond this page (ask again with `offset` moved on)."""
    truncated: bool = False
    """The reading stopped at MOST_READ entries of an owner: matches may lie beyond."""


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing returns; None: any."""

    owner: str | None = None
    status: TaskStatus | frozenset[TaskStatus] | None = None
    """One status, or any of several (the task API's `failed` is failed or cancelled)."""
    task_type: TaskType | None = None

    def admits(self, task: Task) -> bool:
        status = self.status
        return (
            status is None
            or (task.status is status if isinstance(status, TaskStatus) else task.status in status)
        ) and (self.task_type is None or task.task_type == self.task_type.value)


class TaskList:
    """Reads the owners' task indexes, and the records through the task store."""

    def __init__(self, tasks: TaskStore) -> None:
        self.tasks, self.redis, self.keys = tasks, tasks.redis, tasks.keys

    def owners(self) -> list[str]:
        """Owners that ever submitted a task."""
        return sorted(text(o) for o in self.redis.smembers(self.keys.task_owners))

    def page(self, which: TaskFilter, limit: int = 50, offset: int = 0) -> TaskPage:
        """Up to `limit` matching tasks, newest first, after skipping `offset` matches."""
        if not 0 < limit <= MAX_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, offset 0 or more")
        owners = [which.owner] if which.owner is not None else self.owners()
        want = offset + limit + 1  # one more tells whether there are more
        truncated: list[bool] = []
        streams = [self._matching(o, which, want, truncated) for o in owners]
        newest = heapq.merge(*streams, key=_newest_first)
        found = [t for _, t in zip(range(want), newest, strict=False)]
        return TaskPage(found[offset : offset + limit], len(found) > offset + limit, any(truncated))

    def _matching(
        self, owner: str, which: TaskFilter, want: int, truncated: list[bool]
    ) -> Iterator[Task]:
        """The owner's matching tasks, newest first, at most `want`; entries whose record
        has expired are dropped from the index as they are met."""
        index = self.keys.task_index(owner)
        found = read = 0
        while found < want and read < MOST_READ:
            entries = cast(list[bytes], self.redis.zrevrange(index, read, read + PAGE - 1))
            ids = [text(i) for i in entries]
            if not ids:
                return
            read += len(ids)
            records = self.tasks.get_many([(owner, i) for i in ids])
            gone = [i for i, r in zip(ids, records, strict=True) if r is None]
            if gone:
                self.redis.zrem(index, *gone)
                read -= len(gone)
            for task in records:
                if task is not None and which.admits(task):
                    found += 1
                    yield task
        if found < want and read >= MOST_READ:
            truncated.append(True)


def _newest_first(task: Task) -> float:
    return -task.created_at.timestamp() if task.created_at else 0.0
