"""Listing tasks: newest first, of one owner or all, by status and type, paged; the index
forgets tasks whose records expired."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from router.client import Client
from router.core import Router
from router.models import TaskStatus, TaskType
from router.task_list import TaskFilter, TaskList

AddAccount = Callable[..., None]


@pytest.fixture
def listing(router: Router) -> TaskList:
    return TaskList(router.tasks)


def test_tasks_of_every_owner_come_newest_first_and_filter_by_owner_status_and_type(
    client: Client, add_account: AddAccount, listing: TaskList, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    older = client.submit("alice", "one", mode="fast")
    nobody = client.submit("bob", "two")  # bob has no account: failed at once
    newer = client.submit("alice", "three", mode="fast", id="t-three")
    assert router.tasks.start("alice", older.id, older.attempt)[0]
    router.tasks.settle("alice", older.id, older.attempt, "completed", 1)
    child = client.submit("alice", task_type="upscale", parent_id=older.id, input={"index": 1})
    everything = listing.page(TaskFilter())
    assert [t.id for t in everything.tasks] == [child.id, newer.id, nobody.id, older.id]
    assert not everything.more and not everything.truncated
    assert [t.id for t in listing.page(TaskFilter(owner="bob")).tasks] == [nobody.id]
    failed = listing.page(TaskFilter(status=TaskStatus.FAILED)).tasks
    assert [t.id for t in failed] == [nobody.id]
    upscales = listing.page(TaskFilter(owner="alice", task_type=TaskType.UPSCALE)).tasks
    assert [t.id for t in upscales] == [child.id]


def test_pages_follow_one_another_and_say_when_more_are_left(
    client: Client, add_account: AddAccount, listing: TaskList
) -> None:
    add_account("a-pro", "alice", "pro")
    ids = [client.submit("alice", f"cat {i}", id=f"c{i:02d}").id for i in range(7)]
    first = listing.page(TaskFilter(owner="alice"), limit=3)
    second = listing.page(TaskFilter(owner="alice"), limit=3, offset=3)
    last = listing.page(TaskFilter(owner="alice"), limit=3, offset=6)
    assert [t.id for p in (first, second, last) for t in p.tasks] == ids[::-1]
    assert (first.more, second.more, last.more) == (True, True, False)
    with pytest.raises(ValueError, match="limit must be 1 to 1000"):
        listing.page(TaskFilter(), limit=0)


def test_expired_records_leave_the_index_when_met_and_when_tasks_are_submitted(
    client: Client, add_account: AddAccount, listing: TaskList, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    gone = [client.submit("alice", f"old {i}").id for i in range(3)]
    kept = client.submit("alice", "kept").id
    index = router.keys.task_index("alice")
    router.redis.delete(router.keys.task("alice", gone[0]))  # as its TTL would
    assert [t.id for t in listing.page(TaskFilter(owner="alice")).tasks] == [kept, *gone[:0:-1]]
    assert router.redis.zscore(index, gone[0]) is None  # dropped as it was met
    for task_id in gone[1:]:
        router.redis.delete(router.keys.task("alice", task_id))
    client.submit("alice", "new")  # SUBMIT looks at the oldest entries too
    assert {m.decode() for m in router.redis.zrange(index, 0, -1)} >= {kept}
    assert not {m.decode() for m in router.redis.zrange(index, 0, -1)} & set(gone)
