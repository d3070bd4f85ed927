"""Prometheus metrics: the pool as a whole, read from Redis at scrape time.

Every router replica reports the same truth, because the figures live in Redis: account
hashes, waiting lines, and per-owner stats hashes that the Lua scripts count into
(fields below). Only `byoa_routing_latency_seconds` and `byoa_router_*` describe the
scraped process itself. No label carries a task id, a prompt or a secret.

Stats hash fields (`<prefix>:{o:<owner>}:stats`): `submitted`, `routed:<slot>`,
`finished:<status>:<mode>`, `failed:<code>`, `fallback:<reason>`, `upgrade:<reason>`,
`mode_mismatch:<placed>:<ran>` (a backend ran a job in another mode), and histograms
`wait|run:<mode>:<bucket>` (counts per bucket, not cumulative) with `...:sum` (seconds).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from router.accounts import AccountView
from router.callbacks import RESULTS
from router.core import Router
from router.keys import NEEDS
from router.lua import DURATION_BUCKETS
from router.models import Slot
from router.policy import UPGRADE_REASON, rest_until
from router.scripts import text, text_hash

ACCOUNT = ["account", "owner", "plan"]
MODES = ("fast", "turbo", "relax")
HEALTH = ("active", "resting", "attention", "disabled")

ROUTING_LATENCY = Histogram(
    "byoa_routing_latency_seconds",
    "Time from claiming intake messages to their tasks being routed and enqueued.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=None,
)
INTAKE_MESSAGES = Counter(
    "byoa_router_intake_messages",
    "Intake messages this router process handled.",
    registry=None,
)
REAPED = Counter(
    "byoa_router_reclaimed_tasks",
    "Tasks whose lease expired and that this router process took back.",
    registry=None,
)

CALLBACKS = Counter(
    "byoa_callbacks",
    "Backend callbacks this router process answered: accepted (the job's poll made due), "
    "bad_signature, malformed (not a callback path, not a POST, or too large a body).",
    ["result"],
    registry=None,
)
for _result in RESULTS:  # each from zero, so that increase() sees the first
    CALLBACKS.labels(result=_result)


def health(view: AccountView, now_us: int) -> str:
    """The account's place in rotation, for `byoa_account_health`."""
    if not view.enabled:
        return "attention" if view.attention_reason else "disabled"
    return "resting" if rest_until(view.state(), now_us) > now_us else "active"


