"""A Sentinel failover under load loses nothing acknowledged (issue 23).

Real processes on loopback: a `redis-server` primary and its replica, three sentinels, two
routers (`byoa run`), two workers and `byoa api`, with `redis_min_replicas = 1`; the
accounts are midjourney-proxy stubs in this process (outside Redis, so a failover cannot
take back what they ran). Three doors submit while the primary is killed with SIGKILL:
the Python client, the HTTP API (with an Idempotency-Key) and raw LPUSH + `WAIT 1`. Each
retries a refused submission with the same id until it is acknowledged. Once with the
replica in sync, once with it stalled (SIGSTOP: its link lags) for a while before the
kill. Then: every acknowledged submission ends in exactly one terminal state, no task is
submitted to an account twice, no terminal event is announced twice (distinct webhook
ids per task; `Client.wait` returns the end the record keeps), and the figures
(acknowledged, lost, duplicates, the longest pause between acknowledgements) are printed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.addresses import parse_networks
from router.apikeys import ApiKeys
from router.client import Client
from router.core import Router
from router.demo import stop_processes
from router.keys import Keys
from router.models import TaskStatus
from router.redis_url import open_redis
from router.settings import Settings
from router.tasks import Task
from tests.conftest import LOOPBACK, wait_for
from tests.mjproxy_stub import StubProxy
from tests.sentinel_servers import SentinelSet, sentinel_set
from tests.servers import Endpoint, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server"),
]

SECRET = "stub-secret"
WAIT_SECONDS = 0.5
RATE = 25.0
"""Submissions a second per door (three doors)."""
BEFORE, AFTER = 2.5, 7.0
"""Seconds of load before the fault, and after it."""
STALL = 1.5
"""How long the replica lags (stopped) before the primary is killed, in the lagging run."""
TERMINAL = {s.value for s in TaskStatus if s.terminal}


@dataclass
class Figures:
    """What one run saw."""

    acked: dict[str, float] = field(default_factory=dict)
    """Acknowledged task id -> when (monotonic)."""
    refusals: int = 0
    """Submissions refused (not acknowledged) and retried with the same id."""
    waited: dict[str, Task] = field(default_factory=dict)
    """What `Client.wait` returned, for the tasks it waited on."""
    fault_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, task_id: str) -> None:
        with self.lock:
            self.acked.setdefault(task_id, time.monotonic())

    def refused(self) -> None:
        with self.lock:
            self.refusals += 1

    def longest_pause(self) -> float:
        """The longest gap between acknowledgements from a second before the fault on."""
        times = sorted(t for t in self.acked.values() if t >= self.fault_at - 1)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class Load:
    """The three doors, each a thread submitting RATE tasks a second until stopped."""

    def __init__(self, url: str, prefix: str, api: str, api_key: str, hook: dict[str, Any]) -> None:
        self.settings = Settings(
            redis_url=SecretStr(url),
            key_prefix=prefix,
            redis_min_replicas=1,
            redis_wait_timeout_seconds=WAIT_SECONDS,
            webhook_allowed_networks=parse_networks(LOOPBACK),
        )
        self.client = Client(self.settings)
        self.http = httpx.Client(base_url=api, timeout=15)
        self.redis = open_redis(url, max_connections=4, pool_timeout=5)
        self.api, self.api_key, self.hook = api, api_key, hook
        self.figures = Figures()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._paced, args=(door,), daemon=True)
            for door in (self._client, self._http, self._lpush)
        ]
        self.waiters: list[threading.Thread] = []

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _paced(self, door: Callable[[int], Callable[[], bool]]) -> None:
        n, started = 0, time.monotonic()
        while not self.stop.is_set():
            attempt = door(n)
            while not self.stop.is_set() and not attempt():
                self.figures.refused()
                self.stop.wait(0.05)  # a refused submission is retried with the same id
            n += 1
            self.stop.wait(max(0.0, started + n / RATE - time.monotonic()))

    def _client(self, n: int) -> Callable[[], bool]:
        client = self.client
        task_id = f"c-{n}"

        def attempt() -> bool:
            try:
                client.submit("alice", f"a cat {n}", mode="fast", id=task_id, webhook=self.hook)
            except Exception:
                return False
            self.figures.ack(task_id)
            if n % 10 == 0:  # a caller waiting for it, through the failover
                waiter = threading.Thread(target=self._wait, args=(client, task_id), daemon=True)
                self.waiters.append(waiter)
                waiter.start()
            return True

        return attempt

    def _wait(self, client: Client, task_id: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                task = client.wait(task_id, timeout=deadline - time.monotonic())
            except Exception:  # the failover cut its connection: wait again
                time.sleep(0.1)
                continue
            with self.figures.lock:
                self.figures.waited[task_id] = task
            return

    def _http(self, n: int) -> Callable[[], bool]:
        http = self.http
        headers = {"x-api-key": self.api_key, "Idempotency-Key": str(uuid.uuid4())}
        body = {
            "model": "midjourney",
            "task_type": "imagine",
            "input": {"prompt": f"a dog {n}", "process_mode": "fast"},
            "config": {"webhook_config": self.hook},
        }

        def attempt() -> bool:
            try:
                answer = http.post("/api/v1/task", json=body, headers=headers)
            except httpx.HTTPError:
                return False
            if answer.status_code != 200:
                return False
            self.figures.ack(str(answer.json()["data"]["task_id"]))
            return True

        return attempt

    def _lpush(self, n: int) -> Callable[[], bool]:
        redis = self.redis
        task_id = f"l-{n}"
        message = json.dumps(
            {
                "id": task_id,
                "owner": "alice",
                "input": {"prompt": f"a bird {n} --fast"},
                "webhook": self.hook,
            }
        )
        key = Keys(self.settings.key_prefix).intake

        def attempt() -> bool:
            try:  # as the docs tell a producer: LPUSH, then WAIT on the same connection
                pipe = redis.pipeline(transaction=False)
                pipe.lpush(key, message)
                pipe.wait(1, round(WAIT_SECONDS * 1000))
                acked = pipe.execute()[-1]
            except Exception:
                return False
            if int(acked) < 1:
                return False  # not durable: pushed again (the id makes a copy harmless)
            self.figures.ack(task_id)
            return True

        return attempt


@contextlib.contextmanager
def processes(env: dict[str, str], logs: Path, api_port: int) -> Iterator[None]:
    roles = [["run"], ["run"], ["worker"], ["worker"], ["api", "--port", str(api_port)]]
    procs = []
    for i, role in enumerate(roles):
        out = (logs / f"{role[0]}{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "router", "--log-level", "WARNING", *role],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield
    finally:
        stop_processes(procs)


def _ready(api: str) -> bool:
    try:
        return httpx.get(api + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _fault(group: SentinelSet, lagging: bool, figures: Figures) -> float:
    """Kill the primary (after stalling its replica, if `lagging`); once the sentinels have
    promoted the replica, start the killed server again, empty, as its replica. Returns the
    seconds from the kill until the sentinels named the new primary."""
    old, (replica,) = group.primary(), group.replicas()
    figures.fault_at = time.monotonic()
    if lagging:
        replica.pause()
        time.sleep(STALL)  # the lag: writes pile up on the primary alone
    old.kill()
    killed = time.monotonic()
    if lagging:
        replica.resume()
    wait_for(lambda: group.primary_port() == replica.port, 60, "the sentinels to fail over")
    promoted = time.monotonic() - killed
    old.start(replica_of=replica.port)
    return promoted


def _attempt_of(prefix: str, state: str) -> str:
    """The task id in a job key `<prefix>-<task id>-<attempt>`."""
    return state[len(prefix) + 1 :].rsplit("-", 1)[0]


@pytest.mark.parametrize("lagging", [False, True], ids=["healthy-replica", "lagging-replica"])
def test_a_failover_loses_nothing_acknowledged_and_announces_no_end_twice(
    tmp_path: Path, lagging: bool, endpoint: Endpoint
) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}"
    with (
        sentinel_set(tmp_path / "redis") as group,
        StubProxy(secret=SECRET, run_ms=50, fast_jobs=100_000) as stub_a,
        StubProxy(secret=SECRET, run_ms=50, fast_jobs=100_000) as stub_b,
    ):
        settings = Settings(redis_url=SecretStr(group.url), key_prefix=prefix, driver="mjproxy")
        router = Router(settings)
        for account, stub in (("a-1", stub_a), ("a-2", stub_b)):
            spec = AccountSpec(
                id=account,
                owner="alice",
                plan="pro",
                backend_url=stub.url + "/",
                credentials=SecretStr(SECRET),
            )
            router.apply(router.pool.add(spec))
        api_key = ApiKeys(router.redis, router.scripts).create("alice", "failover")[1]
        api_port = free_port()
        env = {
            **os.environ,
            "BYOA_REDIS_URL": group.url,
            "BYOA_KEY_PREFIX": prefix,
            "BYOA_DRIVER": "mjproxy",
            "BYOA_MJPROXY__REQUEST_TIMEOUT_SECONDS": "5",
            "BYOA_REDIS_MIN_REPLICAS": "1",
            "BYOA_REDIS_WAIT_TIMEOUT_SECONDS": str(WAIT_SECONDS),
            "BYOA_POLL_INTERVAL_SECONDS": "0.05",
            "BYOA_DISPATCH_LEASE_SECONDS": "5",
            "BYOA_RUN_LEASE_SECONDS": "5",
            "BYOA_WEBHOOK_TIMEOUT_SECONDS": "2",
            "BYOA_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "BYOA_METRICS_ENABLED": "false",
        }
        api = f"http://127.0.0.1:{api_port}"
        hook = {"endpoint": endpoint.url + "/hook", "secret": "hook-secret"}
        with processes(env, tmp_path, api_port):
            wait_for(lambda: _ready(api), 30, "byoa api to be ready")
            load = Load(group.url, prefix, api, api_key.get_secret_value(), hook)
            load.start()
            time.sleep(BEFORE)  # load, not synchronisation: the fault comes mid-stream
            promoted = _fault(group, lagging, load.figures)
            time.sleep(AFTER)
            load.finish()
            figures = load.figures
            acked = set(figures.acked)
            client = Client(settings)

            def ended() -> list[Task] | None:
                tasks = client.router.tasks.get_many([("alice", t) for t in sorted(acked)])
                if all(t is not None and t.status.terminal for t in tasks):
                    return [t for t in tasks if t is not None]
                return None

            try:
                records = wait_for(ended, 60, "every acknowledged task to end")
            except AssertionError:
                tasks = client.router.tasks.get_many([("alice", t) for t in sorted(acked)])
                lost = [t for t, r in zip(sorted(acked), tasks, strict=True) if r is None]
                open_ = Counter(r.status.value for r in tasks if r is not None)
                raise AssertionError(f"lost {len(lost)} ({lost[:5]}), statuses {open_}") from None

            def delivered() -> bool:
                now = client.router.tasks.get_many([("alice", t) for t in sorted(acked)])
                return all(t is not None and t.webhook_status == "delivered" for t in now)

            wait_for(delivered, 30, "every terminal webhook to be delivered")
            for waiter in load.waiters:
                waiter.join(30)
        posts: dict[str, list[str]] = defaultdict(list)
        for hit in endpoint.hits:
            event = hit.headers["x-webhook-event"]
            if event in TERMINAL:
                posts[hit.headers["x-webhook-id"].rsplit("/", 2)[0]].append(
                    hit.headers["x-webhook-id"]
                )
        runs = Counter(
            _attempt_of(prefix, body["state"])
            for stub in (stub_a, stub_b)
            for body in stub.sent("/mj/submit/imagine")
        )

    by_id = {r.id: r for r in records}
    announced_twice = [t for t in acked if len(set(posts.get(t, []))) > 1]
    reposted = sum(len(v) - len(set(v)) for v in posts.values())
    ran_twice = [t for t, n in runs.items() if n > 1]
    waited_other = [
        t
        for t, seen in figures.waited.items()
        if (seen.status, seen.attempt, seen.finished_at)
        != (by_id[t].status, by_id[t].attempt, by_id[t].finished_at)
    ]
    print(
        f"\nfailover ({'lagging' if lagging else 'healthy'} replica): "
        f"acknowledged {len(acked)}, lost 0, statuses "
        f"{dict(Counter(r.status.value for r in records))}, refused and retried "
        f"{figures.refusals}, ends announced twice {len(announced_twice)}, reposts of one "
        f"event id {reposted}, submitted to an account twice {len(ran_twice)}, waits "
        f"{len(figures.waited)}, longest pause between acknowledgements "
        f"{figures.longest_pause():.1f} s, sentinels promoted in {promoted:.1f} s"
    )
    assert len(acked) > 100
    assert all(r.status == "completed" for r in records), Counter(r.status for r in records)
    assert not announced_twice, announced_twice[:5]
    assert all(len(set(posts.get(t, []))) == 1 for t in acked)  # each end announced once
    assert not ran_twice, ran_twice[:5]
    assert all(runs[t] == 1 for t in acked)
    assert len(figures.waited) >= 3 and not waited_other, waited_other[:5]
