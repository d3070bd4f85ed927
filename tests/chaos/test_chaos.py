"""A small chaos run in CI: nothing lost, doubled, over a limit or left held."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.chaos.chaos import run_chaos

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


@pytest.mark.slow
def test_router_and_worker_kills_redis_restarts_and_driver_faults_lose_nothing(
    tmp_path: Path,
) -> None:
    figures = run_chaos(tasks=600, kills=4, restarts=1, seed=7, workdir=tmp_path)
    print(figures)
    assert figures.accepted == figures.terminal == 600, figures
    assert set(figures.failed_by_code or {}) <= {"driver_error"}  # injected faults only
    assert figures.lost == figures.doubled == figures.over_limit_instants == 0
    assert figures.leases_left == figures.polls_left == figures.overspent_accounts == 0
    assert figures.router_kills == figures.worker_kills == 4 and figures.redis_restarts == 1