class PoolCollector(Collector):
    """Reads accounts, lines and stats from Redis on every scrape."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterable[Metric]:
        router, keys = self.router, self.router.keys
        now_us = int(time.time() * 1e6)
        views = router.pool.accounts()
        owners = sorted({v.owner for v in views})
        pipe = router.redis.pipeline(transaction=False)
        for owner in owners:
            pipe.hgetall(keys.stats(owner))
            for slot in Slot:
                for job_class in NEEDS[slot]:  # one line per job class the slot serves
                    pipe.llen(keys.line(owner, slot, job_class))
                    pipe.lindex(keys.line(owner, slot, job_class), 0)
        pipe.hget(keys.global_stats, "dead_letters")
        pipe.zcard(keys.polls)
        replies = pipe.execute()
        polls, dead = replies.pop(), replies.pop()
        stats: dict[str, dict[str, str]] = {}
        heads: list[tuple[str, Slot, int, str | None]] = []
        for owner in owners:
            stats[owner] = text_hash(replies.pop(0))
            for slot in Slot:
                for _ in NEEDS[slot]:
                    depth, head = replies.pop(0), replies.pop(0)
                    heads.append((owner, slot, int(depth), text(head) if head else None))
        yield from self._accounts(views, now_us)
        yield from self._queues(heads, now_us)
        yield from self._counters(stats, int(dead or 0))
        yield from self._histograms(stats)
        yield GaugeMetricFamily(
            "byoa_jobs_polled", "Submitted jobs running on accounts, followed by workers.", polls
        )

    def _accounts(self, views: list[AccountView], now_us: int) -> Iterator[Metric]:
        g = GaugeMetricFamily
        fast_left = g(
            "byoa_account_fast_time_remaining_seconds",
            "Fast GPU time left on the account (its plan's hours, less what it used).",
            labels=ACCOUNT,
        )
        setting = g(
            "byoa_account_setting",
            "1 for the account's current setting.",
            labels=[*ACCOUNT, "setting"],
        )
        state = g(
            "byoa_account_health",
            "1 for the account's place in rotation: active, resting (pacing, cooldown, "
            "daily cap, work hours), attention (out until reset), disabled.",
            labels=[*ACCOUNT, "state"],
        )
        inflight = g("byoa_account_jobs", "Jobs holding a slot.", labels=[*ACCOUNT, "slot"])
        limit = g("byoa_account_job_limit", "Concurrent jobs allowed.", labels=[*ACCOUNT, "slot"])
        used = CounterMetricFamily(
            "byoa_account_gpu_seconds",
            "GPU seconds the account used, by mode.",
            labels=[*ACCOUNT, "mode"],
        )
        flips = CounterMetricFamily(
            "byoa_account_auto_flips",
            "Automatic flips to relax on exhausted fast hours.",
            labels=ACCOUNT,
        )
        backend_left = g(
            "byoa_account_backend_fast_time_remaining_seconds",
            "Fast time left on the account by its backend's reckoning, where the backend "
            "tells (read at byoa_backend_sync_seconds).",
            labels=ACCOUNT,
        )
        for v in views:
            labels = [v.id, v.owner, v.plan.value]
            fast_left.add_metric(labels, max(v.fast_hours_remaining, 0.0) * 3600)
            for s in ("fast", "relax"):
                setting.add_metric([*labels, s], float(v.setting.value == s))
                inflight.add_metric([*labels, s], v.inflight[s])
            limit.add_metric([*labels, "fast"], v.fast_limit)
            limit.add_metric([*labels, "relax"], v.relax_limit)
            now_state = health(v, now_us)
            for h in HEALTH:
                state.add_metric([*labels, h], float(h == now_state))
            for m in MODES:
                used.add_metric([*labels, m], v.gpu_seconds_used[m])
            flips.add_metric(labels, v.auto_flips)
            if v.backend_fast_ms is not None:
                backend_left.add_metric(labels, v.backend_fast_ms / 1000)
        yield from (fast_left, setting, state, inflight, limit, used, flips, backend_left)

    def _queues(
        self, heads: list[tuple[str, Slot, int, str | None]], now_us: int
    ) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "byoa_queue_depth",
            "Tasks waiting for a slot, per owner and slot.",
            labels=["owner", "slot"],
        )
        oldest = GaugeMetricFamily(
            "byoa_queue_oldest_age_seconds",
            "How long the task at the head of the line has waited (0 if none).",
            labels=["owner", "slot"],
        )
        pipe = self.router.redis.pipeline(transaction=False)
        for owner, _, _, head in heads:
            if head:
                pipe.hget(self.router.keys.task(owner, head), "created_at")
        created = iter(pipe.execute())
        totals: dict[tuple[str, str], tuple[int, float]] = {}
        for owner, slot, n, head in heads:  # a slot's lines (one per job class) summed
            at = next(created) if head else None
            age = max(0.0, (now_us - int(at)) / 1e6) if at else 0.0
            seen, most = totals.get((owner, slot.value), (0, 0.0))
            totals[owner, slot.value] = (seen + n, max(most, age))
        for labels, (n, age) in totals.items():
            depth.add_metric(list(labels), n)
            oldest.add_metric(list(labels), age)
        yield from (depth, oldest)

    def _counters(self, stats: dict[str, dict[str, str]], dead: int) -> Iterator[Metric]:
        c = CounterMetricFamily
        submitted = c("byoa_tasks_submitted", "Tasks accepted, per owner.", labels=["owner"])
        routed = c("byoa_tasks_routed", "Slots given to tasks.", labels=["owner", "slot"])
        finished = c(
            "byoa_tasks_finished",
            "Tasks that reached a terminal state.",
            labels=["owner", "status", "mode"],
        )
        failed = c("byoa_tasks_failed", "Failed tasks by error code.", labels=["owner", "code"])
        fallbacks = c(
            "byoa_fallbacks",
            "Fast/turbo tasks that ran relax as a fallback (counted when they start).",
            labels=["owner", "reason"],
        )
        upgrades = c(
            "byoa_upgrades",
            "Relax tasks of opted-in owners run fast on expiring hours (counted when they start).",
            labels=["owner", "reason"],
        )
        mismatches = c(
            "byoa_mode_mismatches",
            "Jobs a backend ran in another mode than the router placed them in (charged as "
            "what ran).",
            labels=["owner", "placed", "ran"],
        )
        for owner, h in stats.items():
            submitted.add_metric([owner], int(h.get("submitted", 0)))
            # from zero, so that a dashboard's rate() has a series before the first upgrade
            upgrades.add_metric([owner, UPGRADE_REASON], int(h.get(f"upgrade:{UPGRADE_REASON}", 0)))
            for placed in MODES:  # every pair from zero, so that increase() sees the first
                for ran in MODES:
                    if placed != ran:
                        mismatched = h.get(f"mode_mismatch:{placed}:{ran}", 0)
                        mismatches.add_metric([owner, placed, ran], int(mismatched))
            for field, value in h.items():
                kind, _, rest = field.partition(":")
                if kind == "routed":
                    routed.add_metric([owner, rest], int(value))
                elif kind == "finished":
                    status, _, mode = rest.partition(":")
                    finished.add_metric([owner, status, mode], int(value))
                elif kind == "failed":
                    failed.add_metric([owner, rest], int(value))
                elif kind == "fallback":
                    fallbacks.add_metric([owner, rest], int(value))
                elif kind == "upgrade" and rest != UPGRADE_REASON:
                    upgrades.add_metric([owner, rest], int(value))
        yield from (submitted, routed, finished, failed, fallbacks, upgrades, mismatches)
        yield c("byoa_dead_letters", "Intake messages that could not become a task.", dead)

    def _histograms(self, stats: dict[str, dict[str, str]]) -> Iterator[Metric]:
        helps = {
            "wait": "Time from submission to the start of a run.",
            "run": "Time from the start of a run to its completion.",
        }
        for name, help_text in helps.items():
            family = HistogramMetricFamily(
                f"byoa_task_{name}_seconds", help_text, labels=["owner", "mode"]
            )
            for owner, h in stats.items():
                counts: dict[str, dict[str, float]] = defaultdict(dict)
                for field, value in h.items():
                    parts = field.split(":")
                    if len(parts) == 3 and parts[0] == name:
                        counts[parts[1]][parts[2]] = float(value)
                for mode, seen in sorted(counts.items()):
                    total, buckets = 0.0, []
                    for bound in [*(str(b) for b in DURATION_BUCKETS), "+Inf"]:
                        total += seen.get(bound, 0.0)
                        buckets.append((bound, total))
                    family.add_metric([owner, mode], buckets, sum_value=seen.get("sum", 0.0))
            yield family


def registry(router: Router) -> CollectorRegistry:
    """The registry a router serves: the pool collector and this process's own metrics."""
    reg = CollectorRegistry()
    reg.register(PoolCollector(router))
    for own in (ROUTING_LATENCY, INTAKE_MESSAGES, REAPED, CALLBACKS):
        reg.register(own)
    return reg
