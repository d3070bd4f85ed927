"""The midjourney-proxy driver against a stub proxy over real HTTP, with real Redis and rq."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from router.cli import main
from router.client import Client
from router.core import Router
from router.errors import AccountError
from router.models import Mode
from router.pool import AccountSpec
from router.settings import Settings
from tests.conftest import wait_for
from tests.mjproxy_stub import StubProxy
from workers.drivers import make_driver
from workers.drivers.base import (
    AccountNeedsAttention,
    AccountRef,
    DriverError,
    DriverJob,
    DriverResult,
    OutOfFastHours,
    TransientError,
    UnknownJob,
)
from workers.drivers.mjproxy import MjProxyDriver

SECRET = "stub-secret"
TIMEOUT = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """This module's processes use the midjourney-proxy driver."""
    return settings.model_copy(
        update={
            "driver": "mjproxy",
            "mjproxy": settings.mjproxy.model_copy(update={"request_timeout_seconds": TIMEOUT}),
        }
    )


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "BYOA_DRIVER": "mjproxy",
        "BYOA_MJPROXY__REQUEST_TIMEOUT_SECONDS": str(TIMEOUT),
    }


@pytest.fixture
def stub() -> Iterator[StubProxy]:
    with StubProxy(secret=SECRET) as proxy:
        yield proxy


@pytest.fixture
def account(router: Router, stub: StubProxy) -> AccountRef:
    """A pro account behind the stub proxy, as a worker reads it from Redis."""
    spec = AccountSpec(
        id="a-pro",
        owner="alice",
        plan="pro",
        backend_url=stub.url + "/",
        credentials=SecretStr(SECRET),
    )
    router.apply(router.pool.add(spec))
    ref = router.account_ref("alice", "a-pro")
    assert ref is not None and ref.backend_url == stub.url
    return ref


@pytest.fixture
def driver(router: Router) -> MjProxyDriver:
    built = make_driver(router.settings, router.redis)
    assert isinstance(built, MjProxyDriver)
    return built


def job(prompt: str | None, mode: Mode = Mode.FAST, key: str = "", **kw: Any) -> DriverJob:
    task_type = kw.pop("task_type", "imagine")
    return DriverJob("t1", task_type, mode, prompt, kw.pop("input", {}), key=key, **kw)


def finish(driver: MjProxyDriver, handle: str) -> DriverResult:
    result: DriverResult = wait_for(lambda: driver.poll(handle), timeout=10, what="the job")
    return result


