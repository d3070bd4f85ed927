"""The deploy/ files checked against the code they run: commands and options exist in the
CLI, BYOA_* variables are settings, ports, probed and scraped paths are the ones the
router and the task API serve, grace periods agree, and the real tools (promtool,
compose, systemd-analyze, kustomize) accept the files when they are installed."""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from types import UnionType
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic import BaseModel
from redis import Redis

from router.accounts import read_accounts_file
from router.cli import main
from router.core import Router
from router.http import serve
from router.settings import CONFIG_ENV, Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DEFAULT_METRICS_PORT: int = Settings.model_fields["metrics_port"].default
ROUTER_JOB, API_JOB = "byoa-router", "byoa-api"
"""The scrape jobs of the routers and of the task API (the alert rules and the dashboard
query them by name)."""
SYSTEMD_TEMPLATES = {
    "/etc/byoa/env": SYSTEMD / "byoa.env.example",
    "/etc/byoa/settings.toml": REPO / "config" / "settings.example.toml",
}
"""Files the units read on a host, and the templates in this repository they come from."""
VAR = re.compile(r"\bBYOA_[A-Z0-9_]*[A-Z0-9]\b")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="no promtool (Debian package: prometheus)"
)


# --- reading the files ---------------------------------------------------------------


def load(path: Path) -> list[Any]:
    """Every document of a YAML file (Kubernetes files hold several)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def compose_services() -> dict[str, dict[str, Any]]:
    """The services of deploy/compose.yaml (YAML anchors merged)."""
    services: dict[str, dict[str, Any]] = load(COMPOSE)[0]["services"]
    return services


def k8s_objects() -> list[dict[str, Any]]:
    """The objects kustomization.yaml lists, in its order."""
    kustomization = load(K8S / "kustomization.yaml")[0]
    return [obj for name in kustomization["resources"] for obj in load(K8S / name)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    """The one object of this kind and name; fails if there is none or several."""
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def deployments() -> list[dict[str, Any]]:
    """The Deployments of the Kubernetes manifests."""
    return [o for o in k8s_objects() if o["kind"] == "Deployment"]


def service_monitors() -> list[dict[str, Any]]:
    """The Prometheus Operator's ServiceMonitors of the Kubernetes manifests."""
    return [o for o in k8s_objects() if o["kind"] == "ServiceMonitor"]


