"""The router and its workers against each midjourney-proxy server as it really behaves
(tests/proxy_models: trueai-org v11.10.3 and novicezk v2.6.3, every behaviour cited), with
real Redis and rq: the same suite for both servers, found by asking them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.models import Setting
from router.settings import Settings
from tests.conftest import wait_for
from tests.mjproxy_stub import StubProxy
from tests.proxy_models.common import Reply, Request
from workers.backend_sync import BackendSync
from workers.jobs import run_task
from workers.poller import Poller

SECRET = "stub-secret"
SERVERS = ["trueai", "novicezk"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """This module's processes use the midjourney-proxy driver, with short backoffs (and
    no rest after transient failures, whose own tests are in test_health)."""
    return settings.model_copy(
        update={
            "driver": "mjproxy",
            "transient_backoff_seconds": 0.01,
            "cooldown_after_failures": 100,
            "mjproxy": settings.mjproxy.model_copy(update={"request_timeout_seconds": 2.0}),
        }
    )


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "BYOA_DRIVER": "mjproxy",
        "BYOA_TRANSIENT_BACKOFF_SECONDS": "0.01",
        "BYOA_COOLDOWN_AFTER_FAILURES": "100",
        "BYOA_MJPROXY__REQUEST_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture
def proxies() -> Iterator[Callable[..., StubProxy]]:
    """Start proxies (`StubProxy` arguments); each is stopped at the end."""
    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(StubProxy(**kw))


@pytest.fixture(params=SERVERS)
def pro(
    request: pytest.FixtureRequest, router: Router, proxies: Callable[..., StubProxy]
) -> StubProxy:
    """alice's pro account `a-pro` behind a proxy of each server in turn."""
    proxy = proxies(server=request.param, secret=SECRET)
    add(router, "a-pro", proxy)
    return proxy


@pytest.fixture
def trueai(router: Router, proxies: Callable[..., StubProxy]) -> StubProxy:
    """alice's pro account `a-pro` behind a trueai proxy."""
    proxy = proxies(server="trueai", secret=SECRET)
    add(router, "a-pro", proxy)
    return proxy


def submitted(client: Client, router: Router, prompt: str, mode: str = "fast") -> str:
    """A task a worker has started and handed to its account (its job now runs there)."""
    task = client.submit("alice", prompt, mode=mode)
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"
    return task.id


def add(router: Router, account_id: str, proxy: StubProxy, plan: str = "pro", **kw: object) -> None:
    """An account of alice's behind `proxy` (its server left for the driver to find)."""
    spec = AccountSpec(
        id=account_id,
        owner="alice",
        plan=plan,
        backend_url=proxy.url,
        credentials=SecretStr(SECRET),
        **kw,  # type: ignore[arg-type]
    )
    router.apply(router.pool.add(spec))


@pytest.mark.parametrize("server", SERVERS)
def test_an_account_out_of_fast_hours_mid_job_flips_stays_in_rotation_and_its_task_runs_again(
    server: str,
    client: Client,
    router: Router,
    proxies: Callable[..., StubProxy],
    drain: Callable[[], None],
) -> None:
    out = proxies(server=server, secret=SECRET)
    out.mj_fast_jobs = 0  # Midjourney has no fast time left; the proxy does not know yet
    other = proxies(server=server, secret=SECRET)
    add(router, "a-out", out)
    add(router, "a-fast", other, enabled=False)  # in rotation once the task is placed
    task = client.submit("alice", "a lighthouse", mode="fast")
    assert task.account_id == "a-out"
    router.apply(router.pool.update("a-fast", enabled=True))
    drain()
    done = client.get(task.id)
    assert done is not None
    assert (done.status, done.attempt, done.account_id) == ("completed", 2, "a-fast")
    assert (done.effective_mode, done.fallback_reason) == ("fast", None)
    flipped = router.pool.get("a-out")
    assert flipped is not None and flipped.setting == "relax"
    assert flipped.enabled and flipped.attention_reason is None  # in rotation
    assert flipped.flip_reason == "fast_hours_exhausted" and flipped.inflight["fast"] == 0

    relax = client.submit("alice", "a relaxed lighthouse", mode="relax")
    drain()  # the flipped account still runs relax work (rule 3)
    ran = client.get(relax.id)
    assert ran is not None and ran.status == "completed", ran


