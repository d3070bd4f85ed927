"""Acknowledged means durable (`redis_min_replicas`): with the replica stalled (SIGSTOP, as a
lagging or cut-off link), no door reports a submission accepted, no router takes an
intake batch as claimed, no worker runs a task on its account, and no terminal state is
returned by `Client.wait` or POSTed as a webhook; each caller gets `not_replicated`, and
the same call with the same id (or Idempotency-Key) succeeds once the replica is back,
making nothing twice."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.api.app import create_app
from router.apikeys import ApiKeys
from router.cli import main
from router.client import Client
from router.core import Router
from router.daemon import IntakeDaemon
from router.errors import NotReplicated, WaitTimedOut
from router.scripts import text, text_hash
from router.settings import Settings
from tests.conftest import allow_loopback_webhooks, served, wait_for
from tests.sentinel_servers import DataServer, SentinelSet
from tests.servers import Endpoint
from workers.jobs import run_task, use_settings
from workers.process import drain
from workers.webhooks import Deliverer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")

WAIT_SECONDS = 0.3


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[DataServer, DataServer]]:
    """A primary and its replica, in sync."""
    primary, replica = DataServer(tmp_path / "primary"), DataServer(tmp_path / "replica")
    try:
        primary.start()
        replica.start(replica_of=primary.port)
        wait_for(lambda: SentinelSet.replicas_online(primary) == 1, 20, "the replica to sync")
        wait_for(lambda: SentinelSet.acknowledged(primary, 1), 20, "the replica to acknowledge")
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def durable(pair: tuple[DataServer, DataServer], prefix: str) -> Iterator[Router]:
    """A router on the primary that wants one replica to acknowledge, with a Pro account."""
    settings = Settings(
        redis_url=SecretStr(f"redis://127.0.0.1:{pair[0].port}/0"),
        key_prefix=prefix,
        sim_speed=2000,
        poll_interval_seconds=0.02,
        submit_threads=1,
        redis_min_replicas=1,
        redis_wait_timeout_seconds=WAIT_SECONDS,
        webhook_timeout_seconds=0.5,
    )
    router = Router(allow_loopback_webhooks(settings))
    router.apply(router.pool.add(AccountSpec(id="a-pro", owner="alice", plan="pro")))
    use_settings(router.settings)
    yield router
    use_settings(None)


@contextlib.contextmanager
def stalled(pair: tuple[DataServer, DataServer]) -> Iterator[None]:
    """The replica neither answers nor reads its link meanwhile: nothing new reaches it.
    Afterwards, until it has caught up (it acknowledges what it has about once a second)."""
    primary, replica = pair
    replica.pause()
    try:
        yield
    finally:
        replica.resume()
    wait_for(lambda: SentinelSet.acknowledged(primary, 1), 20, "the replica to catch up")


def submitted(router: Router, owner: str = "alice") -> int:
    return int(router.redis.hget(router.keys.stats(owner), "submitted") or 0)


def test_a_submission_is_reported_only_once_a_replica_has_it(
    durable: Router, pair: tuple[DataServer, DataServer]
) -> None:
    client = Client(durable.settings, durable.redis)
    first = client.submit("alice", "a cat", mode="fast", id="t-1")
    assert pair[1].client.exists(durable.keys.task("alice", first.id))  # before the answer
    with stalled(pair):
        with pytest.raises(NotReplicated) as late:
            client.submit("alice", "a dog", mode="fast", id="t-2")
        assert late.value.code == "not_replicated" and "task t-2" in late.value.message
        assert durable.redis.exists(durable.keys.task("alice", "t-2"))  # stored, not reported
    again = client.submit("alice", "a dog", mode="fast", id="t-2")  # the same call: the task
    assert again.id == "t-2" and submitted(durable) == 2  # found again, not made twice
    assert pair[1].client.exists(durable.keys.task("alice", "t-2"))


def test_the_http_api_answers_503_not_replicated_and_the_retry_with_its_key_one_task(
    durable: Router, pair: tuple[DataServer, DataServer]
) -> None:
    api_key = ApiKeys(durable.redis, durable.scripts).create("alice", "test")[1]
    headers = {"x-api-key": api_key.get_secret_value(), "Idempotency-Key": "k-durable-1"}
    body = {"model": "midjourney", "task_type": "imagine", "input": {"prompt": "a cat"}}
    with (
        served(create_app(durable.settings, durable.redis)) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        with stalled(pair):
            late = http.post("/api/v1/task", json=body, headers=headers)
        assert late.status_code == 503, late.text
        assert late.json()["error"]["code"] == "not_replicated"
        retry = http.post("/api/v1/task", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert submitted(durable) == 1
    assert pair[1].client.exists(durable.keys.task("alice", retry.json()["data"]["task_id"]))


def test_byoa_submit_says_not_replicated_and_exits_1(
    durable: Router, pair: tuple[DataServer, DataServer]
) -> None:
    env = {
        "BYOA_REDIS_URL": durable.settings.redis_url.get_secret_value(),
        "BYOA_KEY_PREFIX": durable.keys.prefix,
        "BYOA_REDIS_MIN_REPLICAS": "1",
        "BYOA_REDIS_WAIT_TIMEOUT_SECONDS": str(WAIT_SECONDS),
    }
    args = ["submit", "--owner", "alice", "--prompt", "a cat", "--id", "cli-1"]
    with stalled(pair):
        result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1, result.output
    assert "error: not_replicated: task cli-1 was written" in result.output
    ok = CliRunner().invoke(main, args, env=env)
    assert ok.exit_code == 0, ok.output
    assert submitted(durable) == 1


def test_an_intake_batch_is_claimed_only_once_a_replica_has_the_claim(
    durable: Router, pair: tuple[DataServer, DataServer]
) -> None:
    daemon = IntakeDaemon(durable, block_seconds=0)
    message = '{"owner": "alice", "input": {"prompt": "a cat --fast"}}'
    with stalled(pair):
        durable.redis.lpush(durable.keys.intake, message)
        with pytest.raises(NotReplicated):
            daemon.claim()
        assert durable.redis.llen(daemon.processing) == 1  # held, to be handled again
    handled = daemon.handle(daemon.claim(0))
    assert handled.created == 1 and durable.redis.llen(daemon.processing) == 0
    assert submitted(durable) == 1


def test_a_worker_runs_a_task_on_its_account_only_once_a_replica_has_its_start(
    durable: Router, pair: tuple[DataServer, DataServer], caplog: pytest.LogCaptureFixture
) -> None:
    task = Client(durable.settings, durable.redis).submit("alice", "a cat", mode="fast")
    backend_job = durable.keys.sim_job(f"a-pro:{durable.job_id(task.id, 1)}")
    caplog.set_level(logging.WARNING, logger="workers.jobs")
    done: list[str] = []
    job = threading.Thread(  # the rq job's function, as a worker runs it
        target=lambda: done.append(run_task("alice", task.id, 1, "a-pro")), daemon=True
    )
    with stalled(pair):
        job.start()
        wait_for(lambda: _status(durable, task.id) == "running", 10, "START on the primary")
        wait_for(lambda: _retries(caplog) >= 2, 10, "START to wait for the replica twice")
        assert not durable.redis.exists(backend_job)  # not submitted to its account
    job.join(30)
    assert done == ["submitted"] and durable.redis.exists(backend_job)
    drain(Router(durable.settings))  # its poller settles it; its rq job finds it started
    ended = durable.tasks.get(task.id, "alice")
    assert ended is not None and ended.status == "completed" and ended.retries == 0


def _status(router: Router, task_id: str) -> str:
    return text(router.redis.hget(router.keys.task("alice", task_id), "status") or b"")


def _retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying" in r.getMessage() for r in caplog.records)


def test_wait_returns_an_end_only_once_a_replica_has_it(
    durable: Router, pair: tuple[DataServer, DataServer]
) -> None:
    client = Client(durable.settings, durable.redis)
    task = client.submit("alice", "a cat", mode="fast")
    with stalled(pair):
        durable.cancel(task.id)
        assert _status(durable, task.id) == "cancelled"  # on the primary only
        with pytest.raises(WaitTimedOut) as early:
            client.wait(task.id, timeout=3 * WAIT_SECONDS)
        assert "not yet acknowledged by the replicas" in early.value.message
    assert client.wait(task.id, timeout=10).status == "cancelled"


def test_a_webhook_is_posted_only_once_a_replica_has_the_state_with_a_stable_id(
    durable: Router, pair: tuple[DataServer, DataServer], endpoint: Endpoint
) -> None:
    hook = {"endpoint": endpoint.url + "/done", "secret": "s3cret"}
    task = Client(durable.settings, durable.redis).submit(
        "alice", "a cat", mode="fast", webhook=hook
    )
    deliverer = Deliverer(durable)
    with stalled(pair):
        durable.cancel(task.id)
        assert durable.redis.zcard(durable.keys.outbox("alice")) == 1
        deliverer.deliver_due()
        assert not endpoint.hits  # a state the replica lacks is not announced
    wait_for(lambda: deliverer.deliver_due() == 0.0 and endpoint.hits, 20, "the webhook")
    (hit,) = endpoint.hits
    record = text_hash(durable.redis.hgetall(durable.keys.task("alice", task.id)))
    assert hit.headers["x-webhook-id"] == f"{task.id}/{record['attempt']}/cancelled"
    assert record["webhook_status"] == "delivered"
