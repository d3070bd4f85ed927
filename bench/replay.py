"""Replaying a trace through a router in virtual time: what a worker and the reaper would
do, at once, event by event (`bench.scheduling` measures what came of it)."""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.traces import US, Arrival, Trace
from router.accounts import epoch_us, next_renewal
from router.core import Router
from router.driver import OutOfFastHours
from router.models import TaskType
from router.requests import Rejection, check_message
from router.scripts import Outcome, text
from router.settings import Settings
from workers.jobs import driver_job


@dataclass
class Run:
    """One strategy's pass over a trace, event by event in virtual time."""

    router: Router
    trace: Trace
    events: list[tuple[int, int, str, tuple[Any, ...]]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)
    empty: dict[str, list[list[float]]] = field(default_factory=lambda: defaultdict(list))
    """Per owner, the intervals [from, to] in which no account of it could run fast."""
    forfeited_ms: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Per owner, fast ms left on accounts just before their renewals."""
    children: dict[str, float] = field(default_factory=dict)

    def at(self, t_us: int, kind: str, *data: Any) -> None:
        heapq.heappush(self.events, (t_us, next(self.seq), kind, data))

    def run(self) -> None:
        settings, trace = self.router.settings, self.trace
        for spec in trace.accounts:  # renewals first: at the same instant, before any job
            if spec.renews_at is None:
                continue
            at = next_renewal(epoch_us(spec.renews_at), trace.start_us - 1)
            while at <= trace.horizon_us:
                self.at(at - 1, "observe", spec.owner, spec.id)
                self.at(at, "renew", spec.owner, spec.id)
                at = next_renewal(at, at)
        for a in trace.arrivals:
            self.at(a.at_us, "arrive", a)
        while self.events:
            t, _, kind, data = heapq.heappop(self.events)
            self.router.redis.set(self.router.keys.clock, t)
            if kind == "arrive":
                owner = self._arrive(data[0], settings)
            elif kind == "child":
                owner = self._child(data[0], data[1], settings)
            elif kind == "observe":
                owner = self._observe(*data)
            elif kind == "renew":
                owner = self._renew(*data)
            else:
                owner = self._end(*data)
            self._watch(owner, t)

    def _watch(self, owner: str, t: int) -> None:
        """Note when the owner has no account left that can run fast, and when it has again;
        wake the owner if one of its timers is due (as the reaper does, here after each
        event of the owner rather than every second)."""
        router = self.router
        pipe = router.redis.pipeline(transaction=False)
        pipe.zrangebyscore(router.keys.timers(owner), "-inf", t, start=0, num=1)
        pipe.scard(router.keys.fastcap(owner))
        due, fastcap = pipe.execute()
        if due:
            self._carry_out(router.tasks.wake(owner))
            fastcap = router.redis.scard(router.keys.fastcap(owner))
        can = fastcap > 0
        spans = self.empty[owner]
        if not can and (not spans or spans[-1][1] != float("inf")):
            spans.append([t, float("inf")])
        elif can and spans and spans[-1][1] == float("inf"):
            spans[-1][1] = t

    def had_fast(self, owner: str, t: int) -> bool:
        return not any(a <= t <= b for a, b in self.empty.get(owner, []))

    def _observe(self, owner: str, account_id: str) -> str:
        raw = self.router.redis.hget(self.router.keys.account(owner, account_id), "fast_ms")
        self.forfeited_ms[owner] += max(0, int(raw or 0))
        return owner

    def _renew(self, owner: str, account_id: str) -> str:
        """The reaper's wake-up at a renewal date; the account itself renews too."""
        router = self.router
        outcome = router.tasks.wake(owner)
        raw = router.redis.hget(router.keys.account(owner, account_id), "fast_ms")
        router.driver.set_fast_ms(account_id, int(raw or 0))  # type: ignore[attr-defined]
        self._carry_out(outcome)
        return owner

    def _submit(self, message: dict[str, Any], settings: Settings) -> None:
        task = check_message(message, settings)
        assert not isinstance(task, Rejection), task
        _, outcome = self.router.tasks.submit_many([task])
        self._carry_out(outcome)

    def _arrive(self, a: Arrival, settings: Settings) -> str:
        prompt = f"a lighthouse at dusk --{a.mode.value}" if a.in_prompt else "a lighthouse"
        inp: dict[str, Any] = {"prompt": prompt}
        if not a.in_prompt:
            inp["process_mode"] = a.mode.value
        if a.upscale_after is not None:
            self.children[a.task_id] = a.upscale_after
        self._submit({"id": a.task_id, "owner": a.owner, "input": inp}, settings)
        return a.owner

    def _child(self, owner: str, parent: str, settings: Settings) -> str:
        message = {"id": f"{parent}-u", "owner": owner, "task_type": TaskType.UPSCALE.value,
                   "parent_id": parent, "input": {"index": 1}}  # fmt: skip
        self._submit(message, settings)
        return owner

    def _carry_out(self, outcome: Outcome) -> None:
        """What a worker would do with placed tasks, at once: start and submit them."""
        router = self.router
        for owner, account_id, setting in outcome.switches:
            ref = router.account_ref(owner, account_id)
            if ref is not None:
                router.driver.switch_mode(ref, setting)
        for p in outcome.placed:
            ok, _, started = router.tasks.start(p.owner, p.task_id, p.attempt)
            self._carry_out(started)
            if ok:
                self._run_job(p.owner, p.task_id, p.attempt)

    def _run_job(self, owner: str, task_id: str, attempt: int) -> None:
        router = self.router
        account, job = driver_job(router, owner, task_id, attempt)  # as a worker builds it
        try:
            handle = router.driver.submit(account, job)
        except OutOfFastHours:
            _, out = router.tasks.settle(owner, task_id, attempt, "out_of_fast", 0, None, None)
            self._carry_out(out)
            return
        ends = router.redis.hget(router.keys.sim_job(handle), "ends")
        assert ends is not None
        self.at(int(ends), "end", owner, task_id, attempt, handle)

    def _end(self, owner: str, task_id: str, attempt: int, handle: str) -> str:
        router = self.router
        result = router.driver.poll(handle)
        assert result is not None, f"job {handle} has not ended at its end time"
        status, out = router.tasks.settle(
            owner, task_id, attempt, "completed", result.gpu_ms, result.output, None
        )
        self._carry_out(out)
        after = self.children.pop(task_id, None)
        if status == "completed" and after is not None:
            now = int(text(router.redis.get(router.keys.clock) or b"0"))
            self.at(now + round(after * US), "child", owner, task_id)
        return owner
