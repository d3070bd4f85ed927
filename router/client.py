"""The Python client: submit, get, wait, cancel.

`submit` routes in the caller's process with the same atomic scripts the daemon uses, so
it returns the stored record at once (failed with its error code if it cannot run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis

from router import replicas
from router.core import Router
from router.errors import NotReplicated, WaitTimedOut, rejected
from router.models import Mode, TaskType
from router.requests import Rejection, check_message
from router.scripts import text_hash
from router.settings import Settings
from router.tasks import Task
from router.webhooks import Webhook

PROGRESS_SECONDS = 0.25
"""How often `wait` looks at a task whose progress it reports (a start sends no message)."""


class Client:
    """Talks to the router's Redis; safe to use from many processes at once."""

    def __init__(self, settings: Settings | None = None, redis: Redis | None = None) -> None:
        self.router = Router(settings or Settings(), redis)

    def submit(
        self,
        owner: str,
        prompt: str = "",
        *,
        task_type: TaskType | str = TaskType.IMAGINE,
        mode: Mode | str | None = None,
        parent_id: str | None = None,
        id: str | None = None,
        input: dict[str, Any] | None = None,
        webhook: Webhook | Mapping[str, Any] | None = None,
    ) -> Task:
        """Submit a task; with `id`, a retry returns the task already stored. `webhook`
        (`endpoint`, `secret`, `progress`) is POSTed the task's record when it ends.

        Raises TaskRejected (code `invalid_task`, `unknown_task_type`, `prompt_too_long`,
        `duplicate_id`) for input that cannot become a task, including values JSON cannot
        carry (lone surrogates, NaN or infinite numbers, nesting deeper than 32 levels).
        """
        message: dict[str, Any] = {
            "owner": owner,
            "task_type": str(task_type),
            "input": {**(input or {}), "prompt": prompt, "process_mode": mode or ""},
        }
        if id is not None:
            message["id"] = id
        if parent_id is not None:
            message["parent_id"] = parent_id
        if webhook is not None:
            message["webhook"] = webhook
        checked = check_message(message, self.router.settings)
        if isinstance(checked, Rejection):
            raise rejected(checked.code, checked.message)
        _, clashes = self.router.submit_many([checked])
        if clashes:
            raise rejected(clashes[0].code, clashes[0].message)
        task = self.router.tasks.get(checked.id, owner)
        assert task is not None
        return task

    def get(self, task_id: str) -> Task | None:
        """The task's record, or None if there is no such task (or it has expired)."""
        return self.router.tasks.get(task_id)

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        progress: Callable[[Task], None] | None = None,
    ) -> Task:
        """Block until the task is terminal; WaitTimedOut (a TimeoutError) after `timeout`
        seconds. `progress` is called with the record each time its status, mode or
        account changes (the first record read and the last included), looked at every
        PROGRESS_SECONDS.

        A task still in the intake list (not yet read by a router) is waited for too. With
        `redis_min_replicas`, a terminal state is returned (and shown to `progress`) only
        once the replicas have it, so a failover cannot take back an end `wait` returned.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        step = PROGRESS_SECONDS if progress is not None else 1.0
        pubsub = self.router.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.router.keys.done_channel(task_id))
        seen: tuple[object, ...] | None = None
        try:
            while True:
                task, unsure = self.get(task_id), False
                if task is not None and task.status.terminal:
                    durable = self._durable(task)
                    task, unsure = durable or task, durable is None
                if progress is not None and task is not None and not unsure:
                    now = (task.status, task.effective_mode, task.account_id)
                    if now != seen:
                        seen = now
                        progress(task)
                if task is not None and task.status.terminal and not unsure:
                    return task
                left = step if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    state = task.status.value if task else "not yet routed"
                    if unsure:
                        state += ", its end not yet acknowledged by the replicas"
                    raise WaitTimedOut(f"task {task_id} is still {state}")
                pubsub.get_message(timeout=min(left, step))
        finally:
            pubsub.close()

    def _durable(self, task: Task) -> Task | None:
        """The record of a task seen ended, read again once the replicas have it (None:
        not yet, `redis_min_replicas`): a terminal state a failover could still take back
        is never returned, so no caller sees a task end twice."""
        router = self.router
        if not replicas.wanted(router.settings):
            return task
        key = router.keys.task(task.owner, task.id)
        try:
            (raw,) = replicas.read_durably(
                router.redis, router.keys, router.settings, lambda p: p.hgetall(key), task.id
            )
        except NotReplicated:
            return None
        return Task.from_hash(text_hash(raw)) if raw else None

    def cancel(self, task_id: str) -> Task | None:
        """Cancel a task; returns its record (None if there is no such task)."""
        return self.router.cancel(task_id)