def test_out_of_fast_hours_with_no_other_account_falls_back_to_relax(
    client: Client,
    router: Router,
    pro: StubProxy,
    drain: Callable[[], None],
) -> None:
    proxy = pro
    proxy.mj_fast_jobs = 0
    task = client.submit("alice", "a harbour", mode="fast")
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt) == ("completed", 2)
    assert (done.effective_mode, done.fallback_reason) == ("relax", "fast_hours_exhausted")
    assert proxy.mj_fast_jobs == 0  # relax spent no fast time


def test_transient_answers_never_end_a_task_on_first_try_nor_take_the_account_out(
    client: Client,
    router: Router,
    pro: StubProxy,
    drain: Callable[[], None],
) -> None:
    proxy, server = pro, pro.server
    # "No account instance" (code 3): trueai's account is relax-only for now, novicezk's
    # instance is down; neither says why, so the task is tried again.
    if server == "trueai":
        proxy.allow_modes = ["RELAX"]
    else:
        proxy.enabled = False
    task = client.submit("alice", "a quiet bay", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "queued"  # placed again, not failed
    again = client.get(task.id)
    assert again is not None and (again.retries, again.retry_reason) == (1, "transient")
    if server == "trueai":
        proxy.allow_modes = []
    else:
        proxy.enabled = True
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.effective_mode) == ("completed", "fast")

    stuck = client.submit("alice", "a stuck ferry", mode="fast")  # the proxy times it out
    drain()
    failed = client.get(stuck.id)
    assert failed is not None and failed.status == "failed"
    assert failed.attempt == router.settings.max_retries + 1  # every retry was used
    assert failed.error is not None and failed.error.code == "driver_error"
    account = router.pool.get("a-pro")
    assert account is not None and account.enabled and account.attention_reason is None
    assert router.pool.get("a-pro").setting == "fast"  # type: ignore[union-attr]


def spent(router: Router, mode: str, account_id: str = "a-pro") -> float:
    """GPU seconds the router charged the account in `mode`."""
    account = router.pool.get(account_id)
    assert account is not None
    return account.gpu_seconds_used[mode]


def test_relax_imagine_then_u1_completes_relax_and_spends_no_fast_time(
    client: Client,
    router: Router,
    pro: StubProxy,
    drain: Callable[[], None],
) -> None:
    """U1-U4 take no fast time on either server (trueai counts none and gives them no
    slot): a relax grid's upscale is sent, whatever the account's Midjourney setting."""
    proxy = pro
    grid = client.submit("alice", "a fox", mode="relax")
    drain()
    before = proxy.mj_fast_jobs
    child = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 1})
    drain()
    done = client.get(child.id)
    assert done is not None and done.status == "completed", done
    assert (done.effective_mode, done.ran_mode) == ("relax", None)  # a U says no mode
    assert proxy.mj_fast_jobs == before and spent(router, "fast") == 0
    assert spent(router, "relax") > 0
    assert router.pool.get("a-pro").setting == "fast"  # type: ignore[union-attr]


def test_a_relax_child_that_costs_fast_time_is_never_sent_to_an_account_set_to_fast(
    client: Client,
    router: Router,
    pro: StubProxy,
    drain: Callable[[], None],
) -> None:
    """A button press runs in the account's own Midjourney mode, fast here: a relax
    variation would spend fast hours, so it fails before anything is sent."""
    proxy = pro
    grid = client.submit("alice", "a fox", mode="relax")
    drain()
    before = (proxy.mj_fast_jobs, len(proxy.requests))
    child = client.submit("alice", task_type="variation", parent_id=grid.id, input={"index": 1})
    drain()
    refused = client.get(child.id)
    assert refused is not None and refused.status == "failed", refused
    assert refused.effective_mode == "relax"
    assert refused.error is not None and refused.error.code == "mode_unsupported"
    assert "would spend fast hours" in refused.error.message
    sent = [p for _, p, _ in proxy.requests[before[1] :] if "/submit/" in p]
    assert sent == [] and proxy.mj_fast_jobs == before[0]  # never sent, nothing spent


