"""Fixtures: a real Redis (one key prefix per test, purged after), routers and rq workers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner, Result
from redis import Redis

from router.accounts import AccountSpec
from router.addresses import parse_networks
from router.client import Client
from router.core import Router, connect
from router.demo import stop_processes
from router.redis_server import purge
from router.settings import Settings
from router.tasks import Task

if TYPE_CHECKING:
    from tests.servers import Endpoint
from workers.process import drain as drain_worker

TEST_REDIS_URL = os.environ.get("BYOA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
"""A dedicated database; every test also uses its own key prefix and purges it."""


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


LOOPBACK = "127.0.0.0/8,::1/128"
"""The networks of the tests' own webhook receivers, which a webhook may reach only when
the operator allows them (`webhook_allowed_networks`)."""


def allow_loopback_webhooks(settings: Settings) -> Settings:
    """`settings` with webhooks to this host's receivers allowed."""
    return settings.model_copy(update={"webhook_allowed_networks": parse_networks(LOOPBACK)})


@pytest.fixture(scope="session")
def redis_conn() -> Redis:
    conn = connect(Settings(redis_url=TEST_REDIS_URL))  # as every process makes its client
    try:
        conn.ping()
    except Exception as e:  # pragma: no cover - environment problem, said plainly
        pytest.exit(f"tests need a Redis server at {TEST_REDIS_URL}: {e}", returncode=2)
    return conn


@pytest.fixture
def prefix(redis_conn: Redis) -> Iterator[str]:
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    purge(redis_conn, value)


@pytest.fixture
def settings(prefix: str) -> Settings:
    return Settings(
        redis_url=TEST_REDIS_URL,
        key_prefix=prefix,
        sim_speed=2000,
        max_prompt_length=500,
        poll_interval_seconds=0.02,
        submit_threads=1,  # a job this test runs itself returns what became of its task
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment for router and worker subprocesses of this test."""
    return {
        **os.environ,
        "BYOA_REDIS_URL": TEST_REDIS_URL,
        "BYOA_KEY_PREFIX": settings.key_prefix,
        "BYOA_SIM_SPEED": str(settings.sim_speed),
        "BYOA_MAX_PROMPT_LENGTH": str(settings.max_prompt_length),
        "BYOA_POLL_INTERVAL_SECONDS": str(settings.poll_interval_seconds),
        "BYOA_METRICS_ENABLED": "false",  # tests that scrape choose a free port
        "BYOA_WEBHOOK_ALLOWED_NETWORKS": ",".join(map(str, settings.webhook_allowed_networks)),
    }


@pytest.fixture
def router(settings: Settings, redis_conn: Redis, env: dict[str, str]) -> Iterator[Router]:
    saved = dict(os.environ)
    os.environ.update(env)  # in-process workers build their Router from the environment
    from workers import jobs

    jobs.use_settings(settings)  # in-process jobs run with this test's settings
    yield Router(settings, redis_conn)
    jobs.use_settings(None)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def api(router: Router) -> Iterator[str]:
    """`byoa api`'s app on a real uvicorn server (in a thread) on a free port; its base URL."""
    from router.api.app import create_app

    with served(create_app(router.settings, router.redis)) as base:
        yield base


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """An ASGI app on a real uvicorn server (in a thread) on a free port; its base URL."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def http(api: str) -> Iterator[httpx.Client]:
    """A client of that server."""
    with httpx.Client(base_url=api, timeout=10) as client:
        yield client


@pytest.fixture
def client(router: Router) -> Client:
    return Client(router.settings, router.redis)


@pytest.fixture
def add_account(router: Router) -> Callable[..., None]:
    def add(account_id: str, owner: str, plan: str, **kw: Any) -> None:
        router.apply(router.pool.add(AccountSpec(id=account_id, owner=owner, plan=plan, **kw)))

    return add


@pytest.fixture
def drain(router: Router) -> Callable[[], None]:
    """Work in this process until nothing is left to submit or poll (follow-ups included)."""

    from workers import jobs

    def run() -> None:
        # As a worker process starting now would: settings read once, from the environment
        # (a test may have changed it after the router fixture).
        drain_worker(Router(Settings(), router.redis))
        jobs.use_settings(router.settings)  # jobs the test runs itself: its settings again

    return run


@pytest.fixture
def cli(env: dict[str, str], router: Router) -> Callable[..., Result]:
    """`byoa ...` in this process (click's runner) with this test's settings; asserts the
    exit code (`code=`, default 0); `extra_env` sets variables (None unsets one).
    `result.stdout` is stdout alone, `.output` both."""
    from router.cli import main

    runner = CliRunner()

    def run(*args: str, code: int = 0, **extra_env: str | None) -> Result:
        result = runner.invoke(main, list(args), env={**env, **extra_env})
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    return run


@pytest.fixture
def spawn(env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `byoa ...` subprocesses with this test's settings; stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """`extra_env`: more BYOA_* settings for this process only."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "router", "--log-level", "WARNING", *args],
            env={**env, **extra_env},
        )
        procs.append(proc)
        return proc

    yield start
    stop_processes(procs)


def terminal(router: Router, task_ids: list[str]) -> Callable[[], list[Task] | None]:
    """A condition for `wait_for`: every task exists and is terminal."""

    def check() -> list[Task] | None:
        tasks = [router.tasks.get(t) for t in task_ids]
        if all(t is not None and t.status.terminal for t in tasks):
            return [t for t in tasks if t is not None]
        return None

    return check


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A webhook receiver on this host (`tests.servers.Endpoint`), shut at the end."""
    from tests.servers import Endpoint  # (tests.servers imports this module)

    receiver = Endpoint()
    yield receiver
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()
