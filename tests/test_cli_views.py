"""What the `byoa` command shows: one time format (ISO 8601, UTC) everywhere, tables with
headers for dead letters and keys, and `status` counting the live routers, workers and
API processes; `byoa api` on a taken port stops at start."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from click.testing import Result

from router.core import Router
from router.daemon import IntakeDaemon
from router.presence import API_FORGET_SECONDS, ApiBeat, presence, redis_now_ms
from tests.conftest import wait_for
from tests.servers import free_port

Cli = Callable[..., Result]
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def times_in(data: Any) -> list[str]:
    """Every string in `data` that looks like a time, and every key naming microseconds."""
    if isinstance(data, dict):
        found = [k for k in data if k.endswith("_us")]
        return found + [t for v in data.values() for t in times_in(v)]
    if isinstance(data, list):
        return [t for v in data for t in times_in(v)]
    return [data] if isinstance(data, str) and re.match(r"\d{4}-\d\d-\d\d", data) else []


def test_accounts_and_status_json_give_times_as_iso_8601_utc(cli: Cli) -> None:
    cli(
        "accounts",
        "add",
        "a1",
        "--owner",
        "alice",
        "--plan",
        "pro",
        "--renews-at",
        "2030-01-01T00:00:00+02:00",
    )
    listed = json.loads(cli("accounts", "list", "--json").stdout)
    assert listed[0]["renews_at"] == "2029-12-31T22:00:00Z"
    assert listed[0]["flipped_at"] is None and listed[0]["cooldown_until"] is None
    snap = json.loads(cli("status", "--json").stdout)
    assert snap["accounts"] == listed
    task = json.loads(cli("submit", "--owner", "alice", "--prompt", "x", "--json").stdout)
    shown = times_in([listed, snap, task])
    assert shown and all(ISO_UTC.fullmatch(t) for t in shown), shown


def test_dead_letters_are_a_table_with_a_header_and_exact_json(cli: Cli, router: Router) -> None:
    router.redis.lpush(
        router.keys.dead_letters,
        json.dumps({"code": "invalid_json", "message": "old", "at": "2026-01-02T03:04:05+00:00"}),
    )
    router.redis.lpush(router.keys.intake, b"{not json", b'{"owner": "a", "task_type": "paint"}')
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    shown = cli("dead-letters").stdout.splitlines()
    assert shown[0].split() == ["at", "code", "reason", "message", "received"]
    assert set(shown[1]) <= {"-", " "}
    rows = shown[2:]
    assert len(rows) == 3 and rows[2].split() == ["2026-01-02T03:04:05Z", "invalid_json", "old"]
    codes = sorted(r.split()[1] for r in rows[:2])
    assert codes == ["invalid_json", "unknown_task_type"]
    assert all(ISO_UTC.fullmatch(r.split()[0]) for r in rows)
    exact = json.loads(cli("dead-letters", "--json", "--limit", "2").stdout)
    assert len(exact) == 2 and {e["raw"] for e in exact} == {
        "{not json",
        '{"owner": "a", "task_type": "paint"}',
    }
    assert all(ISO_UTC.fullmatch(e["at"]) for e in exact)
    old = json.loads(cli("dead-letters", "--json").stdout)[2]
    assert old["at"] == "2026-01-02T03:04:05Z"


def test_keys_list_has_a_header_and_iso_times(cli: Cli) -> None:
    cli("keys", "create", "--owner", "alice", "--name", "ci", "--rate", "5")
    lines = cli("keys", "list").stdout.splitlines()
    assert lines[0].split() == ["key", "id", "owner", "name", "rate", "created", "state"]
    row = lines[2].split()
    assert row[1:4] == ["alice", "ci", "5/s"] and ISO_UTC.fullmatch(row[4])
    assert row[5] == "active"
    assert cli("keys", "list", "--owner", "nobody").stdout.count("\n") == 2  # the header


def test_status_counts_the_live_routers_workers_and_api_processes(
    cli: Cli, router: Router, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    cli("accounts", "add", "a1", "--owner", "alice", "--plan", "pro")
    cli("submit", "--owner", "alice", "--prompt", "x", "--mode", "fast")
    idle = cli("status").stdout
    assert "routers: 0  workers: 0  api: 0" in idle
    assert "no worker is running: 1 dispatched job(s) wait for one" in idle
    port = free_port()
    procs = [
        spawn("run"),
        spawn("worker"),
        spawn("api", "--host", "127.0.0.1", "--port", str(port)),
    ]

    def counts() -> dict[str, int]:
        snap = json.loads(cli("status", "--json").stdout)
        return {k: snap[k] for k in ("routers", "workers", "api")}

    wait_for(lambda: counts() == {"routers": 1, "workers": 1, "api": 1}, 30, "all three")
    assert "routers: 1  workers: 1  api: 1" in cli("status").stdout
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
    assert counts() == {"routers": 0, "workers": 0, "api": 0}  # each left as it stopped


def test_api_heartbeats_count_while_fresh_and_old_ones_are_forgotten(router: Router) -> None:
    beat, other = ApiBeat(router.redis, router.keys), ApiBeat(router.redis, router.keys)
    beat.beat()
    other.beat()
    assert presence(router).api == 2
    other.leave()
    assert presence(router).api == 1
    stale = redis_now_ms(router.redis) - round(API_FORGET_SECONDS * 1000) - 1
    router.redis.zadd(router.keys.api_processes, {"killed-long-ago": stale, "killed-at-0": 0})
    beat.beat()
    assert router.redis.zrange(router.keys.api_processes, 0, -1) == [beat.id.encode()]


def test_byoa_api_on_a_taken_port_stops_at_start_with_a_message(env: dict[str, str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:  # another process's port
        taken = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "router", "api", "--host", "127.0.0.1", "--port", str(taken)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: api_port_unavailable: cannot serve the task API on 127.0.0.1:{taken}: "
    )
    assert "Traceback" not in done.stderr and "serving" not in done.stderr