def test_a_relax_upscale_creative_runs_only_on_an_account_set_to_relax(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    """Upscale (Creative) costs fast time (trueai counts it): refused while the account is
    set to fast; once an operator sets it to relax (in Midjourney and here) it is sent,
    runs relax and is charged relax."""
    proxy = trueai
    grid = client.submit("alice", "a fox --v 6.1", mode="relax")
    drain()
    up = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 2})
    drain()
    refused = client.submit("alice", task_type="upscale_creative", parent_id=up.id)
    drain()
    failed = client.get(refused.id)
    assert failed is not None and failed.error is not None
    assert (failed.status, failed.error.code) == ("failed", "mode_unsupported")
    assert len(proxy.sent("/mj/submit/action")) == 1  # the upscale only
    proxy.mj_setting = "relax"  # the operator's /relax, and the router's setting
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    before = (proxy.mj_fast_jobs, spent(router, "fast"))
    child = client.submit("alice", task_type="upscale_creative", parent_id=up.id)
    drain()
    done = client.get(child.id)
    assert done is not None and done.status == "completed", done
    assert done.result is not None and done.result["mode"] == "relax"  # as Midjourney said
    assert (done.effective_mode, done.ran_mode) == ("relax", None)  # no mismatch
    pressed = proxy.sent("/mj/submit/action")[-1]["customId"]
    assert pressed.startswith("MJ::JOB::upsample_v6r1_2x_creative::1::")
    assert (proxy.mj_fast_jobs, spent(router, "fast")) == before


def test_after_credits_exhausted_trueai_runs_a_relax_child_relax_and_it_is_charged_relax(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    """trueai's "Credits exhausted" with EnableAutoSetRelax: it allows the account relax
    only and sends Midjourney /relax; the router flips it. A fast grid's variation then
    runs relax (rule 5): sent, and charged as Midjourney's message says it ran (relaxed),
    not as trueai's `mode`, which reads the parent's `--fast` in the echoed prompt."""
    proxy = trueai
    grid = client.submit("alice", "a fox", mode="fast")
    drain()
    proxy.mj_fast_jobs = 0
    out = client.submit("alice", "a cat", mode="fast")
    drain()
    flipped = router.pool.get("a-pro")
    assert flipped is not None and flipped.setting == "relax"
    assert (proxy.allow_modes, proxy.mj_setting, proxy.fast_available) == (["RELAX"], "relax", 0)
    assert client.get(out.id).effective_mode == "relax"  # type: ignore[union-attr]
    before = spent(router, "fast")
    child = client.submit("alice", task_type="variation", parent_id=grid.id, input={"index": 3})
    drain()
    done = client.get(child.id)
    assert done is not None and done.status == "completed", done
    assert done.result is not None and done.result["mode"] == "relax"
    assert (done.effective_mode, done.ran_mode) == ("relax", None)  # no mismatch
    assert b"mode_mismatch:relax:fast" not in router.redis.hgetall(router.keys.stats("alice"))
    varied = next(t for t in proxy.tasks.values() if t["action"] == "VARIATION")
    assert varied["mode"] == "FAST"  # trueai's own reading: the parent's flag
    assert spent(router, "fast") == before and spent(router, "relax") > 0


def test_a_relax_inpaint_is_not_sent_while_trueai_would_write_fast_into_its_prompt(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    """trueai writes its own choice, fast first, into a modal's prompt: an account an
    operator set to relax still has fast time by trueai's count, so a relax vary region
    would run fast and fails `mode_unsupported` before anything is sent."""
    proxy = trueai
    grid = client.submit("alice", "a fox", mode="relax")
    drain()
    up = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 1})
    drain()
    proxy.mj_setting = "relax"
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    mask = {"mask_base64": "data:image/png;base64,AAAA"}
    region = client.submit("alice", task_type="inpaint", parent_id=up.id, input=mask)
    drain()
    done = client.get(region.id)
    assert done is not None and done.error is not None
    assert (done.status, done.error.code) == ("failed", "mode_unsupported")
    assert "1000 fast jobs" in done.error.message
    assert len(proxy.sent("/mj/submit/action")) == 1 and proxy.sent("/mj/submit/modal") == []
    proxy.fast_available = 6  # no FAST for trueai now (more than 6 needed): it picks relax
    again = client.submit("alice", task_type="inpaint", parent_id=up.id, input=mask)
    drain()
    ran = client.get(again.id)
    assert ran is not None and ran.status == "completed", ran
    assert ran.result is not None and ran.result["mode"] == "relax"
    assert (ran.effective_mode, ran.ran_mode) == ("relax", None)
    assert proxy.sent("/mj/submit/modal")[-1]["prompt"].endswith("--relax")


