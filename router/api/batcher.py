"""Every request's Redis work, done by one thread in batches.

A request hands its work to the batcher and awaits the answer; the batcher's thread takes
everything waiting, checks all its keys in one round trip, runs each request's work, and
routes every task those requests submit together in one `Router.submit_many` (claim ids,
one SUBMIT per owner, one rq transaction), then reads them back in one round trip. So a
process under load pays Redis round trips per batch, not per request, and two threads (the
event loop and this one) share the interpreter instead of dozens taking turns.

A work function returns its answer, or a `Submission`: the task to route and how to
answer once it is stored, and the `Idempotency-Key` that names it, if any (the batch's
keys are checked in one round trip before routing; `router.api.idempotency`). An
exception answers its own request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.api import idempotency
from router.api.envelope import ApiError
from router.api.idempotency import Named
from router.apikeys import ApiKey, ApiKeys, AuthFailure
from router.core import Router
from router.errors import REDIS_OUTAGES, PartialFailure
from router.models import ErrorCode
from router.requests import NewTask
from router.tasks import Task

if TYPE_CHECKING:
    from starlette.responses import Response

log = logging.getLogger(__name__)

MAX_BATCH = 256
"""Requests taken together at most: a batch's answers wait for its slowest part."""


@dataclass(frozen=True)
class Submission:
    """A task a request routes, and its answer once the task is stored."""

    task: NewTask
    answer: Callable[[Task], Response]
    named: Named | None = None
    """The caller's `Idempotency-Key` for it (`task.id` is the id the key gives)."""


@dataclass
class Item:
    """One request's work, waiting for the batcher's thread."""

    presented: str | None
    """The API key the request presented."""
    check: Callable[[ApiKey | AuthFailure, float], ApiKey]
    """The key's verdict: its record, or the ApiError (401, 429...) it answers."""
    work: Callable[[ApiKey], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


class Batcher:
    """Runs requests' work on one thread, many requests a batch (see the module)."""

    def __init__(
        self,
        router: Router,
        api_keys: ApiKeys,
        observe: Callable[[int], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.router = router
        self.api_keys = api_keys
        self.observe = observe
        """Told each batch's size (a metric)."""
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(
        self,
        presented: str | None,
        check: Callable[[ApiKey | AuthFailure, float], ApiKey],
        work: Callable[[ApiKey], Any],
    ) -> Any:
        """`work(key record)` once `check` passes the key; its answer, or its exception."""
        loop = asyncio.get_running_loop()
        item = Item(presented, check, work, loop, loop.create_future())
        self._queue.put(item)
        if self._thread is None:
            self._start()
        return await item.future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="byoa-api-redis")
                self._thread.daemon = True  # uvicorn drains requests before the process ends
                self._thread.start()

    def _serve(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self.observe is not None:
                self.observe(len(items))
            try:
                self.batch(items)
            except Exception as e:  # an outage, or reading back: answers what is left
                for item in items:
                    if item.error is None and item.result is None:
                        item.error = e
            self._answer(items)

    def batch(self, items: Sequence[Item]) -> None:
        """Check the keys, run the work, route what it submits: results on the items.

        A Redis outage ends the batch at once (its other items answer 503 now rather than
        each after its own timeout); any other error answers only the item it came from.
        """
        submissions: list[tuple[Item, Submission]] = []
        for item, (verdict, wait) in zip(items, self._keys(items), strict=True):
            try:
                if isinstance(verdict, Exception):
                    raise verdict
                result = item.work(item.check(verdict, wait))
            except REDIS_OUTAGES:
                raise
            except Exception as e:
                item.error = e
                continue
            if isinstance(result, Submission):
                submissions.append((item, result))
            else:
                item.result = result
        submissions = self._first_uses(submissions)
        if submissions:
            self._submit(submissions)

    def _first_uses(
        self, submissions: Sequence[tuple[Item, Submission]]
    ) -> list[tuple[Item, Submission]]:
        """The submissions to route: those without an Idempotency-Key, and those whose key
        names their own request (one round trip for the batch); a key another request used
        first answers 422."""
        named = [(k, s.named) for k, (_, s) in enumerate(submissions) if s.named is not None]
        if not named:
            return list(submissions)
        verdicts = idempotency.first_uses(self.router.redis, [n for _, n in named])
        refused = {k for (k, _), ours in zip(named, verdicts, strict=True) if not ours}
        for k in refused:
            submissions[k][0].error = idempotency.reused()
        return [s for k, s in enumerate(submissions) if k not in refused]

    def _keys(self, items: Sequence[Item]) -> list[tuple[ApiKey | AuthFailure | Exception, float]]:
        """Each item's key verdict and rate-limit wait: the batch's in two round trips, or,
        if that fails other than by an outage (a bad key record), each key's on its own."""
        keys = self.api_keys
        try:
            found = keys.authenticate_many([i.presented for i in items])
            return list(zip(found, keys.allow_many(found), strict=True))
        except REDIS_OUTAGES:
            raise
        except Exception:
            pass
        verdicts: list[tuple[ApiKey | AuthFailure | Exception, float]] = []
        for item in items:
            try:
                verdict = keys.authenticate(item.presented)
                verdicts.append((verdict, keys.allow_many([verdict])[0]))
            except REDIS_OUTAGES:
                raise
            except Exception as e:
                verdicts.append((e, 0.0))
        return verdicts

    def _submit(self, submissions: Sequence[tuple[Item, Submission]]) -> None:
        """Route the batch's tasks together, read them back together, answer each.

        If an owner's SUBMIT fails (not an outage), that owner's requests of the batch get
        the error, never a retry: a script that failed half way may have left a task it
        would then take for a duplicate. The other owners' tasks were routed; they answer
        as usual.
        """
        router = self.router
        tasks = [s.task for _, s in submissions]
        failed: dict[str, Exception] = {}
        try:
            router.submit_many(tasks)
        except REDIS_OUTAGES:
            raise
        except PartialFailure as e:
            log.warning("submitting for %d owner(s) failed", len(e.failures))
            failed = e.failures
            router.apply(e.done[1])  # what the others' calls placed is dispatched now
        except Exception as e:
            log.warning("submitting failed: %s", type(e).__name__)
            failed = {t.owner: e for t in tasks}
        records = router.tasks.get_many([(t.owner, t.id) for t in tasks])
        for (item, submission), record in zip(submissions, records, strict=True):
            task = submission.task
            try:
                if task.owner in failed:
                    raise failed[task.owner]
                if record is None:  # its id is another owner's, or (absurdly short TTL) expired
                    if router.tasks.owner_of(task.id) not in (None, task.owner):
                        message = f"task id {task.id} belongs to another owner"
                        raise ApiError(409, ErrorCode.DUPLICATE_ID, message)
                    raise ApiError(503, "unavailable", "the task was stored but cannot be read")
                item.result = submission.answer(record)
            except Exception as e:
                item.error = e

    @staticmethod
    def _answer(items: Sequence[Item]) -> None:
        """Hand each item's result to its request, one call into each event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Item]] = defaultdict(list)
        for item in items:
            by_loop[item.loop].append(item)
        for loop, mine in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these
                loop.call_soon_threadsafe(_settle, mine)


def _settle(items: Sequence[Item]) -> None:
    for item in items:
        if item.future.done():  # the request was cancelled (its client went away)
            continue
        if item.error is not None:
            item.future.set_exception(item.error)
        else:
            item.future.set_result(item.result)
