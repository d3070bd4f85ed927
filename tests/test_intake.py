"""The intake list: any language's JSON messages, bad ones stored or dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from router.core import Router
from router.daemon import IntakeDaemon
from router.models import Slot
from tests.conftest import terminal, wait_for

AddAccount = Callable[..., None]


def push(router: Router, *messages: Any) -> None:
    for m in messages:
        raw = m if isinstance(m, bytes) else json.dumps(m).encode()
        router.redis.lpush(router.keys.intake, raw)


def dead_letters(router: Router) -> list[dict[str, Any]]:
    return [json.loads(x) for x in router.redis.lrange(router.keys.dead_letters, 0, -1)]


def test_documented_message_is_routed_and_dispatched(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        {
            "id": "m1",
            "owner": "alice",
            "task_type": "imagine",
            "input": {"prompt": "a fox --fast", "process_mode": ""},
        },
    )
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    task = router.tasks.get("m1")
    assert task is not None and (task.effective_mode, task.account_id) == ("fast", "a-pro")
    assert router.queue.count == 1
    assert router.redis.llen(router.keys.intake) == 0
    assert router.redis.exists(daemon.processing) == 0


def test_messages_are_taken_oldest_first_in_batches(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)  # one starts, the rest wait in line
    push(
        router,
        *({"id": f"m{i}", "owner": "alice", "input": {"prompt": "x --fast"}} for i in range(450)),
    )
    daemon = IntakeDaemon(router)
    sizes = []
    while batch := daemon.claim():
        sizes.append(len(batch))
        daemon.handle(batch)
    assert sizes == [200, 200, 50]
    line = router.redis.lrange(router.keys.line("alice", Slot.FAST), 0, -1)
    assert [x.decode() for x in line] == [f"m{i}" for i in range(1, 450)]
    assert router.tasks.get("m0").account_id == "a-pro"  # type: ignore[union-attr]


def test_bad_messages_with_a_usable_id_are_stored_as_failed_tasks(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        {"id": "bad-type", "owner": "alice", "task_type": "paint", "input": {"prompt": "x"}},
        {"id": "too-long", "owner": "alice", "input": {"prompt": "x" * 501}},
        {"id": "no-parent", "owner": "alice", "task_type": "upscale"},
        {"id": "bad-mode", "owner": "alice", "input": {"prompt": "x", "process_mode": "warp"}},
        {"id": "extra", "owner": "alice", "input": {}, "colour": "blue"},
        {"id": "orphan", "owner": "alice", "task_type": "pan", "parent_id": "ghost"},
    )
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    expected = {
        "bad-type": "unknown_task_type",
        "too-long": "prompt_too_long",
        "no-parent": "invalid_task",
        "bad-mode": "invalid_task",
        "extra": "invalid_task",
        "orphan": "parent_not_found",
    }
    for task_id, code in expected.items():
        task = router.tasks.get(task_id)
        assert task is not None and task.status == "failed", task_id
        assert task.error is not None and task.error.code == code, task_id
        assert task.error.message
    assert dead_letters(router) == []


def test_messages_without_a_usable_id_go_to_dead_letters_with_the_reason(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        b"{not json",
        b"\xff\xfe",
        [1, 2, 3],
        {"owner": "alice", "task_type": "paint"},
        {"id": "bad:id", "owner": "alice"},
        b"x" * (router.settings.max_message_bytes + 1),
        {"id": "fine", "owner": "alice", "input": {"prompt": "ok"}},
    )
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    codes = sorted(d["code"] for d in dead_letters(router))
    assert codes == sorted(
        [
            "invalid_json",
            "invalid_json",
            "invalid_task",
            "unknown_task_type",
            "invalid_task",
            "message_too_large",
        ]
    )
    assert all(d["message"] and "at" in d for d in dead_letters(router))
    assert any(d["raw"] == "{not json" for d in dead_letters(router))
    assert router.tasks.get("fine") is not None


def test_id_of_another_owner_is_dead_lettered_not_overwritten(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    add_account("b-pro", "bob", "pro")
    push(router, {"id": "shared", "owner": "alice", "input": {"prompt": "alice's"}})
    push(router, {"id": "shared", "owner": "bob", "input": {"prompt": "bob's"}})
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    task = router.tasks.get("shared")
    assert task is not None and task.owner == "alice" and task.prompt == "alice's --relax"
    assert [d["code"] for d in dead_letters(router)] == ["duplicate_id"]


def test_resubmitting_the_same_message_is_idempotent(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    message = {"id": "once", "owner": "alice", "input": {"prompt": "x", "process_mode": "fast"}}
    push(router, message, message, message)
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    assert router.queue.count == 1


def test_daemon_keeps_running_through_bad_input(
    router: Router, add_account: AddAccount, spawn: Callable[..., object]
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("run")
    spawn("worker")
    push(
        router,
        b"garbage",
        {"owner": 5},
        {"id": "ok-1", "owner": "alice", "input": {"prompt": "a fox --fast"}},
    )
    push(
        router,
        {"id": "ok-2", "owner": "alice", "input": {"prompt": "a fox", "process_mode": "turbo"}},
    )
    done = wait_for(terminal(router, ["ok-1", "ok-2"]), timeout=60, what="tasks after bad input")
    assert [t.status for t in done] == ["completed", "completed"]
    assert len(dead_letters(router)) == 2