def test_a_child_trueai_runs_in_another_mode_is_recorded_and_charged_as_what_ran(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    grid = client.submit("alice", "a comet", mode="turbo")
    drain()
    child = client.submit("alice", task_type="variation", parent_id=grid.id, input={"index": 1})
    drain()
    done = client.get(child.id)
    assert done is not None and done.status == "completed"
    # An action tries FAST before TURBO (TaskService.cs:1256-1264): it ran fast.
    assert (done.effective_mode, done.ran_mode) == ("turbo", "fast")
    assert done.result is not None and done.result["mode"] == "fast"
    stats = router.redis.hgetall(router.keys.stats("alice"))
    assert stats[b"mode_mismatch:turbo:fast"] == b"1"
    used = router.pool.get("a-pro")
    assert used is not None and used.gpu_seconds_used["fast"] > 0


@pytest.mark.parametrize("server", SERVERS)
def test_the_backends_account_state_is_read_where_the_server_tells_it(
    server: str, router: Router, proxies: Callable[..., StubProxy]
) -> None:
    proxy = proxies(server=server, secret=SECRET)
    add(router, "a-pro", proxy)
    sync = BackendSync(router)
    view = router.pool.get("a-pro")
    assert view is not None
    state = sync.sync(view)
    if server == "novicezk":  # it has no such endpoint: the router's reckoning stands
        assert state is None
        assert router.pool.get("a-pro").backend_fast_ms is None  # type: ignore[union-attr]
        return
    assert state is not None and state.fast_ms == proxy.fast_available * 60_000
    synced = router.pool.get("a-pro")
    assert synced is not None and synced.backend_fast_ms == state.fast_ms
    assert synced.setting == "fast"
    # trueai's count is 0 for a disabled or capped account too (NotifyService.cs:180-216):
    # recorded for the drift alert, never read as "out of fast hours".
    proxy.enabled = False
    sync.sync(synced)
    kept = router.pool.get("a-pro")
    assert kept is not None and kept.backend_fast_ms == 0
    assert (kept.setting, kept.fast_hours_remaining) == ("fast", synced.fast_hours_remaining)


def test_one_worker_reads_each_account_per_interval(
    router: Router,
    trueai: StubProxy,
) -> None:
    proxy = trueai
    first, second = BackendSync(router), BackendSync(Router(router.settings, router.redis))
    first.sync_due()
    second.sync_due()
    homes = [p for _, p, _ in proxy.requests if p == "/mj/home"]
    assert len(homes) == 2  # one to find the server, one read of the account


# --- What an adversarial review found (each failed before its fix) ------------------------


def answer_first(proxy: StubProxy, answer: Callable[[Request], Reply | None]) -> None:
    """`answer(request)` answers before the model does (None: the model answers): a proxy
    behind a gateway, or one answering oddly."""
    model = proxy.model
    route = type(model).route
    model.route = lambda req: answer(req) or route(model, req)  # type: ignore[method-assign]


def change_answers(proxy: StubProxy, change: Callable[[Request, dict[str, Any]], None]) -> None:
    """`change(request, body)` edits each JSON object the model answers: a proxy (or a
    gateway re-encoding JSON) answering oddly."""
    model = proxy.model
    route = type(model).route

    def changed(req: Request) -> Reply:
        reply = route(model, req)
        if isinstance(reply.body, dict):
            change(req, reply.body)
        return reply

    model.route = changed  # type: ignore[method-assign]


def test_an_anonymous_home_refused_by_a_gateway_blames_no_account(
    client: Client, router: Router, proxies: Callable[..., StubProxy], drain: Callable[[], None]
) -> None:
    proxy = proxies(server="trueai", secret=SECRET)
    add(router, "a-pro", proxy, backend_server=None)
    refusals = iter([Reply(401, text="token required")])
    answer_first(proxy, lambda req: next(refusals, None) if req.path == "/mj/home" else None)
    task = client.submit("alice", "a quiet bay", mode="fast")
    router.queue.empty()
    assert run_task("alice", task.id, 1) == "submitted"  # could not tell at first: retried
    account = router.pool.get("a-pro")
    assert account is not None and account.enabled and account.attention_reason is None
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt) == ("completed", 1)