def test_submit_and_poll_to_success(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    handle = driver.submit(account, job("a lighthouse --turbo", Mode.TURBO, key="k-1"))
    assert stub.sent("/mj/submit/imagine") == [{"prompt": "a lighthouse --turbo", "state": "k-1"}]
    assert driver.poll(handle) is None  # submitted, then running
    done = finish(driver, handle)
    assert done.gpu_ms == 4 * stub.run_ms  # turbo: four times its run, at the fast rate
    out = done.output
    assert out["proxy_task_id"] in handle and out["account_id"] == "a-pro"
    assert out["image_url"].endswith(".png") and len(out["buttons"]) == 9
    assert {"customId", "label", "emoji"} == set(out["buttons"][0])


def test_prompt_must_carry_the_jobs_flag(driver: MjProxyDriver, account: AccountRef) -> None:
    for prompt in ("a cat", "a cat --relax", "a cat --fast --turbo"):
        with pytest.raises(DriverError, match="exactly one mode flag"):
            driver.submit(account, job(prompt))


def test_child_actions_press_the_parents_buttons(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    grid = finish(driver, driver.submit(account, job("a fox --fast"))).output
    up = driver.submit(
        account, job(None, task_type="upscale", input={"index": 3}, parent_result=grid, key="u")
    )
    (sent,) = stub.sent("/mj/submit/action")
    assert sent["taskId"] == grid["proxy_task_id"] and sent["state"] == "u"
    assert sent["customId"] == f"MJ::JOB::upsample::3::{grid['proxy_task_id']}-hash"
    upscaled = finish(driver, up).output
    assert upscaled["proxy_task_id"] != grid["proxy_task_id"]

    # Vary (region) needs the modal step: the action, then the mask and prompt.
    inpaint = job(
        "a red sky --fast",
        task_type="inpaint",
        input={"mask_base64": "data:image/png;base64,AAAA"},
        parent_result=upscaled,
    )
    finish(driver, driver.submit(account, inpaint))
    assert stub.sent("/mj/submit/action")[-1]["customId"].startswith("MJ::Inpaint::1::")
    (modal,) = stub.sent("/mj/submit/modal")
    assert modal["prompt"] == "a red sky --fast"
    assert modal["maskBase64"] == "data:image/png;base64,AAAA"

    pan = job(None, task_type="pan", input={"direction": "up"}, parent_result=upscaled)
    finish(driver, driver.submit(account, pan))
    assert stub.sent("/mj/submit/action")[-1]["customId"].startswith("MJ::JOB::pan_up::")
    zoom = job(None, task_type="outpaint", input={"zoom": 1.5}, parent_result=upscaled)
    finish(driver, driver.submit(account, zoom))
    assert stub.sent("/mj/submit/action")[-1]["customId"].startswith("MJ::Outpaint::75::")

    with pytest.raises(DriverError, match="no MJ::JOB::pan_sideways"):
        bad = job(None, task_type="pan", input={"direction": "sideways"}, parent_result=upscaled)
        driver.submit(account, bad)
    relax_child = job(None, task_type="upscale", mode=Mode.RELAX, parent_result=grid)
    with pytest.raises(DriverError, match="cannot run a relax child of a fast job"):
        driver.submit(account, relax_child)  # the action would run fast: refused, not run
    elsewhere = {**grid, "account_id": "a-other"}
    with pytest.raises(DriverError, match="on account a-other"):
        driver.submit(account, job(None, task_type="reroll", parent_result=elsewhere))


def test_a_proxy_without_buttons_gets_children_through_change(
    router: Router, driver: MjProxyDriver
) -> None:
    with StubProxy(secret=None, buttons=False) as legacy:
        spec = AccountSpec(id="a-old", owner="alice", plan="pro", backend_url=legacy.url)
        router.apply(router.pool.add(spec))
        ref = router.account_ref("alice", "a-old")
        assert ref is not None and ref.credentials is None
        grid = finish(driver, driver.submit(ref, job("an owl --fast"))).output
        assert grid["buttons"] == []
        variation = job(None, task_type="variation", input={"index": 2}, parent_result=grid)
        finish(driver, driver.submit(ref, variation))
        (sent,) = legacy.sent("/mj/submit/change")
        assert sent["taskId"] == grid["proxy_task_id"]
        assert (sent["action"], sent["index"]) == ("VARIATION", 2)
        with pytest.raises(DriverError, match="cannot run pan"):
            driver.submit(ref, job(None, task_type="pan", parent_result=grid))


@pytest.mark.parametrize(
    ("prompt", "error"),
    [
        ("a cat outoffast --fast", OutOfFastHours),
        ("a cat cnexhausted --fast", OutOfFastHours),
        ("a cat banned --fast", AccountNeedsAttention),
        ("a cat captcha --fast", AccountNeedsAttention),
        ("a cat modnotice --fast", AccountNeedsAttention),
        ("a cat oops --fast", DriverError),
        ("a cat badprompt --fast", DriverError),
        ("a cat queuefull --fast", TransientError),
        ("a cat servererror --fast", TransientError),
        ("a cat slow --fast", TransientError),
    ],
)
def test_failures_map_to_driver_errors(
    driver: MjProxyDriver, account: AccountRef, prompt: str, error: type[DriverError]
) -> None:
    with pytest.raises(DriverError) as raised:
        finish(driver, driver.submit(account, job(prompt)))
    assert type(raised.value) is error, raised.value


def test_relax_runs_where_fast_hours_are_out(driver: MjProxyDriver, account: AccountRef) -> None:
    assert finish(driver, driver.submit(account, job("outoffast --relax", Mode.RELAX))).gpu_ms > 0


def test_unknown_jobs_unreachable_backends_and_wrong_secrets(
    router: Router, driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    with pytest.raises(UnknownJob):
        driver.poll("mjp:alice:a-pro:fast:imagine:999")
    with pytest.raises(UnknownJob):
        driver.poll("sim-handle")
    wrong = AccountRef("a-pro", "alice", account.plan, 0, SecretStr("nope"), stub.url)
    with pytest.raises(AccountNeedsAttention, match="refused the account's secret"):
        driver.submit(wrong, job("a cat --fast"))
    with StubProxy() as gone:
        url = gone.url
    down = AccountRef("a-pro", "alice", account.plan, 0, SecretStr(SECRET), url)
    with pytest.raises(TransientError, match="unreachable"):
        driver.submit(down, job("a cat --fast"))
    router.pool.update("a-pro", backend_url=url)  # another worker reads the new URL
    fresh = MjProxyDriver(router.settings, router.redis)
    with pytest.raises(TransientError):
        fresh.poll("mjp:alice:a-pro:fast:imagine:1")
    with pytest.raises(AccountError, match="http"):
        router.pool.update("a-pro", backend_url="ftp://example.com")


def test_any_process_polls_a_handle(
    router: Router, driver: MjProxyDriver, account: AccountRef
) -> None:
    handle = driver.submit(account, job("a heron --fast"))
    other = MjProxyDriver(router.settings, router.redis)  # knows nothing but the handle
    assert finish(other, handle).output["account_id"] == "a-pro"


def test_lookup_finds_a_job_whose_submitter_timed_out(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    handle = driver.submit(account, job("a swan --fast", key="key-1"))
    assert driver.lookup(account, "key-1") == handle
    assert driver.lookup(account, "key-2") is None
    # The proxy took the job but answered too late: found by its key, not submitted twice.
    late = driver.submit(account, job("a late swan --fast", key="key-3"))
    assert driver.lookup(account, "key-3") == late
    assert len(stub.sent("/mj/submit/imagine")) == 2
    assert finish(driver, late).gpu_ms == stub.run_ms


def test_mode_path_pins_the_proxys_mode(
    router: Router, account: AccountRef, stub: StubProxy
) -> None:
    opts = router.settings.mjproxy.model_copy(update={"mode_path": True})
    driver = MjProxyDriver(router.settings.model_copy(update={"mjproxy": opts}), router.redis)
    finish(driver, driver.submit(account, job("a moth --relax", Mode.RELAX)))
    assert stub.requests[0][1] == "/mj-relax/mj/submit/imagine"


def test_cancel_stops_the_job_and_charges_its_run(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    handle = driver.submit(account, job("a long night --fast"))
    assert driver.poll(handle) is None
    used = driver.cancel(handle)
    assert 0 <= used < 60_000
    assert stub.sent(f"/mj/task/{handle.rsplit(':', 1)[1]}/cancel") == [{}]
    with pytest.raises(DriverError):
        driver.poll(handle)  # the proxy failed it ("取消任务")
    assert driver.cancel(handle) == used  # idempotent
    assert driver.cancel("mjp:alice:a-pro:fast:imagine:404") == 0


def test_the_secret_stays_out_of_handles_logs_and_results(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handle = driver.submit(account, job("a kite --fast", key="k"))
    seen = [handle, json.dumps(finish(driver, handle).output), repr(account)]
    for prompt in ("banned --fast", "servererror --fast"):
        with pytest.raises(DriverError) as raised:
            finish(driver, driver.submit(account, job(prompt)))
        seen.append(str(raised.value))
    wrong = AccountRef("a-pro", "alice", account.plan, 0, SecretStr("nope"), stub.url)
    with pytest.raises(DriverError) as refused:
        driver.submit(wrong, job("a kite --fast"))
    seen += [str(refused.value), driver.lookup(account, "k") or ""]
    assert caplog.records  # the driver did log
    assert not any(SECRET in s or "nope" in s for s in [*seen, caplog.text])


def test_backend_url_is_validated_and_set_from_the_cli(
    router: Router, env: dict[str, str], stub: StubProxy
) -> None:
    for bad in ("ftp://host", "http://user:pw@host", "https://host/?x=1", "no-url"):
        with pytest.raises(ValidationError):
            AccountSpec(id="a1", owner="alice", plan="pro", backend_url=bad)
    runner = CliRunner()
    args = ["accounts", "add", "a-cli", "--owner", "alice", "--plan", "pro"]
    added = runner.invoke(main, [*args, "--backend-url", "https://mj.example.com/"], env=env)
    assert added.exit_code == 0, added.output
    assert router.pool.get("a-cli").backend_url == "https://mj.example.com"  # type: ignore[union-attr]
    changed = runner.invoke(main, ["accounts", "set", "a-cli", "--backend-url", stub.url], env=env)
    assert changed.exit_code == 0, changed.output
    assert router.pool.get("a-cli").backend_url == stub.url  # type: ignore[union-attr]
    refused = runner.invoke(main, ["accounts", "set", "a-cli", "--backend-url", "x"], env=env)
    assert refused.exit_code != 0 and "http" in refused.output


def test_settings_merge_one_modes_gpu_factor() -> None:
    opts = Settings(driver="mjproxy", mjproxy={"gpu_per_wall": {"turbo": 3}}).mjproxy
    assert opts.gpu_per_wall == {Mode.FAST: 1.0, Mode.TURBO: 3.0, Mode.RELAX: 1.0}


def test_end_to_end_with_a_worker_process(
    client: Client,
    router: Router,
    stub: StubProxy,
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A router routes, an rq worker process submits and polls through the proxy; an
    account whose proxy reports fast hours out flips to relax and the task runs again."""
    for account_id, plan in (("a-pro", "pro"), ("a-std", "standard")):
        spec = AccountSpec(
            id=account_id,
            owner=account_id.removeprefix("a-"),
            plan=plan,
            backend_url=stub.url,
            credentials=SecretStr(SECRET),
        )
        router.apply(router.pool.add(spec))
    spawn("worker")
    grid = client.submit("pro", "a lighthouse at dusk", mode="fast")
    done = client.wait(grid.id, timeout=30)
    assert (done.status, done.account_id, done.effective_mode) == ("completed", "a-pro", "fast")
    assert done.result is not None and done.result["buttons"]
    up = client.submit("pro", task_type="upscale", parent_id=grid.id, input={"index": 2})
    assert client.wait(up.id, timeout=30).status == "completed"
    (action,) = stub.sent("/mj/submit/action")
    assert action["taskId"] == done.result["proxy_task_id"]
    assert action["customId"].startswith("MJ::JOB::upsample::2::")

    cat = client.submit("std", "a cat outoffast", mode="fast")
    ran = client.wait(cat.id, timeout=30)
    assert (ran.status, ran.effective_mode, ran.attempt) == ("completed", "relax", 2)
    assert ran.fallback_reason == "fast_hours_exhausted"
    prompts = [b["prompt"] for b in stub.sent("/mj/submit/imagine")]
    assert prompts[-2:] == ["a cat outoffast --fast", "a cat outoffast --relax"]
    flipped = router.pool.get("a-std")
    assert flipped is not None and (flipped.setting, flipped.auto_flips) == ("relax", 1)
    assert flipped.inflight == {"fast": 0, "relax": 0}
    records = json.dumps([t.model_dump(mode="json") for t in (done, ran)])
    assert SECRET not in records
