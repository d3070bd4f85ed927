"""The submissions one worker process has in flight: many at once, so a backend's latency
(50-500 ms a submission) does not bound the process's rate.

An rq job reserves a thread (waiting while every one is busy), then starts its task
(fenced by its attempt) and hands the submission to that thread, which runs it with the
task's heartbeat: no more than `submit_threads` are ever in flight, and no started task
waits for a thread with a lease nobody renews. What rq guarantees
stays: a warm shutdown waits for the submissions in hand; a process killed meanwhile loses
nothing, as each task's lease then runs out and a router's reaper adopts its job or takes
it back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from router.driver import frames

log = logging.getLogger(__name__)


class Submissions:
    def __init__(self, size: int) -> None:
        self.size = size
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="byoa-submit")
        self._free = threading.BoundedSemaphore(size)
        self._idle = threading.Condition()
        self._in_flight = 0

    def reserve(self) -> None:
        """Wait for a free thread and hold it: done before a task is started, so no task
        waits here with a lease no heartbeat renews."""
        self._free.acquire()
        with self._idle:
            self._in_flight += 1

    def unreserve(self) -> None:
        """Give back a thread reserved for a task that was not to be submitted."""
        self._done()

    def hand(self, submit: Callable[[], object], what: str) -> None:
        """Run `submit` in the thread reserved for it."""
        try:
            self._pool.submit(self._run, submit, what)
        except BaseException:
            self._done()
            raise

    def _run(self, submit: Callable[[], object], what: str) -> None:
        try:
            submit()
        except Exception as e:  # its task's lease runs out: a reaper takes it back
            log.error("submitting %s failed: %s\n%s", what, type(e).__name__, frames(e))
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()
        self._free.release()

    def in_flight(self) -> int:
        with self._idle:
            return self._in_flight

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no submission is in flight; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Finish the submissions in hand (a warm shutdown), then stop the threads."""
        self.wait_idle()
        self._pool.shutdown(wait=True)
