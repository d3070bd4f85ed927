"""The midjourney-proxy API end to end in processes: a `byoa api` process and a `byoa
worker` process on the midjourney-proxy driver, whose account is behind a stub of
trueai-org/midjourney-proxy (tests/mjproxy_stub.py). We are driven as new-api drives an
upstream proxy: submit, poll with list-by-condition until SUCCESS
(`controller/midjourney.go:78-114`), press a button the answer listed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.apikeys import ApiKeys
from router.core import Router
from router.settings import Settings
from tests.conftest import wait_for
from tests.mjproxy_stub import StubProxy
from tests.test_api_process import free_port
from tests.test_mjapi import IMAGINE, accepted, poll, submit

SECRET = "stub-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"driver": "mjproxy"})


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "BYOA_DRIVER": "mjproxy"}


@pytest.fixture
def stub() -> Iterator[StubProxy]:
    with StubProxy(secret=SECRET) as proxy:
        yield proxy


@pytest.fixture
def base(spawn: Callable[..., subprocess.Popen[bytes]]) -> str:
    """A `byoa api` process on a free port, ready, and a worker; the API's base URL."""
    port = free_port()
    proc = spawn("api", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "byoa api exited"
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, 30, "byoa api to be ready")
    spawn("worker")
    return url


def done(http: httpx.Client, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    """Poll as new-api does until the task ends; it must succeed."""

    def ended() -> dict[str, Any] | None:
        (task,) = poll(http, headers, [task_id])
        return task if task["status"] in ("SUCCESS", "FAILURE") else None

    task: dict[str, Any] = wait_for(ended, 60, f"task {task_id} to end")
    assert task["status"] == "SUCCESS", task
    return task


def test_imagine_then_u1_through_a_worker_and_a_midjourney_proxy(
    base: str, router: Router, stub: StubProxy
) -> None:
    spec = AccountSpec(
        id="a-pro",
        owner="alice",
        plan="pro",
        backend_url=stub.url + "/",
        credentials=SecretStr(SECRET),
    )
    router.apply(router.pool.add(spec))
    key = ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    headers = {"Content-Type": "application/json", "mj-api-secret": key}
    with httpx.Client(base_url=base, timeout=10) as http:
        grid_id = accepted(submit(http, "/mj-fast" + IMAGINE, headers, prompt="a lighthouse"))
        grid = done(http, headers, grid_id)
        assert grid["prompt"] == "a lighthouse --fast" and grid["imageUrl"]
        assert grid["properties"]["processMode"] == "fast"
        u1 = next(b["customId"] for b in grid["buttons"] if b["label"] == "U1")
        child = accepted(submit(http, "/mj/submit/action", headers, customId=u1, taskId=grid_id))
        upscaled = done(http, headers, child)
        assert upscaled["action"] == "UPSCALE" and upscaled["imageUrl"]
        fetched = http.get(f"/mj/task/{child}/fetch", headers=headers).json()
        assert fetched["id"] == child and fetched["status"] == "SUCCESS"
    # The proxy got the imagine with its mode flag, then its own U1 button pressed.
    assert [b["prompt"] for b in stub.sent("/mj/submit/imagine")] == ["a lighthouse --fast"]
    (press,) = stub.sent("/mj/submit/action")
    assert press["customId"].startswith("MJ::JOB::upsample::1::")
