"""The scale benchmark's short form runs end to end (real workers, a router, the
simulator) and prints its figures as documented; it asserts nothing about speed (the
figures are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from redis import Redis

from tests.conftest import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parents[1]


def test_the_short_form_holds_jobs_and_prints_every_figure(redis_conn: Redis) -> None:
    cmd = [sys.executable, "-m", "bench.scale", "--short", "--json", "--redis-url", TEST_REDIS_URL]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (run,) = out["runs"]
    assert run["jobs"] == 300 and run["accounts"] > 0
    hold, carrying = run["windows"]
    assert (hold["name"], carrying["name"]) == ("hold", "carrying")
    for w in (hold, carrying):
        assert w["running"] > 0  # jobs were held through the window
        for figure in (
            "redis_us_per_job_second",
            "worker_cores_per_1000_jobs",
            "commands_per_job_second",
            "polls_per_job_second",
            "redis_cores_at_150k",
            "worker_cores_at_150k",
        ):
            assert w[figure] >= 0, figure
    assert hold["routed"] > 0  # ended jobs were replaced
    assert carrying["routed"] == 0  # nothing started: carrying alone
    names = [b["name"] for b in out["baselines"]]
    assert any(n.startswith("rq") for n in names) and any(n.startswith("routing") for n in names)
    assert "At 150,000 running jobs" in done.stdout
    assert not [k for k in redis_conn.scan_iter(match="scale*", count=1000)]  # cleaned up
