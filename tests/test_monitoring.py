"""The deploy/ monitoring files, checked by real Prometheus tooling: promtool on the
config and rules (with unit tests for every alert), and a live Prometheus, with the
deployed scrape jobs, scraping a router and two `byoa api` processes under load that
answers every dashboard and rule query with series (the API row's with non-zero ones)."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router.apikeys import ApiKeys
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
API_ROW = "HTTP API (byoa api)"
TASKS = "/api/v1/task"
IMAGINE = {"model": "midjourney", "task_type": "imagine", "input": {"prompt": "a cat"}}


def dashboard_queries(row: str | None = None) -> list[str]:
    """Every PromQL expression of the dashboard (of the panels under `row` only, if
    given), Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    exprs, under = [], None
    for panel in board["panels"]:
        if panel["type"] == "row":
            under = panel["title"]
        elif row is None or under == row:
            exprs += [t["expr"] for t in panel.get("targets", [])]
    assert exprs, f"no panels under {row!r}"
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


@contextlib.contextmanager
def api_load_running(base: str, broken: str, keys: dict[str, str]) -> Iterator[None]:
    """Requests to `byoa api` all along: tasks made and read on both APIs, unknown tasks,
    invalid bodies, each kind of refused key, a key over its rate; and task requests to
    `broken`, a `byoa api` whose Redis does not answer (503)."""
    stop = threading.Event()
    refused = {"x-api-key": "byoa_0123456789ab_" + "A" * 32}  # well formed, unknown
    cases: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
        ("POST", TASKS, {"x-api-key": keys["alice"]}, IMAGINE),
        ("GET", f"{TASKS}/nope", {"x-api-key": keys["alice"]}, None),
        ("POST", TASKS, {"x-api-key": keys["alice"]}, {"model": "midjourney"}),
        ("GET", f"{TASKS}/nope", {}, None),
        ("GET", f"{TASKS}/nope", {"x-api-key": "hunter2"}, None),
        ("GET", f"{TASKS}/nope", refused, None),
        ("GET", f"{TASKS}/nope", {"x-api-key": keys["revoked"]}, None),
        ("GET", f"{TASKS}/nope", {"x-api-key": keys["slow"]}, None),  # 1/s: then 429
        ("GET", f"{TASKS}/nope", {"x-api-key": keys["slow"]}, None),
        ("POST", "/mj/submit/imagine", {"mj-api-secret": keys["alice"]}, {"prompt": "a cat"}),
        ("GET", "/mj/task/nope/fetch", {"mj-api-secret": keys["alice"]}, None),
    ]
    seen: set[int] = set()

    def send() -> None:
        with httpx.Client(base_url=base, timeout=10) as http, httpx.Client(timeout=10) as down:
            while not stop.wait(0.2):  # the arrival rate of the load, not synchronisation
                for method, path, headers, body in cases:
                    seen.add(http.request(method, path, headers=headers, json=body).status_code)
                answer = down.post(
                    broken + TASKS, headers={"x-api-key": keys["alice"]}, json=IMAGINE
                )
                seen.add(answer.status_code)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    assert {200, 400, 401, 404, 429, 503} <= seen, seen


def start_api(spawn: Callable[..., subprocess.Popen[bytes]], probe: str, **env: str) -> str:
    """A `byoa api` process on a free port, once `probe` answers 200; its base URL."""
    port = free_port()
    proc = spawn("api", "--host", "127.0.0.1", "--port", str(port), **env)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, "byoa api exited"
        try:
            return httpx.get(base + probe, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, 30, f"byoa api's {probe}")
    return base


def scrape_configs(targets: dict[str, list[str]]) -> list[dict[str, Any]]:
    """deploy/prometheus/prometheus.yml's jobs (their names, paths) on these targets."""
    deployed = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    assert {j["job_name"] for j in deployed} == targets.keys()
    return [{**job, "static_configs": [{"targets": targets[job["job_name"]]}]} for job in deployed]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus (Debian package)")
def test_prometheus_scraping_a_router_and_the_api_under_load_answers_every_query(
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
    api_keys = ApiKeys(router.redis, router.scripts)
    keys = {
        name: api_keys.create("alice", name, rate)[1].get_secret_value()
        for name, rate in (("alice", None), ("slow", 1.0), ("revoked", None))
    }
    api_keys.revoke(keys["revoked"].split("_")[1])
    api = start_api(spawn, "/readyz")
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    broken = start_api(spawn, "/healthz", BYOA_REDIS_URL=nowhere)
    targets = {
        "byoa-router": [f"127.0.0.1:{metrics_port}"],
        "byoa-api": [urllib.parse.urlsplit(b).netloc for b in (api, broken)],
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS / "alerts.yml")],
        "scrape_configs": scrape_configs(targets),
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
    api_queries = dashboard_queries(API_ROW)
    queries = [q for q in queries if q not in api_queries]
    try:
        with load_running(router), api_load_running(api, broken, keys):
            empty: list[str] = []

            def all_answer() -> bool:
                empty[:] = [q for q in queries if not _safe_query(base, q)]
                empty.extend(q for q in api_queries if not _nonzero(_safe_query(base, q)))
                return not empty

            try:
                wait_for(all_answer, timeout=60, what="every query to return series")
            except AssertionError:
                raise AssertionError(f"no series (API row: none above 0) for: {empty}") from None
        # Route labels are templates: the ids the load asked for are in none.
        answered = prom_query(base, "count by (route) (byoa_api_requests_total)")
        routes = {s["metric"]["route"] for s in answered}
        assert {f"{TASKS}/{{task_id}}", "/mj/task/{task_id}/fetch"} <= routes, routes
        assert not any("nope" in route for route in routes), routes
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
        assert set(health) == {r["alert"] for r in rules()}
        assert set(health.values()) == {"ok"}, health
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def _nonzero(series: list[Any]) -> bool:
    """Whether some series of an instant query's answer has a value other than 0 (or NaN:
    a quantile of no requests)."""
    values = [float(s["value"][1]) for s in series]
    return any(v != 0 and not math.isnan(v) for v in values)


def _safe_query(base: str, expr: str) -> list[Any]:
    try:
        return prom_query(base, expr)
    except OSError:  # Prometheus still starting
        return []
