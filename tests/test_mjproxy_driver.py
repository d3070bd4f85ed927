"""The midjourney-proxy driver against a stub proxy over real HTTP, with real Redis and rq."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from router.accounts import AccountSpec
from router.cli import main
from router.client import Client
from router.core import Router
from router.demo import stop_processes
from router.driver import (
    AccountNeedsAttention,
    AccountRef,
    CancelUnsupported,
    DriverError,
    DriverJob,
    DriverResult,
    ModeUnsupported,
    OutOfFastHours,
    RetryableFailure,
    SubmitOutcomeUnknown,
    TransientError,
    UnknownJob,
    make_driver,
)
from router.errors import AccountError
from router.models import Mode, Plan, Setting
from router.reaper import Reaper
from router.settings import Settings
from tests.conftest import wait_for
from tests.mjproxy_stub import StubProxy
from workers.drivers.mjproxy import MjProxyDriver
from workers.jobs import driver_job

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
    relax_child = job(None, task_type="variation", mode=Mode.RELAX, parent_result=grid)
    sent = len(stub.requests)
    with pytest.raises(ModeUnsupported, match="set to fast: it would spend fast hours"):
        driver.submit(account, relax_child)  # the button would run fast: refused, not run
    assert stub.requests[sent:] == []
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
        ("a cat captcha --fast", RetryableFailure),  # trueai locks the account; it times out
        ("a cat modnotice --fast", AccountNeedsAttention),
        ("a cat oops --fast", DriverError),
        ("a cat badprompt --fast", DriverError),
        ("a cat queuefull --fast", TransientError),
        ("a cat servererror --fast", SubmitOutcomeUnknown),
        ("a cat slow --fast", SubmitOutcomeUnknown),
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
    assert driver.lookup(account, "key-2", long_ago(driver)) is None
    # The proxy took the job but answered too late: found by its key, not submitted twice.
    late = driver.submit(account, job("a late swan --fast", key="key-3"))
    assert driver.lookup(account, "key-3") == late
    assert len(stub.sent("/mj/submit/imagine")) == 2
    assert finish(driver, late).gpu_ms == stub.run_ms


def test_a_trueai_proxy_takes_a_new_tasks_mode_from_its_route(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    done = finish(driver, driver.submit(account, job("a moth --relax", Mode.RELAX)))
    submits = [p for _, p, _ in stub.requests if "/submit/" in p]
    assert submits == ["/mj-relax/mj/submit/imagine"]
    assert done.mode is Mode.RELAX and done.output["mode"] == "relax"


def test_a_cancel_no_proxy_can_carry_out_is_not_asked_and_the_job_is_charged_its_run(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    handle = driver.submit(account, job("a long night --fast"))
    assert driver.poll(handle) is None
    with pytest.raises(CancelUnsupported, match="cannot stop") as running:
        driver.cancel(handle)
    assert 0 <= running.value.gpu_ms < 60_000
    assert [p for _, p, _ in stub.requests if p.endswith("/cancel")] == []
    end_jobs_now(stub)
    used = wait_for(lambda: driver.poll(handle), timeout=10, what="the job's end").gpu_ms
    assert driver.cancel(handle) == used  # it ended: its whole run
    with pytest.raises(UnknownJob):
        driver.cancel("mjp:alice:a-pro:fast:imagine:404")


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


# --- A credential never reaches a log, a record or a dead letter (issue 11, defect 5) ----

CANARY = "canary-9d2b41e7"
"""A secret as read from a file or a Kubernetes Secret: with its trailing newline, which
http.client refuses as a header value (its ValueError names the value)."""


def store_canary(router: Router, owner: str = "alice", account_id: str = "a-pro") -> None:
    """Straight into Redis: what storage does to secrets is not what this tests."""
    router.redis.set(router.keys.credentials(owner, account_id), CANARY + "\n")


def everything_stored(router: Router) -> str:
    """Every value under this test's keys and rq's (task records, rq jobs with their
    exc_info, dead letters, accounts) except the credentials key itself, as one text."""
    redis, prefix = router.redis, router.keys.prefix
    seen: list[str] = []
    for raw in [*redis.scan_iter(match=f"{prefix}*"), *redis.scan_iter(match=f"rq:*{prefix}*")]:
        key = raw.decode()
        if ":cred:" in key:
            continue
        kind = redis.type(key).decode()
        if kind == "string":
            seen.append(repr(redis.get(key)))
        elif kind == "hash":
            seen.append(repr(redis.hgetall(key)))
        elif kind == "list":
            seen.append(repr(redis.lrange(key, 0, -1)))
        elif kind == "zset":
            seen.append(repr(redis.zrange(key, 0, -1)))
        elif kind == "set":
            seen.append(repr(redis.smembers(key)))
    return "\n".join(seen)


def exhaust(stub: StubProxy) -> None:
    """trueai marks the account exhausted, as on Midjourney's "Credits exhausted" with
    EnableAutoSetRelax: its fast count 0, relax only, Midjourney switched to relax
    (src/Midjourney.Base/Models/DiscordAccount.cs:1081-1113; src/Midjourney.Services/
    DiscordWebSocketService.cs:1958-2006)."""
    stub.fast_available, stub.fast_exhausted = 0, True
    stub.allow_modes, stub.mj_setting = ["RELAX"], "relax"


def test_a_secret_with_a_newline_stays_out_of_logs_records_and_rq(
    client: Client,
    router: Router,
    account: AccountRef,
    drain: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store_canary(router)
    task = client.submit("alice", "a kite", mode="fast")
    drain()
    ran = client.get(task.id)
    assert ran is not None and ran.status != "running"
    assert CANARY not in caplog.text
    assert CANARY not in everything_stored(router)
    assert CANARY not in json.dumps(ran.model_dump(mode="json"))
    flagged = router.pool.get("a-pro")
    assert flagged is not None and flagged.attention_reason  # the secret was read and refused
    assert "secret" in flagged.attention_reason


def test_a_secret_that_goes_bad_while_a_job_runs_stays_out_of_the_pollers_logs(
    client: Client,
    router: Router,
    account: AccountRef,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from workers.jobs import run_task
    from workers.poller import Poller

    caplog.set_level(logging.DEBUG)
    task = client.submit("alice", "a long kite", mode="fast")  # runs ten minutes
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"  # with the good secret
    store_canary(router)  # then the secret is stored again, newline and all
    opts = router.settings.mjproxy.model_copy(update={"account_cache_seconds": 0})
    fresh = Router(router.settings.model_copy(update={"mjproxy": opts}), router.redis)
    poller = Poller(fresh)  # a worker that reads the account for each poll
    try:
        poller.poll_once()
    finally:
        poller.threads.shutdown()
    assert CANARY not in caplog.text
    assert CANARY not in everything_stored(router)


def test_a_secret_with_a_newline_stays_out_of_the_reapers_logs(
    client: Client,
    router: Router,
    account: AccountRef,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    task = client.submit("alice", "a kite", mode="fast")
    router.queue.empty()
    assert router.tasks.start("alice", task.id, 1)[0]  # its worker dies before submitting
    store_canary(router)
    expire_lease(router, "alice", task.id)
    reclaimed = running_reaper(router).reap_leases()
    assert CANARY not in caplog.text
    assert CANARY not in everything_stored(router)
    assert reclaimed == 0  # the lookup cannot tell: the task is not run again
    assert client.get(task.id).attempt == 1  # type: ignore[union-attr]


def test_a_worker_process_with_a_newline_secret_writes_no_secret_to_stderr(
    client: Client, router: Router, account: AccountRef, env: dict[str, str]
) -> None:
    store_canary(router)
    worker = subprocess.Popen(
        [sys.executable, "-m", "router", "--log-level", "DEBUG", "worker"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        task = client.submit("alice", "a kite", mode="fast")
        wait_for(
            lambda: client.get(task.id).attempt > 1 or client.get(task.id).status.terminal,  # type: ignore[union-attr]
            what="the worker to try the task",
        )
    finally:
        stop_processes([worker])
    assert worker.stderr is not None
    logged = worker.stderr.read().decode(errors="replace")
    assert CANARY not in logged
    assert "needs attention" in logged  # it did log the refusal, in its own words


# --- "Cannot tell now" is not "never submitted" (issue 11, defect 6) ---------------------


def expire_lease(router: Router, owner: str, task_id: str) -> None:
    router.redis.zadd(router.keys.inflight(owner), {task_id: 0})


def running_reaper(router: Router) -> Reaper:
    """A reaper past its first (grace) pass."""
    reaper = Reaper(router)
    reaper.grace = False
    return reaper


def submitted_by_a_worker_that_died(client: Client, router: Router, prompt: str) -> str:
    """A started task whose job the backend took, its handle never recorded; its id."""
    task = client.submit("alice", prompt, mode="fast")
    router.queue.empty()  # no rq worker runs it again: we play the one that died
    assert router.tasks.start("alice", task.id, 1)[0]
    ref, driver_job_ = driver_job(router, "alice", task.id, 1)
    router.driver.submit(ref, driver_job_)
    return task.id


def long_ago(driver: MjProxyDriver) -> int:
    """An attempt start (ms) whose submissions a proxy has surely stored by now."""
    return int(time.time() * 1000) - driver.submit_window_ms() - 1000


def started_long_ago(router: Router, task_id: str, owner: str = "alice") -> None:
    """Move a running attempt's start back past the driver's submit window."""
    driver = router.driver
    assert isinstance(driver, MjProxyDriver)
    router.redis.hset(router.keys.task(owner, task_id), "started_at", long_ago(driver) * 1000)


def test_a_lookup_that_cannot_tell_extends_the_lease_and_the_task_runs_once(
    client: Client, router: Router, account: AccountRef, stub: StubProxy, drain: Callable[[], None]
) -> None:
    task_id = submitted_by_a_worker_that_died(client, router, "a heron")
    stub.list_failures = 1  # the proxy answers the reaper's lookup 503, once
    expire_lease(router, "alice", task_id)
    reaper = running_reaper(router)
    assert reaper.reap_leases() == 0
    held = client.get(task_id)
    assert held is not None and (held.status, held.attempt, held.handle) == ("running", 1, None)
    deadline = router.redis.zscore(router.keys.inflight("alice"), task_id)
    assert deadline is not None and deadline > reaper.now_us()  # asked again later
    expire_lease(router, "alice", task_id)
    assert reaper.reap_leases() == 0  # the proxy answers now: the job is adopted
    assert client.get(task_id).handle is not None  # type: ignore[union-attr]
    drain()
    done = client.get(task_id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert len(stub.sent("/mj/submit/imagine")) == 1
    assert len(stub.sent("/mj/task/list")) == 2


def test_a_job_nobody_can_find_out_about_fails_at_its_run_timeout_and_never_runs_twice(
    client: Client, router: Router, account: AccountRef, stub: StubProxy
) -> None:
    task_id = submitted_by_a_worker_that_died(client, router, "a heron")
    stub.list_failures = 1_000_000  # the proxy cannot say, for ever
    reaper = running_reaper(router)
    expire_lease(router, "alice", task_id)
    assert reaper.reap_leases() == 0
    assert client.get(task_id).status == "running"  # type: ignore[union-attr]
    limits = {**router.settings.run_timeout_seconds, Mode.FAST: 0.001}
    later = Router(router.settings.model_copy(update={"run_timeout_seconds": limits}), router.redis)
    expire_lease(router, "alice", task_id)
    assert running_reaper(later).reap_leases() == 0  # past its run timeout: failed, not retried
    done = client.get(task_id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("failed", 1, 0)
    assert done.error is not None and done.error.code == "worker_lost"
    assert "could not tell" in done.error.message
    assert router.pool.get("a-pro").inflight == {"fast": 0, "relax": 0}  # type: ignore[union-attr]
    assert len(stub.sent("/mj/submit/imagine")) == 1


def test_a_job_the_backend_surely_never_took_is_run_again(
    client: Client, router: Router, account: AccountRef, stub: StubProxy, drain: Callable[[], None]
) -> None:
    task = client.submit("alice", "a heron", mode="fast")
    router.queue.empty()
    assert router.tasks.start("alice", task.id, 1)[0]  # its worker dies before submitting
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 0  # too soon: the proxy may be storing it
    assert client.get(task.id).attempt == 1  # type: ignore[union-attr]
    started_long_ago(router, task.id)
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 1  # the proxy's list has no such job
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 2, 1)
    assert len(stub.sent("/mj/submit/imagine")) == 1


def test_lookup_tells_absent_from_fallen_off_a_full_list(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    """trueai's `GET /mj/task/list` holds its latest 100 tasks only: a key missing from a
    full list is absent only if the list reaches back to before the attempt started."""
    for i in range(100):
        stub._new_task("IMAGINE", f"filler {i} --fast", f"other-{i}")
        stub.tasks[max(stub.tasks)]["submitTime"] -= 2 * 3_600_000  # submitted 2 h ago
    with pytest.raises(TransientError, match="cannot tell"):
        driver.lookup(account, "key-x")
    oldest = min(int(t["submitTime"]) for t in stub.tasks.values())
    with pytest.raises(TransientError, match="cannot tell"):
        driver.lookup(account, "key-x", started_ms=oldest)
    assert driver.lookup(account, "key-x", started_ms=oldest + 3_600_000) is None
    with StubProxy(secret=SECRET) as fresh:  # fewer than 100: the list is all there is
        ref = AccountRef("a-pro", "alice", account.plan, 0, SecretStr(SECRET), fresh.url)
        assert driver.lookup(ref, "key-x", long_ago(driver)) is None
        with pytest.raises(TransientError, match="cannot tell yet"):  # it may be storing it
            driver.lookup(ref, "key-x", int(time.time() * 1000))
        fresh.list_failures = 1
        with pytest.raises(TransientError):
            driver.lookup(ref, "key-x", long_ago(driver))


def test_novicezk_lookups_read_its_queue_then_its_store_and_an_emptied_store_cannot_tell(
    driver: MjProxyDriver, account: AccountRef
) -> None:
    """novicezk keeps its tasks in memory by default (a restart empties the store): only
    a list reaching back to before the attempt shows a job absent; a running job is found
    in its short `/mj/task/queue` without reading the whole store."""
    with StubProxy(server="novicezk", secret=SECRET) as proxy:
        ref = AccountRef("a-old", "alice", account.plan, 0, SecretStr(SECRET), proxy.url)
        with pytest.raises(TransientError, match="cannot tell"):  # empty: maybe restarted
            driver.lookup(ref, "key-x", long_ago(driver))
        handle = driver.submit(ref, job("a long owl --fast", key="key-1"))
        before = len(proxy.requests)
        assert driver.lookup(ref, "key-1") == handle
        assert [p for _, p, _ in proxy.requests[before:]] == ["/mj/task/queue"]
        with pytest.raises(TransientError, match="cannot tell"):  # the store starts after it
            driver.lookup(ref, "key-x", long_ago(driver))
        with proxy._lock:
            for task in proxy.tasks.values():
                task["submitTime"] -= 2 * 3_600_000  # submitted 2 h ago
        oldest = min(int(t["submitTime"]) for t in proxy.tasks.values())
        assert driver.lookup(ref, "key-x", started_ms=oldest + 3_600_000) is None


# --- The modal of a relax child carries its own mode's flag only (issue 11, defect 7) ----


def test_an_inpaint_childs_modal_carries_its_own_flag_and_not_the_parents(
    router: Router, account: AccountRef, stub: StubProxy
) -> None:
    driver = MjProxyDriver(router.settings, router.redis)
    grid = finish(driver, driver.submit(account, job("a fox --ar 2:3 --fast"))).output
    up = job(None, task_type="upscale", input={"index": 1}, parent_result=grid)
    upscaled = finish(driver, driver.submit(account, up)).output
    # Whatever the proxy stored as the parent's prompt, its flags do not reach the modal.
    upscaled["prompt"] = "a fox \u2014relax --ar 2:3 --RELAX"
    inpaint = job(
        None,
        Mode.FAST,
        task_type="inpaint",
        input={"mask_base64": "data:image/png;base64,AAAA"},
        parent_result=upscaled,
    )
    finish(driver, driver.submit(account, inpaint))
    (modal,) = stub.sent("/mj/submit/modal")
    assert modal["prompt"] == "a fox --ar 2:3 --fast"
    own = job("a red sky \u2014fast --fast", Mode.FAST, task_type="inpaint", parent_result=upscaled)
    with pytest.raises(DriverError, match="exactly one mode flag"):
        driver.submit(account, own)  # a prompt with a second (em dash) flag is refused
    upscaled["prompt"] = "a fox---relax at dusk"  # mode text a proxy would read as a flag
    with pytest.raises(DriverError, match="read as a mode flag"):
        driver.submit(account, inpaint)


def test_a_prompt_with_mode_text_inside_other_words_is_never_sent(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    """trueai tries FAST for a prompt holding `--fast` anywhere, in any case
    (src/Midjourney.API/Controllers/SubmitController.cs:1277-1292): a relax task with
    such text could run fast, so no such prompt is sent."""
    for prompt in ("a fox --fast, now --relax", "word---fast --relax", "go --FASTER --relax"):
        with pytest.raises(DriverError, match="read as a mode flag"):
            driver.submit(account, job(prompt, Mode.RELAX))
    assert stub.sent("/mj/submit/imagine") == []


def test_an_inpaint_child_on_an_account_set_to_relax_is_refused_not_run_fast(
    client: Client,
    router: Router,
    account: AccountRef,
    stub: StubProxy,
    drain: Callable[[], None],
) -> None:
    grid = client.submit("alice", "a lighthouse at dusk", mode="fast")
    drain()
    up = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 2})
    drain()
    assert client.get(up.id).status == "completed"  # type: ignore[union-attr]
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    mask = {"mask_base64": "data:image/png;base64,AAAA"}
    region = client.submit("alice", task_type="inpaint", parent_id=up.id, input=mask)
    drain()
    done = client.get(region.id)
    assert done is not None and (done.status, done.effective_mode) == ("failed", "relax")
    assert done.error is not None and done.error.code == "mode_unsupported"
    assert stub.sent("/mj/submit/modal") == []


# --- A job runs once and holds its slot until it ends (review D1, D2, D4) -----------------


def end_jobs_now(stub: StubProxy) -> None:
    """The account finishes every job it runs (a `long` one included) now."""
    with stub._lock:
        for task in stub.tasks.values():
            task["_ends"] = 0


def polled_until(poller: Any, condition: Callable[[], Any], what: str) -> Any:
    """Poll (as a worker's poller does) until `condition` holds."""

    def step() -> Any:
        poller.poll_once()
        return condition()

    return wait_for(step, timeout=10, what=what)


def test_a_refused_poll_keeps_the_job_and_its_slot_and_takes_the_account_out_of_rotation(
    client: Client, router: Router, account: AccountRef, stub: StubProxy
) -> None:
    """A 401 while polling says nothing of the job: it runs on, holding its slot, and only
    its own end settles it; the account leaves rotation meanwhile (no new work)."""
    from workers.jobs import run_task
    from workers.poller import Poller

    task = client.submit("alice", "a long kite", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"
    handle = client.get(task.id).handle  # type: ignore[union-attr]
    with StubProxy(secret=SECRET) as other:
        spec = AccountSpec(
            id="a-two",
            owner="alice",
            plan="pro",
            backend_url=other.url,
            credentials=SecretStr(SECRET),
        )
        router.apply(router.pool.add(spec))  # where a re-routed task would go
        stub.secret = "rotated"  # the proxy's secret changes while the job runs
        poller = Poller(router)
        try:
            flagged = polled_until(
                poller,
                lambda: (a := router.pool.get("a-pro")) is not None and not a.enabled and a,
                "the refused account to leave rotation",
            )
            assert "refused" in (flagged.attention_reason or "")
            for _ in range(3):  # polled on, refused each time: nothing changes
                poller.poll_once()
            held = client.get(task.id)
            assert held is not None
            assert (held.status, held.attempt, held.account_id, held.handle) == (
                "running",
                1,
                "a-pro",
                handle,
            )
            assert flagged.inflight["fast"] == 1
            assert router.pool.get("a-pro").inflight["fast"] == 1  # type: ignore[union-attr]
            deadline = router.redis.zscore(router.keys.inflight("alice"), task.id)
            assert deadline is not None and deadline > running_reaper(router).now_us()
            assert other.tasks == {} and router.queue.count == 0  # not run elsewhere
            stub.secret = SECRET  # answers again: the job's own end settles it
            end_jobs_now(stub)
            done = polled_until(
                poller,
                lambda: (t := client.get(task.id)) is not None and t.status.terminal and t,
                "the job to end",
            )
        finally:
            poller.threads.shutdown()
    assert (done.status, done.attempt) == ("completed", 1)
    pro = router.pool.get("a-pro")
    assert pro is not None and pro.inflight["fast"] == 0
    assert pro.gpu_seconds_used["fast"] > 0  # charged to the account that ran it
    assert not pro.enabled  # still out of rotation until an operator enables it
    assert len(stub.sent("/mj/submit/imagine")) == 1


def test_a_running_attempt_delivered_again_is_not_submitted_again(
    client: Client, router: Router, account: AccountRef, stub: StubProxy
) -> None:
    from workers.jobs import run_task

    task = client.submit("alice", "a long kite", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"
    stub.secret = "rotated"  # were it sent again, the refusal would re-route the task
    assert run_task("alice", task.id, 1) == "skipped: task is running"  # its START said so
    held = client.get(task.id)
    assert held is not None and (held.status, held.attempt) == ("running", 1)
    assert len(stub.sent("/mj/submit/imagine")) == 1


def test_a_job_refused_past_its_run_timeout_fails_timeout_and_frees_its_slot(
    client: Client, router: Router, account: AccountRef, stub: StubProxy
) -> None:
    from workers.jobs import run_task
    from workers.poller import Poller

    task = client.submit("alice", "a long kite", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"
    stub.secret = "rotated"
    limits = {**router.settings.run_timeout_seconds, Mode.FAST: 0.001}
    later = Router(router.settings.model_copy(update={"run_timeout_seconds": limits}), router.redis)
    poller = Poller(later)
    try:
        done = polled_until(
            poller,
            lambda: (t := client.get(task.id)) is not None and t.status.terminal and t,
            "the run timeout",
        )
    finally:
        poller.threads.shutdown()
    assert done.status == "failed" and done.error is not None and done.error.code == "timeout"
    pro = router.pool.get("a-pro")
    assert pro is not None and pro.inflight["fast"] == 0
    assert not pro.enabled and "refused" in (pro.attention_reason or "")


def test_a_submission_that_times_out_while_the_proxy_takes_it_is_never_sent_twice(
    client: Client, router: Router, account: AccountRef, stub: StubProxy, drain: Callable[[], None]
) -> None:
    """The proxy is still taking the job when the request times out: it is not listed yet,
    which says nothing. The worker leaves the task to the reaper, which adopts the job."""
    from workers.jobs import run_task

    stub.slow_seconds = 2 * TIMEOUT
    task = client.submit("alice", "a slow heron", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "outcome unknown"
    held = client.get(task.id)
    assert held is not None and (held.status, held.attempt, held.handle) == ("running", 1, None)
    wait_for(lambda: stub.tasks, timeout=10, what="the proxy to store the job")
    expire_lease(router, "alice", task.id)
    assert running_reaper(router).reap_leases() == 0  # found by its key and adopted
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt, done.retries) == ("completed", 1, 0)
    assert len(stub.sent("/mj/submit/imagine")) == 1
    assert len(stub.tasks) == 1


def test_a_submission_refused_before_sending_is_tried_again(
    client: Client, router: Router, account: AccountRef, drain: Callable[[], None]
) -> None:
    """A refused connection sent nothing: the worker may submit again within the attempt."""
    with StubProxy(secret=SECRET) as gone:
        url = gone.url
    down = AccountRef("a-pro", "alice", account.plan, 0, SecretStr(SECRET), url)
    driver = MjProxyDriver(router.settings, router.redis)
    with pytest.raises(TransientError) as raised:
        driver.submit(down, job("a cat --fast", key="k"))
    assert type(raised.value) is not SubmitOutcomeUnknown


def test_a_cancel_the_backend_cannot_carry_out_keeps_the_slot_until_the_job_ends(
    client: Client, router: Router, account: AccountRef, stub: StubProxy
) -> None:
    """No proxy can stop a job (see the table of servers in docs/drivers.md): the job runs
    on, so its slot stays taken until it ends; then the task is cancelled and charged for
    its real run."""
    from workers.jobs import run_task
    from workers.poller import Poller

    router.apply(router.pool.update("a-pro", fast_limit=1))
    first = client.submit("alice", "a long kite", mode="fast")
    second = client.submit("alice", "a long swan", mode="fast")
    router.queue.empty()
    assert run_task("alice", first.id, 1) == "submitted"
    router.cancel(first.id)
    poller = Poller(Router(router.settings, router.redis))
    try:
        for _ in range(3):
            poller.poll_once()
        held = client.get(first.id)
        assert held is not None and held.status == "running"
        assert held.cancel_outcome == "cancel_unsupported"
        assert router.pool.get("a-pro").inflight["fast"] == 1  # type: ignore[union-attr]
        waiting = client.get(second.id)
        assert waiting is not None and waiting.status == "queued" and waiting.account_id is None
        assert router.queue.count == 0
        end_jobs_now(stub)
        done = polled_until(
            poller,
            lambda: (t := client.get(first.id)) is not None and t.status.terminal and t,
            "the job to end",
        )
    finally:
        poller.threads.shutdown()
    assert done.status == "cancelled"
    pro = router.pool.get("a-pro")
    assert pro is not None and pro.gpu_seconds_used["fast"] > 0
    assert [b for b in stub.requests if b[1].endswith("/cancel")] == []
    placed = client.get(second.id)
    assert placed is not None and placed.account_id == "a-pro"  # the slot is free now


# --- Every 2026 job type on trueai; what novicezk lacks is refused unsent (issue 22) ------

CAT = "https://example.invalid/cat.png"
PNG = "data:image/png;base64,AAAA"


def stored(stub: StubProxy, output: dict[str, Any]) -> dict[str, Any]:
    """The proxy's own record of the task behind a result."""
    task: dict[str, Any] = stub.tasks[output["proxy_task_id"]]
    return task


def test_the_account_ref_carries_the_accounts_own_setting(
    router: Router, account: AccountRef
) -> None:
    assert account.setting is Setting.FAST
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    flipped = router.account_ref("alice", "a-pro")
    assert flipped is not None and flipped.setting is Setting.RELAX


def test_describe_blend_and_shorten_on_trueai(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    link = job("--fast", task_type="describe", input={"image": CAT}, key="d1")
    described = finish(driver, driver.submit(account, link)).output
    assert stub.sent("/mj/submit/describe") == [{"link": CAT, "state": "d1"}]
    assert described["image_url"] == CAT and len(described["prompts"]) == 4
    assert described["prompts"][0].startswith("a described image")
    relax = job("--relax", Mode.RELAX, task_type="describe", input={"base64": PNG})
    assert finish(driver, driver.submit(account, relax)).mode is Mode.RELAX  # no fast time:
    assert stub.sent("/mj/submit/describe")[-1] == {"base64": PNG, "state": ""}  # any mode
    assert [p for _, p, _ in stub.requests if "describe" in p][-1] == "/mj-relax/mj/submit/describe"

    images = {"images": [CAT, PNG], "dimensions": "portrait"}
    blended = finish(driver, driver.submit(account, job("--fast", task_type="blend", input=images)))
    assert stub.sent("/mj/submit/blend") == [
        {"base64Array": [CAT, PNG], "dimensions": "PORTRAIT", "state": ""}
    ]
    assert len(blended.output["buttons"]) == 9 and blended.output["image_url"].endswith(".png")
    assert stored(stub, blended.output)["properties"]["finalPrompt"].endswith("--ar 2:3 --fast")

    shorten = job("a lighthouse on a cliff at dusk --fast", task_type="shorten")
    shortened = finish(driver, driver.submit(account, shorten)).output
    assert stub.sent("/mj/submit/shorten")[-1]["prompt"] == "a lighthouse on a cliff at dusk --fast"
    assert shortened["prompts"][0] == "a lighthouse on a cliff at dusk"
    assert len(shortened["prompts"]) == 5


def test_video_and_its_clips_upscale_and_extend_on_trueai(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    stub.remix = True  # trueai refuses every video of a Discord account with Remix off
    given = {"image": CAT, "end_image": PNG, "motion": "high", "loop": False, "batch_size": 2}
    video = job("a cat runs --fast", task_type="video", input={**given, "video_type": "hd"})
    clip = finish(driver, driver.submit(account, video))
    assert stub.sent("/mj/submit/video") == [
        {"prompt": "a cat runs --fast", "image": CAT, "endImage": PNG, "motion": "high",
         "loop": False, "batchSize": 2, "videoType": "vid_1.1_i2v_720", "state": ""}
    ]  # fmt: skip
    made = stored(stub, clip.output)
    assert made["promptEn"].startswith(f"{CAT} a cat runs --fast --video 1 --end https://")
    assert made["promptEn"].endswith("--motion high --bs 2")
    assert clip.output["hd"] is True and clip.output["video_urls"] == [clip.output["image_url"]]
    assert clip.output["image_url"].endswith(".mp4")
    assert stub.fast_available == 1000 - 4  # trueai counts a batch of 2 as four fast jobs

    upscale = job(None, task_type="video_upscale", input={"index": 2}, parent_result=clip.output)
    upscaled = finish(driver, driver.submit(account, upscale)).output
    pressed = stub.sent("/mj/submit/action")[-1]["customId"]
    assert pressed == f"MJ::JOB::video_virtual_upscale::2::{clip.output['proxy_task_id']}-hash"
    assert upscaled["hd"] is True and upscaled["video_urls"][0].endswith(".mp4")

    extend = job(None, task_type="video_extend", input={"index": 1}, parent_result=clip.output)
    extended = finish(driver, driver.submit(account, extend)).output
    sent = stub.sent("/mj/submit/video")[-1]
    assert (sent["action"], sent["taskId"], sent["index"]) == (
        "extend", clip.output["proxy_task_id"], 0  # trueai counts clips from 0
    )  # fmt: skip
    assert sent["videoType"] == "vid_1.1_i2v_720" and sent["prompt"].endswith(" --fast")
    assert stored(stub, extended)["action"] == "VIDEO" and extended["hd"] is True

    stub.fill_official_cdn = True  # then trueai lists each clip's CDN link
    sd = job("a dog runs --fast", task_type="video", input={"image": CAT})
    clips = finish(driver, driver.submit(account, sd)).output
    assert stub.sent("/mj/submit/video")[-1]["videoType"] == "vid_1.1_i2v_480"
    assert len(clips["video_urls"]) == 4 and clips["hd"] is False
    assert clips["video_urls"][0].startswith("https://cdn.midjourney.com/video/")


@pytest.mark.parametrize(
    ("version", "task_type", "pressed"),
    [
        ("", "upscale_subtle", "upsample_v7_2x_subtle"),
        ("--v 7", "upscale_creative", "upsample_v7_2x_creative"),
        ("--v 6.1", "upscale_subtle", "upsample_v6r1_2x_subtle"),
        ("--niji 6", "upscale_creative", "upsample_v6_2x_creative"),
        ("--v 5.2", "upscale_2x", "upsample_v5_2x"),
        ("--v 5.2", "upscale_4x", "upsample_v5_4x"),
        ("--v 7", "animate", "animate_high"),
    ],
)
def test_an_upscaled_images_new_buttons_are_pressed_by_its_version(
    driver: MjProxyDriver,
    account: AccountRef,
    stub: StubProxy,
    version: str,
    task_type: str,
    pressed: str,
) -> None:
    grid = finish(driver, driver.submit(account, job(f"a fox {version} --fast"))).output
    up = job(None, task_type="upscale", input={"index": 4}, parent_result=grid)
    upscaled = finish(driver, driver.submit(account, up)).output
    child = job(None, task_type=task_type, input={"motion": "high"}, parent_result=upscaled)
    done = finish(driver, driver.submit(account, child))
    custom_id = stub.sent("/mj/submit/action")[-1]["customId"]
    assert custom_id == f"MJ::JOB::{pressed}::1::{upscaled['proxy_task_id']}-hash::SOLO"
    if task_type == "animate":
        assert done.output["video_urls"] and done.output["hd"] is False
        assert stub.tasks[done.output["proxy_task_id"]]["action"] == "VIDEO"
    else:
        assert stub.tasks[done.output["proxy_task_id"]]["action"] == "UPSCALE_HD"


def test_an_upscale_the_image_does_not_offer_is_never_sent(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    grid = finish(driver, driver.submit(account, job("a fox --v 5.2 --fast"))).output
    up = job(None, task_type="upscale", parent_result=grid)
    upscaled = finish(driver, driver.submit(account, up)).output
    sent = len(stub.requests)
    with pytest.raises(DriverError, match="no MJ::JOB::upsample_v7_2x_subtle::"):
        driver.submit(account, job(None, task_type="upscale_subtle", parent_result=upscaled))
    assert stub.requests[sent:] == []


def test_a_prompt_quoting_midjourneys_words_does_not_change_the_mode_charged(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    """Midjourney writes the mode after the user's mention, behind the prompt: a prompt
    holding "<@1> (turbo)" is not read as a turbo run where Midjourney says no mode."""
    grid = finish(driver, driver.submit(account, job("a fox <@1> (turbo) --fast"))).output
    assert grid["mode"] == "fast"
    up = finish(driver, driver.submit(account, job(None, task_type="upscale", parent_result=grid)))
    content = stored(stub, up.output)["properties"]["messageContent"]
    assert "(turbo)" in content and content.endswith("Image #1 <@1200000000000000002>")
    assert up.mode is None and up.output["mode"] == "fast"  # Midjourney said none: as sent


NOVICEZK_LACKS = [
    ("shorten", False, "no route for shorten"),
    ("video", False, "no route for video"),
    ("video_extend", True, "cannot run video_extend"),
    ("video_upscale", True, "cannot run video_upscale"),
    ("animate", True, "cannot run animate"),
    ("upscale_subtle", True, "cannot run upscale_subtle"),
    ("upscale_creative", True, "cannot run upscale_creative"),
    ("upscale_2x", True, "cannot run upscale_2x"),
    ("upscale_4x", True, "cannot run upscale_4x"),
    ("pan", True, "cannot run pan"),
]


@pytest.mark.parametrize(("task_type", "child", "said"), NOVICEZK_LACKS)
def test_novicezk_refuses_what_it_has_no_route_for_before_sending_anything(
    driver: MjProxyDriver, task_type: str, child: bool, said: str
) -> None:
    with StubProxy(server="novicezk", secret=SECRET) as proxy:
        ref = AccountRef(
            "a-old", "alice", Plan.PRO, 0, SecretStr(SECRET), proxy.url, "novicezk", Setting.RELAX
        )
        parent = {"proxy_task_id": "1", "account_id": "a-old", "buttons": []} if child else None
        given = {"image": PNG, "index": 1}
        asked = job(None if child else "a cat --relax", Mode.RELAX, task_type=task_type,
                    input=given, parent_result=parent)  # fmt: skip
        with pytest.raises(DriverError, match=said) as raised:
            driver.submit(ref, asked)
        assert type(raised.value) is DriverError  # driver_error: no mode would help
        assert proxy.requests == []  # nothing sent, not even a question


def test_novicezk_describes_and_blends_base64_and_a_relax_blend_needs_a_relax_account(
    driver: MjProxyDriver,
) -> None:
    with StubProxy(server="novicezk", secret=SECRET) as proxy:
        ref = AccountRef("a-old", "alice", Plan.PRO, 0, SecretStr(SECRET), proxy.url, "novicezk")
        bare = job("--relax", Mode.RELAX, task_type="describe", input={"base64": "AAAA"})
        described = finish(driver, driver.submit(ref, bare)).output
        assert proxy.sent("/mj/submit/describe") == [{"base64": PNG, "state": ""}]
        assert len(described["prompts"]) == 4
        with pytest.raises(DriverError, match="base64 only, not links"):
            driver.submit(ref, job("--fast", task_type="describe", input={"image": CAT}))
        images = {"images": [PNG, "BBBB"], "dimensions": "landscape"}
        fast = job("--fast", task_type="blend", input=images)
        assert finish(driver, driver.submit(ref, fast)).output["image_url"]
        sent = proxy.sent("/mj/submit/blend")[-1]
        assert sent["base64Array"] == [PNG, "data:image/png;base64,BBBB"]
        assert sent["dimensions"] == "LANDSCAPE"
        before = len(proxy.requests)
        relax = job("--relax", Mode.RELAX, task_type="blend", input=images)
        with pytest.raises(ModeUnsupported, match="set to fast: it would spend fast hours"):
            driver.submit(ref, relax)  # no flag reaches Midjourney: the account's mode
        assert len(proxy.requests) == before
        relaxed = AccountRef(
            "a-old", "alice", Plan.PRO, 0, SecretStr(SECRET), proxy.url, "novicezk", Setting.RELAX
        )
        proxy.mj_setting = "relax"
        assert finish(driver, driver.submit(relaxed, relax)).output["image_url"]


def test_the_extend_of_an_upscaled_sd_clip_is_sent_sd(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    """A video's upscale is one clip of its parent's resolution, not an HD upscale: its
    extend goes as SD, as the router reserved it."""
    stub.remix = True
    video = finish(driver, driver.submit(account, job("a wave --fast", task_type="video",
                                                      input={"image": CAT}))).output  # fmt: skip
    up = job(None, task_type="video_upscale", input={"index": 1}, parent_result=video)
    clip = finish(driver, driver.submit(account, up)).output
    assert clip["hd"] is False
    extend = job(None, task_type="video_extend", input={"index": 1}, parent_result=clip)
    finish(driver, driver.submit(account, extend))
    assert stub.sent("/mj/submit/video")[-1]["videoType"] == "vid_1.1_i2v_480"


def test_a_relax_button_job_on_an_account_the_router_flipped_waits_for_trueais_word(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    """The router flipped the account to relax by its own count; no request switches
    Midjourney's mode, so a plain button runs in it: a relax upscale of real cost is sent
    only once trueai's own count says no fast time is left (else it would run fast)."""
    grid = finish(driver, driver.submit(account, job("a fox --v 7 --fast"))).output
    up = job(None, task_type="upscale", input={"index": 1}, parent_result=grid)
    upscaled = finish(driver, driver.submit(account, up)).output
    flipped = replace(account, setting=Setting.RELAX, flipped=True)
    subtle = job(None, Mode.RELAX, task_type="upscale_subtle", parent_result=upscaled)
    sent = len(stub.requests)
    with pytest.raises(ModeUnsupported, match="fast jobs left"):
        driver.submit(flipped, subtle)
    assert stub.sent("/mj/submit/action")[sent:] == []
    stub.fast_available = 0  # trueai's own count ran out too: Midjourney is relax
    finish(driver, driver.submit(flipped, subtle))
    operator = replace(account, setting=Setting.RELAX)  # set by an operator: trusted
    stub.fast_available = 1000
    finish(driver, driver.submit(operator, subtle))


def test_on_novicezk_a_relax_button_job_never_runs_on_an_account_only_the_router_flipped(
    router: Router,
) -> None:
    with StubProxy(server="novicezk", secret=SECRET) as proxy:
        account = AccountRef("a-pro", "alice", Plan.PRO, 10**7, SecretStr(SECRET), proxy.url,
                             "novicezk", Setting.RELAX, flipped=True)  # fmt: skip
        driver = MjProxyDriver(router.settings, router.redis)
        grid = finish(driver, driver.submit(account, job("a fox --relax", Mode.RELAX))).output
        variation = job(None, Mode.RELAX, task_type="variation", input={"index": 1},
                        parent_result=grid)  # fmt: skip
        with pytest.raises(ModeUnsupported, match="cannot tell Midjourney"):
            driver.submit(account, variation)
        assert proxy.sent("/mj/submit/change") == []


def test_a_video_on_an_account_with_remix_off_fails_at_once_and_blames_nothing(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    stub.remix = False  # trueai: "Remix is off, no video" (TaskService.cs:469-484)
    video = job("a wave --fast", task_type="video", input={"image": CAT, "batch_size": 2})
    with pytest.raises(DriverError) as refused:
        driver.submit(account, video)
    assert not isinstance(refused.value, TransientError)  # not retried, no cooldown


def test_a_custom_id_of_another_kind_of_button_is_refused_before_anything_is_sent(
    driver: MjProxyDriver, account: AccountRef, stub: StubProxy
) -> None:
    grid = finish(driver, driver.submit(account, job("a fox --v 7 --fast"))).output
    up = job(None, task_type="upscale", input={"index": 1}, parent_result=grid)
    upscaled = finish(driver, driver.submit(account, up)).output
    animate = next(
        b["customId"] for b in upscaled["buttons"] if "animate_high" in b["customId"]
    ) if upscaled.get("buttons") else "MJ::JOB::animate_high::1::x::SOLO"  # fmt: skip
    sent = len(stub.requests)
    forged = job(None, task_type="upscale_subtle", input={"custom_id": animate},
                 parent_result=upscaled)  # fmt: skip
    with pytest.raises(DriverError, match=r"custom_id must be one of the parent.s MJ::JOB::ups"):
        driver.submit(account, forged)
    assert stub.requests[sent:] == []
