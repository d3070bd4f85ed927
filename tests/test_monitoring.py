"""The deploy/ monitoring files, checked by real Prometheus tooling: promtool on the
config and rules (with unit tests for every alert), and a live Prometheus scraping a
router under load that answers every dashboard and rule query with series."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.core import Router
from tests.conftest import wait_for
from tests.servers import free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "byoa-router.json"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="no promtool (Debian package: prometheus)"
)
GRAFANA_VARS = {"$owner": ".*", "$account": ".*", "$__rate_interval": "15s", "${datasource}": ""}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    out = []
    for expr in exprs:
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        out.append(expr)
    return out


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ],
)
def test_promtool_accepts_the_config_and_the_rules_pass_their_unit_tests(args: list[str]) -> None:
    done = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_and_every_panel_a_query() -> None:
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts.test.yml").read_text()))
    assert {r["alert"] for r in rules()} <= tested
    board = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"owner", "account", "datasource"} <= names
    for panel in board["panels"]:
        assert panel["type"] == "row" or panel["targets"], panel["title"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    base = DEPLOY / "grafana" / "provisioning"
    source = yaml.safe_load((base / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((base / "dashboards" / "byoa.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]


def prom_query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@contextlib.contextmanager
def load_running(router: Router) -> Iterator[None]:
    """Tasks arriving on the intake all along: completions, fallbacks, failures, flips."""
    stop = threading.Event()

    def push() -> None:
        i = 0
        while not stop.wait(0.05):  # the arrival rate of the load, not synchronisation
            for owner, mode in (
                ("alice", "fast"),
                ("alice", "relax"),
                ("bob", "relax"),
                ("carol", "fast"),
            ):
                msg = {
                    "id": f"l{i}",
                    "owner": owner,
                    "input": {"prompt": "a cat", "process_mode": mode},
                }
                router.redis.lpush(router.keys.intake, json.dumps(msg))
                i += 1
            if i % 200 == 0:
                router.redis.lpush(router.keys.intake, b"{not json")

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus (Debian package)")
def test_prometheus_scraping_a_router_under_load_answers_every_query(
    tmp_path: Path,
    router: Router,
    add_account: Callable[..., None],
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    add_account("a-pro", "alice", "pro")
    add_account("a-basic", "alice", "basic", fast_hours=0.02)  # flips to relax soon
    add_account("b-basic", "bob", "basic")  # bob's relax tasks fail: no_relax_account
    add_account("c-std", "carol", "standard", fast_hours=0)  # carol's fast falls back
    metrics_port, prom_port = free_port(), free_port()
    spawn(
        "run",
        BYOA_METRICS_ENABLED="true",
        BYOA_METRICS_HOST="127.0.0.1",
        BYOA_METRICS_PORT=str(metrics_port),
    )
    spawn("worker", BYOA_BACKEND_SYNC_SECONDS="1")  # the simulator tells its fast time
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "byoa-router",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prom_port}"
    selectors = sorted({n for r in rules() for n in re.findall(r"\b(byoa_\w+|up)\b", r["expr"])})
    queries = dashboard_queries() + ["byoa_account_setting"] + [f"count({s})" for s in selectors]
    try:
        with load_running(router):
            empty: list[str] = []

            def all_answer() -> bool:
                empty[:] = [q for q in queries if not _safe_query(base, q)]
                return not empty

            try:
                wait_for(all_answer, timeout=120, what="every query to return series")
            except AssertionError:
                raise AssertionError(f"no series for: {empty}") from None
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
        assert set(health) == {r["alert"] for r in rules()}
        assert set(health.values()) == {"ok"}, health
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def _safe_query(base: str, expr: str) -> list[Any]:
    try:
        return prom_query(base, expr)
    except OSError:  # Prometheus still starting
        return []
