"""The router and its workers against each midjourney-proxy server as it really behaves
(tests/proxy_models: trueai-org v11.10.3 and novicezk v2.6.3, every behaviour cited), with
real Redis and rq: the same suite for both servers, found by asking them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from pydantic import SecretStr

from router.client import Client
from router.core import Router
from router.models import Setting
from router.pool import AccountSpec
from router.settings import Settings
from tests.mjproxy_stub import StubProxy
from workers.backend_sync import BackendSync
from workers.jobs import run_task

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
    drain()  # the flipped account still runs relax work (rule 2)
    ran = client.get(relax.id)
    assert ran is not None and ran.status == "completed", ran


@pytest.mark.parametrize("server", SERVERS)
def test_out_of_fast_hours_with_no_other_account_falls_back_to_relax(
    server: str,
    client: Client,
    router: Router,
    proxies: Callable[..., StubProxy],
    drain: Callable[[], None],
) -> None:
    proxy = proxies(server=server, secret=SECRET)
    proxy.mj_fast_jobs = 0
    add(router, "a-pro", proxy)
    task = client.submit("alice", "a harbour", mode="fast")
    drain()
    done = client.get(task.id)
    assert done is not None and (done.status, done.attempt) == ("completed", 2)
    assert (done.effective_mode, done.fallback_reason) == ("relax", "fast_hours_exhausted")
    assert proxy.mj_fast_jobs == 0  # relax spent no fast time


@pytest.mark.parametrize("server", SERVERS)
def test_transient_answers_never_end_a_task_on_first_try_nor_take_the_account_out(
    server: str,
    client: Client,
    router: Router,
    proxies: Callable[..., StubProxy],
    drain: Callable[[], None],
) -> None:
    proxy = proxies(server=server, secret=SECRET)
    add(router, "a-pro", proxy)
    # "No account instance": trueai's account is relax-only for now (it asks /mj/home and
    # finds fast time left), novicezk's instance is down (it tells nothing more).
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


@pytest.mark.parametrize("server", SERVERS)
def test_a_relax_child_never_runs_fast(
    server: str,
    client: Client,
    router: Router,
    proxies: Callable[..., StubProxy],
    drain: Callable[[], None],
) -> None:
    proxy = proxies(server=server, secret=SECRET)
    add(router, "a-pro", proxy)
    grid = client.submit("alice", "a fox", mode="fast")
    drain()
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX))
    before = (proxy.mj_fast_jobs, len(proxy.requests))
    child = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 1})
    drain()
    refused = client.get(child.id)
    assert refused is not None and refused.status == "failed", refused
    assert refused.effective_mode == "relax"
    assert refused.error is not None and refused.error.code == "mode_unsupported"
    sent = [p for _, p, _ in proxy.requests[before[1] :] if "/submit/" in p]
    assert sent == [] and proxy.mj_fast_jobs == before[0]  # never sent, nothing spent
    if server == "novicezk":
        return
    # trueai marks an exhausted account relax-only and switches Midjourney to relax
    # (DiscordAccount.cs:1081-1113, DiscordWebSocketService.cs:1958-2006): now it may go.
    proxy.fast_available, proxy.fast_exhausted = 0, True
    proxy.allow_modes, proxy.mj_setting = ["RELAX"], "relax"
    ok = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 2})
    drain()
    done = client.get(ok.id)
    assert done is not None and (done.status, done.effective_mode) == ("completed", "relax")
    assert done.ran_mode is None  # trueai reported RELAX: what was placed


def test_a_child_trueai_runs_in_another_mode_is_recorded_and_charged_as_what_ran(
    client: Client, router: Router, proxies: Callable[..., StubProxy], drain: Callable[[], None]
) -> None:
    proxy = proxies(server="trueai", secret=SECRET)
    add(router, "a-pro", proxy)
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
    proxy.fast_available = 0  # trueai says the account is out
    sync.sync(synced)
    flipped = router.pool.get("a-pro")
    assert flipped is not None and flipped.setting == "relax" and flipped.enabled
    assert (flipped.fast_hours_remaining, flipped.backend_fast_ms) == (0.0, 0)


def test_one_worker_reads_each_account_per_interval(
    router: Router, proxies: Callable[..., StubProxy]
) -> None:
    proxy = proxies(server="trueai", secret=SECRET)
    add(router, "a-pro", proxy)
    first, second = BackendSync(router), BackendSync(Router(router.settings, router.redis))
    first.sync_due()
    second.sync_due()
    homes = [p for _, p, _ in proxy.requests if p == "/mj/home"]
    assert len(homes) == 2  # one to find the server, one read of the account
