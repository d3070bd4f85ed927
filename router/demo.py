"""`byoa demo`: a router, workers and a demo pool on this machine, and what ran where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from importlib.resources import as_file, files
from typing import Any

import click

from router.accounts import AccountSpec, read_accounts_file
from router.client import Client
from router.core import Router
from router.models import TaskType
from router.redis_server import ensure_redis, purge
from router.settings import Settings
from router.status import render, snapshot
from router.tables import table
from router.tasks import Task

DEMO_PREFIX = "byoa-demo"
DEMO_SPEED = 300.0

# (owner, mode) pairs the demo cycles through: every rule shows up at least once.
MIX = [
    ("alice", "fast"),
    ("alice", "turbo"),
    ("alice", ""),
    ("bob", "fast"),
    ("bob", "relax"),
    ("carol", "fast"),
    ("carol", "relax"),
    ("dave", "fast"),
    ("dave", "turbo"),
    ("dave", "relax"),
]


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "router", "--log-level", "WARNING", *args],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, then wait for it (and kill it if it will not stop)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


EXAMPLE_ACCOUNTS = "examples/accounts.example.toml"
"""The example pool, inside the `router` package (`config/accounts.example.toml` in the
source links to it), so `byoa demo` finds it wherever byoa is installed."""


def example_accounts() -> list[AccountSpec]:
    """The accounts of the example pool that comes with the package."""
    with as_file(files("router") / EXAMPLE_ACCOUNTS) as path:
        return read_accounts_file(path)


def run_demo(
    settings: Settings, n_tasks: int, n_workers: int, accounts_file: str | None = None
) -> None:
    """Bring everything up, submit a mix of tasks from four owners, print the outcome;
    the pool is `accounts_file`'s, or the example pool."""
    specs = example_accounts() if accounts_file is None else read_accounts_file(accounts_file)
    overrides: dict[str, Any] = {}
    if "BYOA_KEY_PREFIX" not in os.environ:
        overrides["key_prefix"] = DEMO_PREFIX
    if "BYOA_SIM_SPEED" not in os.environ:
        overrides["sim_speed"] = DEMO_SPEED
    settings = settings.model_copy(update=overrides)
    env = {
        **os.environ,
        "BYOA_KEY_PREFIX": settings.key_prefix,
        "BYOA_SIM_SPEED": str(settings.sim_speed),
        "BYOA_REDIS_URL": settings.redis_url.get_secret_value(),
        "BYOA_POLL_INTERVAL_SECONDS": os.environ.get("BYOA_POLL_INTERVAL_SECONDS", "0.05"),
    }
    with ExitStack() as stack:
        server = ensure_redis(settings.redis_url.get_secret_value())
        if server is not None:
            click.echo("started a private redis-server (none answered)")
            stack.callback(server.terminate)
        router = Router(settings)
        purge(router.redis, settings.key_prefix)
        stack.callback(purge, router.redis, settings.key_prefix)
        for spec in specs:
            router.apply(router.pool.upsert(spec))
        port = settings.metrics_port  # the second replica serves on the next port
        procs = [_spawn(["run"], {**env, "BYOA_METRICS_PORT": str(port + i)}) for i in range(2)]
        procs += [_spawn(["worker"], env) for _ in range(n_workers)]
        stack.callback(stop_processes, procs)
        click.echo(
            f"2 routers, {n_workers} workers, prefix {settings.key_prefix!r}, "
            f"simulated time x{settings.sim_speed:g}\n"
        )
        tasks = _run_mix(router, settings, n_tasks)
        click.echo(_task_table(tasks))
        click.echo("\n" + render(snapshot(router)))


def _run_mix(router: Router, settings: Settings, n_tasks: int) -> list[Task]:
    """Parents through the intake list (as any service would), children through the client."""
    client = Client(settings, router.redis)
    ids = []
    pipe = router.redis.pipeline()
    for i in range(n_tasks):
        owner, mode = MIX[i % len(MIX)]
        task_id = f"demo-{i:03d}"
        message = {
            "id": task_id,
            "owner": owner,
            "task_type": "imagine",
            "input": {"prompt": f"a lighthouse at dusk, study {i} --ar 3:2", "process_mode": mode},
        }
        pipe.lpush(router.keys.intake, json.dumps(message))
        ids.append(task_id)
    pipe.lpush(router.keys.intake, b"{not json")  # shows the dead-letter path
    pipe.execute()
    parents = [client.wait(i, timeout=300) for i in ids]
    children = []
    for parent in parents[:8]:
        if parent.status == "completed":
            child = client.submit(
                parent.owner, task_type=TaskType.UPSCALE, parent_id=parent.id, input={"index": 1}
            )
            children.append(client.wait(child.id, timeout=120))
    return parents + children


def _seconds(a: Any, b: Any) -> str:
    return f"{(b - a).total_seconds():.2f}" if a and b else ""


def _task_table(tasks: list[Task]) -> str:
    return table(
        ["task", "owner", "type", "asked", "ran", "account", "wait s", "run s", "why"],
        [
            [
                t.id[:12],
                t.owner,
                t.task_type,
                t.requested_mode,
                t.effective_mode or "-",
                t.account_id or "-",
                _seconds(t.created_at, t.started_at),
                _seconds(t.started_at, t.finished_at),
                t.error.code if t.error else (t.fallback_reason or t.status.value),
            ]
            for t in tasks
        ],
    )