def test_a_finished_job_is_settled_when_its_server_cannot_be_told(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    proxy = trueai
    task_id = submitted(client, router, "a lighthouse")
    answer_first(proxy, lambda req: Reply(401, text="no") if req.path == "/mj/home" else None)
    drain()  # a worker that never met this proxy: /mj/home is refused from now on
    done = client.get(task_id)
    assert done is not None and (done.status, done.attempt) == ("completed", 1)


@pytest.mark.parametrize(
    "odd", [Reply(200, body=[]), Reply(200, body="busy"), Reply(400), Reply(404), Reply(408)]
)
def test_an_odd_answer_to_a_fetch_leaves_the_job_running(
    odd: Reply,
    client: Client,
    router: Router,
    trueai: StubProxy,
    drain: Callable[[], None],
) -> None:
    proxy = trueai
    task_id = submitted(client, router, "a lighthouse")
    odd_once = iter([odd])
    answer_first(proxy, lambda req: next(odd_once, None) if req.path.endswith("/fetch") else None)
    drain()
    done = client.get(task_id)
    assert done is not None and (done.status, done.attempt) == ("completed", 1)


def test_nonsense_times_never_charge_more_than_a_run_timeout(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    proxy = trueai
    before = router.pool.get("a-pro")
    assert before is not None

    def odd_times(req: Request, body: dict[str, Any]) -> None:
        if req.path.endswith("/fetch"):
            body["startTime"] = True  # a bool is not a time

    change_answers(proxy, odd_times)
    task = client.submit("alice", "a comet", mode="fast")
    drain()
    after = router.pool.get("a-pro")
    assert after is not None and client.get(task.id).status == "completed"  # type: ignore[union-attr]
    limit = router.settings.run_timeout_seconds["fast"]
    assert after.gpu_seconds_used["fast"] <= limit
    assert after.setting == "fast"


@pytest.mark.parametrize("count", [True, False, 1.5, "7", None])
def test_a_fast_job_count_that_is_not_a_whole_number_is_not_recorded(
    count: object, router: Router, proxies: Callable[..., StubProxy]
) -> None:
    proxy = proxies(server="trueai", secret=SECRET)
    add(router, "a-pro", proxy, backend_server="trueai")
    home = {"success": True, "code": 0, "data": {"fastAvailableCount": count}}
    answer_first(proxy, lambda req: Reply(200, body=home) if req.path == "/mj/home" else None)
    view = router.pool.get("a-pro")
    assert view is not None and BackendSync(router).sync(view) is None
    kept = router.pool.get("a-pro")
    assert kept is not None and kept.backend_fast_ms is None and kept.setting == "fast"


def test_a_bare_404_on_home_does_not_make_a_trueai_proxy_a_novicezk(
    router: Router, proxies: Callable[..., StubProxy]
) -> None:
    from router.driver import TransientError, make_driver
    from workers.drivers.mjproxy import MjProxyDriver
    from workers.drivers.mjproxy_http import Backend

    proxy = proxies(server="trueai", secret=SECRET)
    bare = iter([Reply(404)])
    answer_first(proxy, lambda req: next(bare, None) if req.path == "/mj/home" else None)
    driver = make_driver(router.settings, router.redis)
    assert isinstance(driver, MjProxyDriver)
    backend = Backend(proxy.url, None)
    with pytest.raises(TransientError, match="cannot tell"):
        driver.server(backend)
    assert driver.server(backend).name == "trueai"  # asked again, answered


def ended(proxy: StubProxy) -> bool:
    """Every job the proxy took has ended (as the proxy reports it)."""
    with proxy._lock:
        tasks = list(proxy.tasks.values())
    statuses = [proxy.model.view(t)["status"] for t in tasks]
    return bool(statuses) and all(s in ("SUCCESS", "FAILURE") for s in statuses)


def test_a_job_that_ended_while_nobody_looked_is_settled_by_its_end_past_its_timeout(
    pro: StubProxy, client: Client, router: Router, drain: Callable[[], None]
) -> None:
    task_id = submitted(client, router, "a lighthouse")
    wait_for(lambda: ended(pro), timeout=10, what="the job's end on the proxy")
    hour_ago = (int(time.time()) - 3600) * 1_000_000  # the poller looks past the timeout
    router.redis.hset(router.keys.task("alice", task_id), "started_at", hour_ago)
    drain()
    done = client.get(task_id)
    assert done is not None and (done.status, done.error) == ("completed", None)
    assert done.result is not None and done.result["image_url"]


def test_a_cancel_asked_after_the_job_ended_charges_what_ran(
    client: Client, router: Router, trueai: StubProxy, drain: Callable[[], None]
) -> None:
    proxy = trueai
    grid = client.submit("alice", "a comet", mode="turbo")
    drain()
    child = client.submit("alice", task_type="variation", parent_id=grid.id, input={"index": 1})
    router.queue.empty()
    assert run_task("alice", child.id, 1) == "submitted"
    wait_for(lambda: ended(proxy), timeout=10, what="the job's end on the proxy")
    router.cancel(child.id)
    drain()
    done = client.get(child.id)
    assert done is not None and (done.status, done.ran_mode) == ("cancelled", "fast")


@pytest.mark.parametrize("odd", ["buttons", "code as a float", "code as text"])
def test_a_success_with_odd_fields_is_still_a_success(
    odd: str,
    client: Client,
    router: Router,
    trueai: StubProxy,
    drain: Callable[[], None],
) -> None:

    def oddly(req: Request, body: dict[str, Any]) -> None:
        if odd == "buttons" and req.path.endswith("/fetch"):
            body["buttons"] = 5
        if odd.startswith("code") and "/submit/" in req.path:
            body["code"] = float(body["code"]) if odd == "code as a float" else str(body["code"])

    change_answers(trueai, oddly)
    task = client.submit("alice", "a kite", mode="fast")
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt) == ("completed", 1)


def test_the_running_jobs_of_an_account_are_polled_in_one_request(
    pro: StubProxy, client: Client, router: Router, drain: Callable[[], None]
) -> None:
    # Three: the account runs three jobs at once (core size 3 on both servers).
    ids = [client.submit("alice", f"a long fox {i}", mode="fast").id for i in range(3)]
    router.queue.empty()
    assert [run_task("alice", t, 1) for t in ids] == ["submitted"] * 3
    before = len(pro.requests)
    poller = Poller(Router(router.settings, router.redis))
    try:
        wait_for(lambda: poller.poll_once() >= 0 and router.polls.size() == 3, what="a round")
    finally:
        poller.threads.shutdown()
    asked = [p for _, p, _ in pro.requests[before:]]
    assert asked.count("/mj/task/list-by-condition") >= 1
    assert not [p for p in asked if p.endswith("/fetch")]  # none asked one by one
    (body, *_) = pro.sent("/mj/task/list-by-condition")
    assert sorted(body["ids"]) == sorted(t.handle.rsplit(":", 1)[1] for t in map(client.get, ids))  # type: ignore[union-attr]
    end_jobs_now(pro)
    drain()
    assert {client.get(t).status for t in ids} == {"completed"}  # type: ignore[union-attr]


def end_jobs_now(proxy: StubProxy) -> None:
    """The account finishes every job it runs (a `long` one included) now."""
    with proxy._lock:
        for task in proxy.tasks.values():
            task["_ends"] = 0
