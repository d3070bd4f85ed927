"""An upper bound on the fast work any placement could serve on a trace, knowing it all.

Per owner (owners share no accounts), a max-flow over hour buckets and accounts:

    source -> demand(b)            the fast time (turbo twice) of the owner's fast and
                                   turbo tasks arriving in bucket b
    demand(b) -> demand(b+1)       unbounded: a task may wait for a later bucket
    demand(b) -> cycle(a, c(b))    what account a can run in bucket b: its fast slots,
                                   each running for the bucket plus one job's wall time
                                   (a job ending in b started at most that much earlier),
                                   at the fastest rate fast time can be spent (turbo)
    cycle(a, c) -> sink            the account's fast time in its cycle c (the hours left
                                   at the start for the first, the plan's after each
                                   renewal), plus one task's fast time (turbo)

Why it is an upper bound: every fast or turbo task served fast is charged, when it
settles, to its account's cycle at that moment, after it arrived; an account runs at most
its fast limit at once, so what ends on it within a bucket used at most the capacity
above; and the router places fast work on an account only while its balance exceeds what
is already reserved, so with GPU times exactly as estimated (the month trace has no
jitter) what a cycle is charged exceeds its balance by at most the last task placed. The
relaxations: tasks may be split, may wait any time, and the slot capacity counts every
slot as running turbo back to back; buckets run until a day after the last arrival.
"""

from __future__ import annotations

from collections import defaultdict, deque

from bench.traces import HOUR_US, US, WALL, Trace
from router.accounts import epoch_us, next_renewal
from router.models import Mode, TaskType
from router.settings import DEFAULT_PLANS

INF = float("inf")


class MaxFlow:
    """Dinic's algorithm on a graph of a few thousand nodes."""

    def __init__(self) -> None:
        self.graph: list[list[int]] = []
        self.to: list[int] = []
        self.cap: list[float] = []

    def node(self) -> int:
        self.graph.append([])
        return len(self.graph) - 1

    def edge(self, u: int, v: int, cap: float) -> None:
        self.graph[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(cap)
        self.graph[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0.0)

    def _levels(self, s: int, t: int) -> list[int] | None:
        level = [-1] * len(self.graph)
        level[s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for e in self.graph[u]:
                if self.cap[e] > 1e-9 and level[self.to[e]] < 0:
                    level[self.to[e]] = level[u] + 1
                    queue.append(self.to[e])
        return level if level[t] >= 0 else None

    def flow(self, s: int, t: int) -> float:
        total = 0.0
        while (level := self._levels(s, t)) is not None:
            it = [0] * len(self.graph)
            while True:
                pushed = self._push(s, t, level, it)
                if pushed <= 1e-9:
                    break
                total += pushed
        return total

    def _push(self, s: int, t: int, level: list[int], it: list[int]) -> float:
        """One blocking path from s to t (iterative DFS); the flow pushed along it."""
        path: list[int] = []
        u = s
        while True:
            if u == t:
                amount = min(self.cap[e] for e in path)
                for e in path:
                    self.cap[e] -= amount
                    self.cap[e ^ 1] += amount
                return amount
            edges = self.graph[u]
            while it[u] < len(edges):
                e = edges[it[u]]
                v = self.to[e]
                if self.cap[e] > 1e-9 and level[v] == level[u] + 1:
                    break
                it[u] += 1
            else:
                if not path:
                    return 0.0
                level[u] = -1  # a dead end: never again in this phase
                e = path.pop()
                u = self.to[e ^ 1]
                it[u] += 1
                continue
            path.append(edges[it[u]])
            u = self.to[edges[it[u]]]


def fast_cost_s(trace: Trace, mode: Mode) -> float:
    """Fast seconds one top-level task of `mode` is charged on this trace (turbo twice)."""
    gpu = trace.gpu_seconds.get(TaskType.IMAGINE, 60.0)
    return gpu * (2 if mode is Mode.TURBO else 1)


def offline_bound(trace: Trace, drain_days: float = 1.0) -> tuple[float, float]:
    """(fast hours any placement could serve at most, fast hours asked for) on `trace`."""
    assert not trace.jitter, "the bound assumes GPU times exactly as estimated"
    end_us = trace.horizon_us + round(drain_days * 24 * HOUR_US)
    buckets = -(-(end_us - trace.start_us) // HOUR_US)
    max_cost = fast_cost_s(trace, Mode.TURBO)
    gpu = trace.gpu_seconds.get(TaskType.IMAGINE, 60.0)
    turbo_rate = 2 / WALL[Mode.TURBO]  # fast seconds charged per second a turbo job runs
    slot_reach = HOUR_US / US + gpu * max(WALL[Mode.FAST], WALL[Mode.TURBO])
    demand: dict[str, list[float]] = defaultdict(lambda: [0.0] * buckets)
    for a in trace.arrivals:
        if a.mode is not Mode.RELAX:
            demand[a.owner][(a.at_us - trace.start_us) // HOUR_US] += fast_cost_s(trace, a.mode)
    served = asked = 0.0
    for owner, wants in sorted(demand.items()):
        g = MaxFlow()
        source, sink = g.node(), g.node()
        nodes = [g.node() for _ in range(buckets)]
        for b, want in enumerate(wants):
            if want:
                g.edge(source, nodes[b], want)
            if b + 1 < buckets:
                g.edge(nodes[b], nodes[b + 1], INF)
        for spec in (s for s in trace.accounts if s.owner == owner):
            plan = DEFAULT_PLANS[spec.plan]
            limit = plan.fast_limit if spec.fast_limit is None else spec.fast_limit
            first = plan.fast_hours if spec.fast_hours is None else spec.fast_hours
            renewals = []
            if spec.renews_at is not None:
                at = next_renewal(epoch_us(spec.renews_at), trace.start_us - 1)
                while at < trace.start_us + buckets * HOUR_US:
                    renewals.append(at)
                    at = next_renewal(at, at)
            balances = [first * 3600] + [plan.fast_hours * 3600] * len(renewals)
            cycles = []
            for balance in balances:
                cycles.append(g.node())
                g.edge(cycles[-1], sink, balance + max_cost)
            for b in range(buckets):
                bucket_start = trace.start_us + b * HOUR_US
                c = sum(1 for r in renewals if r <= bucket_start)
                g.edge(nodes[b], cycles[c], limit * slot_reach * turbo_rate)
        served += g.flow(source, sink)
        asked += sum(wants)
    return served / 3600, asked / 3600