def monitored_services(monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The Services a ServiceMonitor selects."""
    selector = monitor["spec"]["selector"]["matchLabels"]
    return [
        o
        for o in k8s_objects()
        if o["kind"] == "Service" and selects(selector, o["metadata"]["labels"])
    ]


def served_deployments(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployments whose pods a Service sends to."""
    selector = service["spec"]["selector"]
    return [
        d for d in deployments() if selects(selector, d["spec"]["template"]["metadata"]["labels"])
    ]


def runs(deployment: dict[str, Any], command: str) -> bool:
    """Whether a Deployment's pods run `byoa <command>` (a container's args)."""
    return any(
        c.get("args") == [command] for c in deployment["spec"]["template"]["spec"]["containers"]
    )


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage (the one that runs)."""
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_exec(instruction: str) -> list[str]:
    """The image's ENTRYPOINT or CMD (exec form)."""
    values = [rest for word, rest in final_stage() if word == instruction]
    assert values, f"the image has no {instruction}"
    form: list[str] = json.loads(values[-1])
    return form


def unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's [Service] settings: key -> every value it is given."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def units() -> list[Path]:
    """The systemd unit files."""
    return sorted(SYSTEMD.glob("*.service"))


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with the file's own defaults (what a bare `up` uses)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, interpolated (map or list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def compose_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts of a service: container path -> file or directory in this repository."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (DEPLOY / source).resolve()
    return out


def as_list(command: str | list[str]) -> list[str]:
    """A command in exec form (a string is split as a shell would)."""
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def seconds(value: str | int) -> float:
    """`90`, `30s`, `2m`, `1m30s` as seconds."""
    if isinstance(value, int) or value.isdigit():
        return float(value)
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert parts and value, f"not a duration: {value!r}"
    return 60.0 * int(parts.group(1) or 0) + int(parts.group(2) or 0)


# --- every process the deploy files start ----------------------------------------------


@dataclass
class Process:
    """One `byoa` process a deploy file starts: its command line, its BYOA_* environment
    (BYOA_CONFIG pointing at the file in this repository it would read) and its grace."""

    source: str
    argv: list[str]
    env: dict[str, str]
    grace: float
    mounts: dict[str, Path] = field(default_factory=dict)


def compose_processes() -> list[Process]:
    out = []
    for name, service in compose_services().items():
        if "build" not in service and not str(service.get("image", "")).startswith("byoa"):
            continue
        command = as_list(service["command"]) if "command" in service else image_exec("CMD")
        env, mounts = compose_env(service), compose_mounts(service)
        if CONFIG_ENV in env:
            assert env[CONFIG_ENV] in mounts, f"compose {name}: {CONFIG_ENV} is not mounted"
            env[CONFIG_ENV] = str(mounts[env[CONFIG_ENV]])
        grace = seconds(service.get("stop_grace_period", "10s"))  # compose's default
        argv = image_exec("ENTRYPOINT") + command
        out.append(Process(f"compose {name}", argv, env, grace, mounts))
    return out


def k8s_processes(tmp_path: Path) -> list[Process]:
    """Containers' ConfigMap and Secret files are written under `tmp_path`."""
    out = []
    for deployment in deployments():
        pod = deployment["spec"]["template"]["spec"]
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        for container in pod.get("initContainers", []) + pod["containers"]:
            source = f"k8s {deployment['metadata']['name']}/{container['name']}"
            mounts = k8s_mounts(pod, container, tmp_path / source.replace("/", "-"))
            env = {}
            for var in container.get("env", []):
                env[var["name"]] = k8s_value(var)
            if CONFIG_ENV in env:
                assert env[CONFIG_ENV] in mounts, f"{source}: {CONFIG_ENV} is not mounted"
                env[CONFIG_ENV] = str(mounts[env[CONFIG_ENV]])
            command = container.get("command", image_exec("ENTRYPOINT"))
            args = container.get("args", [] if "command" in container else image_exec("CMD"))
            out.append(Process(source, [*command, *args], env, grace, mounts))
    return out


def k8s_value(var: dict[str, Any]) -> str:
    """An env entry's value, read from the Secret or ConfigMap it refers to."""
    if "value" in var:
        return str(var["value"])
    ref = var["valueFrom"]
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in ref:
            return k8s_data(kind, ref[key]["name"])[ref[key]["key"]]
    raise AssertionError(f"env {var['name']}: unsupported valueFrom {ref}")


def k8s_data(kind: str, name: str) -> dict[str, str]:
    """A ConfigMap's or Secret's keys and values (a Secret's data decoded)."""
    obj = k8s_object(kind, name)
    data: dict[str, str] = dict(obj.get("data", {}))
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return {**data, **obj.get("stringData", {})}


def k8s_mounts(pod: dict[str, Any], container: dict[str, Any], into: Path) -> dict[str, Path]:
    """Files a container sees from ConfigMaps and Secrets: container path -> a copy."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data, items = k8s_data("ConfigMap", volume["configMap"]["name"]), volume["configMap"]
        elif "secret" in volume:
            data, items = k8s_data("Secret", volume["secret"]["secretName"]), volume["secret"]
        else:
            continue
        paths = {i["key"]: i["path"] for i in items.get("items", [])} or {k: k for k in data}
        for key, path in paths.items():
            target = PurePosixPath(mount["mountPath"]) / path
            if "subPath" in mount:
                if mount["subPath"] != path:
                    continue
                target = PurePosixPath(mount["mountPath"])
            copy = into / target.relative_to("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(data[key])
            out[str(target)] = copy
    return out


def systemd_processes() -> list[Process]:
    out = []
    for path in units():
        service = unit(path)
        env: dict[str, str] = {}
        for name in service.get("EnvironmentFile", []):
            template = SYSTEMD_TEMPLATES.get(name.lstrip("-"))
            assert template is not None and template.is_file(), f"{path.name}: no template {name}"
            for line in template.read_text().splitlines():
                key, eq, value = line.partition("=")
                if eq and not line.lstrip().startswith("#"):
                    env[key.strip()] = value.strip()
        argv = shlex.split(service["ExecStart"][-1])
        if "--config" in argv:
            config = argv[argv.index("--config") + 1]
            template = SYSTEMD_TEMPLATES.get(config)
            assert template is not None and template.is_file(), f"{path.name}: no template {config}"
            env[CONFIG_ENV] = str(template)
        grace = seconds(service.get("TimeoutStopSec", ["90"])[-1])  # systemd's default
        out.append(Process(f"systemd {path.name}", argv, env, grace))
    return out


def all_processes(tmp_path: Path) -> list[Process]:
    return compose_processes() + k8s_processes(tmp_path) + systemd_processes()


# --- the CLI and the settings ------------------------------------------------------------


def cli_path(argv: list[str]) -> tuple[str, ...]:
    """Parse `argv` the way click would, against the real CLI; returns the command path
    (e.g. `("accounts", "load")`). Fails on an unknown command or option, an option
    missing its value, or a wrong number of arguments."""
    assert PurePosixPath(argv[0]).name == "byoa", f"{argv}: does not run byoa"
    command: click.Command = main
    path: list[str] = []
    args = list(argv[1:])
    positional: list[str] = []
    while args:
        token = args.pop(0)
        if token.startswith("-"):
            name, eq, _ = token.partition("=")
            options = [p for p in command.params if isinstance(p, click.Option)]
            option = next((o for o in options if name in o.opts + o.secondary_opts), None)
            assert option is not None, f"{argv}: `{' '.join(['byoa', *path])}` has no {name}"
            if not (option.is_flag or option.count or eq):
                assert args, f"{argv}: {name} needs a value"
                args.pop(0)
        elif isinstance(command, click.Group) and not positional:
            sub = command.commands.get(token)
            assert sub is not None, f"{argv}: `{' '.join(['byoa', *path])}` has no {token!r}"
            command, path = sub, [*path, token]
        else:
            positional.append(token)
    assert not isinstance(command, click.Group), f"{argv}: no command after {path}"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    required = sum(1 for a in arguments if a.required)
    assert required <= len(positional) <= len(arguments), f"{argv}: arguments {positional}"
    return tuple(path)


def names_a_setting(annotation: Any, parts: list[str]) -> bool:
    """Whether `parts` (a BYOA_ name's pieces split at `__`) is a path into `annotation`:
    model fields, then dict keys (enum values where the keys are an enum)."""
    if not parts:
        return True
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(names_a_setting(a, parts) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = annotation.model_fields.get(parts[0])
        return found is not None and names_a_setting(found.annotation, parts[1:])
    if typing.get_origin(annotation) is dict:
        key_type, value_type = typing.get_args(annotation)
        is_enum = isinstance(key_type, type) and issubclass(key_type, Enum)
        if is_enum and parts[0] not in {str(m.value) for m in key_type}:
            return False
        return names_a_setting(value_type, parts[1:])
    return False


def is_setting(var: str) -> bool:
    """Whether a BYOA_* variable sets a Settings field (or names the settings file)."""
    parts = var.removeprefix("BYOA_").lower().split("__")
    return var == CONFIG_ENV or names_a_setting(Settings, parts)


def settings_of(process: Process, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings `process` would run with: its BYOA_* environment over its TOML file."""
    for key in [k for k in os.environ if k.startswith("BYOA_")]:
        monkeypatch.delenv(key)
    for key, value in process.env.items():
        if key.startswith("BYOA_"):
            monkeypatch.setenv(key, value)
    return Settings()


def routers(processes: list[Process]) -> list[Process]:
    """The router replicas (`byoa run`) among `processes`."""
    return [p for p in processes if cli_path(p.argv) == ("run",)]


# --- the tests ---------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
    assert COMPOSE in files and K8S / "kustomization.yaml" in files
    for path in files:
        documents = load(path)
        assert documents, f"{path.relative_to(REPO)} is empty"
        if path.parent == K8S and path.name != "kustomization.yaml":
            for doc in documents:
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
                assert doc["metadata"]["name"], path.name


def test_kustomization_lists_every_manifest_and_sets_no_namespace() -> None:
    listed = load(K8S / "kustomization.yaml")[0]["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    for obj in k8s_objects():
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
    kinds = {o["kind"] for o in k8s_objects()}
    assert {"Deployment", "ConfigMap", "Secret", "Service", "ServiceMonitor"} <= kinds


def test_the_cli_check_catches_unknown_commands_and_options() -> None:
    assert cli_path(["byoa", "--config", "x.toml", "worker", "--burst"]) == ("worker",)
    assert cli_path(["byoa", "accounts", "load", "a.toml"]) == ("accounts", "load")
    for wrong in (
        ["byoa", "wrker"],
        ["byoa", "worker", "--nmae", "w1"],
        ["byoa", "--config"],
        ["byoa", "run", "extra"],
        ["byoa", "accounts"],
        ["python", "-m", "router", "run"],
    ):
        with pytest.raises(AssertionError):
            cli_path(wrong)


def test_every_command_a_deploy_file_runs_exists_in_the_cli(tmp_path: Path) -> None:
    processes = all_processes(tmp_path)
    for process in processes:
        cli_path(process.argv)
    for kind in ("compose", "k8s", "systemd"):
        paths = {cli_path(p.argv) for p in processes if p.source.startswith(kind)}
        assert {("run",), ("worker",)} <= paths, f"{kind} runs {paths}"
    # rq refuses a worker name still registered by a crashed worker (for minutes), so a
    # restarted worker must not reuse a fixed one.
    for process in processes:
        if cli_path(process.argv) == ("worker",):
            assert not any(a.startswith("--name") for a in process.argv), process.source


def test_every_byoa_variable_in_deploy_is_a_setting() -> None:
    assert is_setting("BYOA_PLANS__PRO__FAST_LIMIT") and is_setting("BYOA_MJPROXY__SERVER")
    assert not is_setting("BYOA_PLANS__GOLD__FAST_LIMIT") and not is_setting("BYOA_METRICS")
    seen = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix != ".json":
            for var in VAR.findall(path.read_text()):
                assert is_setting(var), f"{path.relative_to(REPO)}: {var} is no setting"
                seen.add(var)
    assert {"BYOA_REDIS_URL", CONFIG_ENV} <= seen


def test_every_process_gets_valid_settings_and_a_redis_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = all_processes(tmp_path)
    for process in processes:
        assert CONFIG_ENV in process.env, f"{process.source}: no settings file"
        settings = settings_of(process, monkeypatch)
        url = urlsplit(settings.redis_url.get_secret_value())
        assert url.scheme in ("redis", "rediss"), process.source
        assert url.password, f"{process.source}: Redis URL without a password"
    # Compose: the routers' and workers' password is the one Redis requires.
    redis = compose_services()["redis"]
    command = [interpolate(c) for c in as_list(redis["command"])]
    assert command[command.index("--appendonly") + 1] == "yes"
    password = command[command.index("--requirepass") + 1]
    for process in compose_processes():
        url = urlsplit(process.env["BYOA_REDIS_URL"])
        assert (url.hostname, url.port, url.password) == ("redis", 6379, password)


def test_every_accounts_file_loaded_is_mounted_and_valid(tmp_path: Path) -> None:
    loads = [p for p in all_processes(tmp_path) if cli_path(p.argv) == ("accounts", "load")]
    assert {p.source.split()[0] for p in loads} == {"compose", "k8s"}
    for process in loads:
        path = process.argv[-1]
        assert path in process.mounts, f"{process.source}: {path} is not mounted"
        assert read_accounts_file(process.mounts[path]), process.source


def test_metrics_ports_agree_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_services()
    compose_routers = routers(compose_processes())
    assert len(compose_routers) >= 2
    targets: set[str] = set()
    host_ports = []
    for process in compose_routers:
        name = process.source.removeprefix("compose ")
        settings = settings_of(process, monkeypatch)
        port = settings.metrics_port
        assert settings.metrics_enabled, name
        assert port == int(process.env.get("BYOA_METRICS_PORT", DEFAULT_METRICS_PORT)), name
        targets.add(f"{name}:{port}")
        health = " ".join(as_list(services[name]["healthcheck"]["test"]))
        for url in re.findall(r"https?://[^\s'\"]+", health):
            assert urlsplit(url).port == port, f"{name}: healthcheck on {url}"
        for published in services[name].get("ports", []):
            host, _, container = str(published).split("/")[0].rpartition(":")
            assert int(container) == port, f"{name} publishes {published}"
            host_ports.append(host)
    assert len(set(host_ports)) == len(host_ports), f"routers share host ports {host_ports}"
    assert scrape_targets()[ROUTER_JOB] == targets

    pod_template = k8s_object("Deployment", "byoa-router")["spec"]["template"]
    (container,) = [c for c in pod_template["spec"]["containers"] if c["args"] == ["run"]]
    (process,) = routers(k8s_processes(tmp_path))
    port = settings_of(process, monkeypatch).metrics_port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named.get("metrics") == port
    for probe in ("livenessProbe", "readinessProbe"):
        probe_port = container[probe]["httpGet"]["port"]
        assert named.get(probe_port, probe_port) == port, probe
    assert pod_template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    service = k8s_object("Service", "byoa-router")
    (service_port,) = service["spec"]["ports"]
    assert named.get(service_port["targetPort"], service_port["targetPort"]) == port
    monitor = k8s_object("ServiceMonitor", "byoa-router")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {service_port["name"]}


def test_api_ports_agree_with_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`byoa api` runs everywhere, probed and published on the port its settings give."""
    apis = [p for p in all_processes(tmp_path) if cli_path(p.argv) == ("api",)]
    assert {p.source.split()[0] for p in apis} == {"compose", "k8s", "systemd"}
    services = compose_services()
    scraped: set[str] = set()
    for process in apis:
        port = settings_of(process, monkeypatch).api_port
        if process.source.startswith("compose"):
            name = process.source.removeprefix("compose ")
            service = services[name]
            health = " ".join(as_list(service["healthcheck"]["test"]))
            assert {urlsplit(u).port for u in re.findall(r"https?://[^\s'\"]+", health)} == {port}
            assert [str(p).rpartition(":")[2] for p in service["ports"]] == [str(port)]
            scraped.add(f"{name}:{port}")
        elif process.source.startswith("k8s"):
            pod = k8s_object("Deployment", "byoa-api")["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            named = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert named[container[probe]["httpGet"]["port"]] == port, probe
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
            (service_port,) = k8s_object("Service", "byoa-api")["spec"]["ports"]
            assert named[service_port["targetPort"]] == port
            monitor = k8s_object("ServiceMonitor", "byoa-api")
            assert {e["port"] for e in monitor["spec"]["endpoints"]} == {service_port["name"]}
    # Prometheus scrapes every API the compose file runs, and nothing but the processes.
    assert scrape_targets()[API_JOB] == scraped
    assert scrape_targets().keys() == {ROUTER_JOB, API_JOB}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects objects with these labels."""
    return selector.items() <= labels.items()


def test_k8s_selectors_probes_resources_and_security() -> None:
    router = k8s_object("Deployment", "byoa-router")
    worker = k8s_object("Deployment", "byoa-worker")
    assert router["spec"]["replicas"] == 2 and worker["spec"]["replicas"] >= 1
    router_labels = router["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    for deployment in (router, worker):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod.get("initContainers", []) + pod["containers"]:
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= requests.keys(), container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = k8s_object("Service", "byoa-router")["spec"]["selector"]
    assert selects(service, router_labels) and not selects(service, worker_labels)
    budget = k8s_object("PodDisruptionBudget", "byoa-router")["spec"]["selector"]["matchLabels"]
    assert selects(budget, router_labels) and not selects(budget, worker_labels)
    for command, name in (("run", "byoa-router"), ("api", "byoa-api")):
        monitor = k8s_object("ServiceMonitor", name)
        assert [s["metadata"]["name"] for s in monitored_services(monitor)] == [name]
        assert [d["metadata"]["name"] for d in served_deployments(k8s_object("Service", name))] == [
            name
        ]
        assert runs(k8s_object("Deployment", name), command), name
    (container,) = router["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "livenessProbe" not in worker["spec"]["template"]["spec"]["containers"][0]
    uid = final_stage_user()
    for deployment in (router, worker):
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_the_alerts_job_is_the_one_every_scrape_config_gives() -> None:
    jobs = set(re.findall(r'job="([^"]+)"', (DEPLOY / "prometheus" / "alerts.yml").read_text()))
    assert jobs, "the alert rules name no job"
    config = load(prometheus_config_of_compose()[0])[0]
    assert {j["job_name"] for j in config["scrape_configs"]} <= jobs
    # A ServiceMonitor's targets get the Service's name as their job (no jobLabel set).
    monitored: set[str] = set()
    for monitor in service_monitors():
        assert "jobLabel" not in monitor["spec"], monitor["metadata"]["name"]
        matched = {s["metadata"]["name"] for s in monitored_services(monitor)}
        assert matched and matched <= jobs, monitor["metadata"]["name"]
        monitored |= matched
    assert monitored == {ROUTER_JOB, API_JOB}


@pytest.fixture
def http_base(settings: Settings, redis_conn: Redis) -> Iterator[str]:
    """The router's real HTTP server on a free port, against the test's Redis."""
    local = settings.model_copy(update={"metrics_host": "127.0.0.1", "metrics_port": 0})
    server = serve(Router(local, redis_conn))
    assert server is not None
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def get_status(url: str) -> int:
    """The HTTP status of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def probe_paths(command: str) -> list[tuple[str, str]]:
    """Every HTTP path a deploy file probes or scrapes on a `byoa <command>` process
    (`run`: a router, `api`: the task API), with where."""
    out: list[tuple[str, str]] = []
    runners = {
        p.source.removeprefix("compose ")
        for p in compose_processes()
        if cli_path(p.argv) == (command,)
    }
    for name in runners:
        health = " ".join(as_list(compose_services()[name].get("healthcheck", {}).get("test", [])))
        for url in re.findall(r"https?://127\.0\.0\.1[^\s'\"]*", health):
            out.append((urlsplit(url).path, f"compose {name} healthcheck"))
    for deployment in deployments():
        if not runs(deployment, command):
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    out.append((container[probe]["httpGet"]["path"], f"k8s {probe}"))
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/path" in annotations:
            out.append((annotations["prometheus.io/path"], "k8s prometheus.io/path"))
    for monitor in service_monitors():
        served = [d for s in monitored_services(monitor) for d in served_deployments(s)]
        if any(runs(d, command) for d in served):
            where = f"ServiceMonitor {monitor['metadata']['name']}"
            out += [(e.get("path", "/metrics"), where) for e in monitor["spec"]["endpoints"]]
    for job in load(prometheus_config_of_compose()[0])[0]["scrape_configs"]:
        hosts = {t.rpartition(":")[0] for s in job.get("static_configs", []) for t in s["targets"]}
        if hosts & runners:
            out.append((job.get("metrics_path", "/metrics"), f"prometheus.yml {job['job_name']}"))
    return out


def test_probed_and_scraped_paths_are_served_by_the_router(http_base: str) -> None:
    paths = probe_paths("run")
    assert {"/healthz", "/readyz", "/metrics"} <= {path for path, _ in paths}
    assert {"ServiceMonitor byoa-router", f"prometheus.yml {ROUTER_JOB}"} <= {w for _, w in paths}
    for path, where in paths:
        assert get_status(http_base + path) == 200, f"{where}: {path}"
    assert get_status(http_base + "/health") == 404  # the server does tell paths apart


def test_probed_and_scraped_paths_are_served_by_the_api(api: str) -> None:
    paths = probe_paths("api")
    assert {"/healthz", "/readyz", "/metrics"} <= {path for path, _ in paths}
    assert {"ServiceMonitor byoa-api", f"prometheus.yml {API_JOB}"} <= {w for _, w in paths}
    for path, where in paths:
        assert get_status(api + path) == 200, f"{where}: {path}"
    assert get_status(api + "/health") == 404


def prometheus_config_of_compose() -> tuple[Path, str, dict[str, Path]]:
    """The config file the compose Prometheus reads: (its copy here, its container path,
    every bind mount of that service)."""
    service = compose_services()["prometheus"]
    flags = dict(a.partition("=")[::2] for a in as_list(service.get("command", [])))
    container_path = flags.get("--config.file", "/etc/prometheus/prometheus.yml")
    mounts = compose_mounts(service)
    assert container_path in mounts, "the Prometheus config is not mounted"
    return mounts[container_path], container_path, mounts


def scrape_targets() -> dict[str, set[str]]:
    """The compose Prometheus's static targets, by job."""
    out: dict[str, set[str]] = {}
    for job in load(prometheus_config_of_compose()[0])[0]["scrape_configs"]:
        for static in job.get("static_configs", []):
            out.setdefault(job["job_name"], set()).update(static["targets"])
    return out


@needs_promtool
def test_promtool_accepts_the_prometheus_config_compose_mounts(tmp_path: Path) -> None:
    """Checked where the container sees it, so its rule files must be mounted beside it."""
    _, container_path, mounts = prometheus_config_of_compose()
    for target, source in mounts.items():
        copy = tmp_path / target.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copy(source, copy)
    config = tmp_path / container_path.lstrip("/")
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert b"SUCCESS" in done.stdout + done.stderr


def compose_command() -> list[str] | None:
    """`docker compose` (v2), else `docker-compose`, else None."""
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if done.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates_with_docker_compose() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "COMPOSE_FILE")}
    base = [*command, "-f", str(COMPOSE)]
    done = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([*base, "config", "--services"], capture_output=True, text=True, env=env)
    assert set(done.stdout.split()) == set(compose_services())


def test_compose_services_are_wired_as_documented() -> None:
    services = compose_services()
    redis = services["redis"]
    assert redis.get("healthcheck") and any(v.endswith(":/data") for v in redis["volumes"])
    for process in compose_processes():
        name = process.source.removeprefix("compose ")
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
    for process in routers(compose_processes()):
        assert "healthcheck" in services[process.source.removeprefix("compose ")]
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 1
    # `--scale worker=N` needs no fixed container name and no fixed host port.
    assert "container_name" not in worker and "ports" not in worker
    # Grafana reads the provisioning here and the dashboards where the provider looks.
    grafana = compose_mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "byoa.yml")[0]
    dashboards = grafana[provider["providers"][0]["options"]["path"]]
    assert (dashboards / "byoa-router.json").is_file()
    source = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    assert urlsplit(source["datasources"][0]["url"]).hostname in services


def test_grace_periods_agree_and_cover_a_submission(tmp_path: Path) -> None:
    graces: dict[tuple[str, ...], set[float]] = {}
    for process in all_processes(tmp_path):
        if process.source.startswith("k8s") and cli_path(process.argv) == ("accounts", "load"):
            continue  # an init container: the pod's grace is its router's
        graces.setdefault(cli_path(process.argv), set()).add(process.grace)
    router, worker = graces[("run",)], graces[("worker",)]
    assert len(router) == 1 and len(worker) == 1, graces
    # A worker's SIGTERM waits for the submission in hand, driver retries included.
    s = Settings()
    submission = (s.transient_retries + 1) * s.mjproxy.request_timeout_seconds
    submission += s.transient_backoff_seconds * (2**s.transient_retries - 1)
    assert min(worker) >= submission > 0
    assert min(worker) >= min(router)


def test_systemd_units_run_real_commands_and_stop_gracefully() -> None:
    for path in units():
        service = unit(path)
        assert len(service["ExecStart"]) == 1, path.name
        assert service.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"], path.name
        # Only the main process gets SIGTERM: rq's job process would die of it.
        assert service.get("KillMode") == ["mixed"], path.name
        assert service.get("User"), f"{path.name} runs as root"
    assert {p.name for p in units()} == {
        "byoa-router.service",
        "byoa-worker@.service",
        "byoa-api.service",
    }


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    byoa = shutil.which("byoa") or str(Path(sys.executable).parent / "byoa")
    assert Path(byoa).is_file(), "the byoa command is not installed"
    names = []
    for path in units():
        text = path.read_text().replace("/opt/byoa/bin/byoa", byoa)
        (tmp_path / path.name).write_text(text)
        names.append(path.name.replace("@.", "@1."))
    for name in names:
        done = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert name.split("@")[0].removesuffix(".service") not in output, output


def final_stage_user() -> int:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root"
    return int(uid)


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether a path is left out of the build context (last matching pattern wins)."""
    parts = relative.split("/")
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            result = not negate
    return result


def test_dockerfile_installs_the_project_as_a_non_root_byoa() -> None:
    froms = [rest.split()[0] for word, rest in dockerfile() if word == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    final_stage_user()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    entry = image_exec("ENTRYPOINT")
    assert len(entry) == 1 and project["scripts"].get(entry[0]) == "router.cli:main"
    cli_path([*entry, *image_exec("CMD")])

    ignore = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    copied = [
        source
        for word, rest in dockerfile()
        if word == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    ]
    packages = {
        p.rstrip("*")
        for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]["find"]["include"]
    }
    assert {"pyproject.toml", project["readme"], *packages} <= set(copied)
    for source in copied:
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        assert files, f"COPY {source}: nothing there"
        for path in files:
            relative = path.relative_to(REPO).as_posix()
            if "__pycache__" not in relative:
                assert not dockerignored(relative, patterns), f"{relative} is not in the context"
    for heavy in (".git", ".venv", "tests", "router/__pycache__/x.pyc"):
        assert dockerignored(heavy, patterns), f"{heavy} would be sent to the builder"
    assert not dockerignored("deploy/Dockerfile", patterns)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl (for kustomize)")
def test_kustomize_renders_every_object_with_the_image() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in rendered) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in k8s_objects()
    )
    image = load(K8S / "kustomization.yaml")[0]["images"][0]
    expected = f"{image['newName']}:{image['newTag']}"
    for obj in rendered:
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                assert container["image"] == expected, container["name"]
