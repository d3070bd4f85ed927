"""A password-protected Redis with AOF restarts under load: nothing is lost or leaked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.accounts import AccountSpec
from router.core import Router
from router.demo import stop_processes
from router.settings import Settings
from tests.conftest import terminal, wait_for
from tests.servers import PrivateRedis

PASSWORD = "CANARY-redis-pass-42"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(
        tmp_path,
        [
            "--port",
            "{port}",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--requirepass",
            PASSWORD,
        ],
        f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0",
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_tasks_survive_a_redis_restart_and_no_secret_is_printed(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=private_redis.url, key_prefix=prefix, sim_speed=100)
    router = Router(settings)
    for acct, plan in (("a-pro", "pro"), ("a-std", "standard"), ("a-mega", "mega")):
        spec = AccountSpec(id=acct, owner="alice", plan=plan)
        router.apply(router.pool.add(spec.model_copy(update={"credentials": None})))
    env = {
        **os.environ,
        "BYOA_REDIS_URL": private_redis.url,
        "BYOA_KEY_PREFIX": prefix,
        "BYOA_SIM_SPEED": "100",
        "BYOA_DISPATCH_LEASE_SECONDS": "5",  # recovery, if needed, well within the wait
        "BYOA_RUN_LEASE_SECONDS": "5",
        "BYOA_METRICS_ENABLED": "false",
    }
    logs = [tmp_path / f"proc{i}.log" for i in range(5)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "router", "--log-level", "DEBUG", role],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for role, log in zip(["run", "run", "worker", "worker", "worker"], logs, strict=True)
    ]
    try:
        ids = [f"r-{i}" for i in range(150)]
        pipe = router.redis.pipeline()
        for i, task_id in enumerate(ids):
            mode = ("fast", "relax", "turbo")[i % 3]
            pipe.lpush(
                router.keys.intake,
                json.dumps(
                    {
                        "id": task_id,
                        "owner": "alice",
                        "input": {"prompt": "x", "process_mode": mode},
                    }
                ),
            )
        pipe.execute()

        def some_done() -> bool:
            done = [router.tasks.get(t) for t in ids[:60]]
            return sum(1 for t in done if t is not None and t.status.terminal) >= 20

        wait_for(some_done, timeout=60, what="the first tasks to end")
        private_redis.stop()
        time.sleep(1.0)  # Redis is down for a while: this is the outage, not a wait
        private_redis.start()
        try:
            tasks = wait_for(terminal(router, ids), timeout=180, what="every task to end")
        except AssertionError:
            stuck = [
                t for t in (router.tasks.get(i) for i in ids) if t is None or not t.status.terminal
            ]
            leases = router.redis.zrange(router.keys.inflight("alice"), 0, -1, withscores=True)
            raise AssertionError(
                f"stuck: {[t.model_dump() if t else None for t in stuck[:3]]}"
                f" leases: {leases[:5]} rq queued: {router.queue.count}"
            ) from None
        assert all(t.status == "completed" for t in tasks), {
            t.id: (t.status, t.error) for t in tasks if t.status != "completed"
        }
        for view in router.pool.accounts():
            assert view.inflight == {"fast": 0, "relax": 0}, view.id
            assert view.fast_hours_reserved == 0
        assert router.redis.zcard(router.keys.inflight("alice")) == 0
    finally:
        stop_processes(procs)
    for log in logs:
        assert PASSWORD not in log.read_text(errors="replace"), log.name
