"""Webhooks: every end of a task (and its start, if asked) is POSTed to its endpoint, with
retries, by any worker, off the routing path; the secret is shown nowhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from router.cli import main
from router.client import Client
from router.core import Router
from router.daemon import IntakeDaemon
from router.errors import TaskRejected
from router.requests import Rejection, TaskMessage, check_message
from router.scripts import text
from router.settings import Settings
from router.tasks import Task
from tests.conftest import allow_loopback_webhooks, wait_for
from tests.servers import SECRET, Endpoint, free_port, kill_tree

AddAccount = Callable[..., None]
Drain = Callable[[], None]
Spawn = Callable[..., Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Short webhook timeouts and backoffs (in this process: the `drain` fixture), and the
    receivers of these tests (on this host) allowed."""
    fast = {"webhook_timeout_seconds": 2.0, "webhook_retries": 3, "webhook_backoff_seconds": 0.05}
    return allow_loopback_webhooks(settings).model_copy(update=fast)


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The same for spawned workers."""
    return {
        **env,
        "BYOA_WEBHOOK_TIMEOUT_SECONDS": "2",
        "BYOA_WEBHOOK_RETRIES": "3",
        "BYOA_WEBHOOK_BACKOFF_SECONDS": "0.05",
    }


def settled(client: Client, task_id: str) -> Callable[[], Task | None]:
    """A condition for `wait_for`: the task ended and its webhook is no longer pending."""

    def check() -> Task | None:
        t = client.get(task_id)
        ended = t is not None and t.status.terminal and t.webhook_event == t.status.value
        return t if ended and t is not None and t.webhook_status != "pending" else None

    return check


def test_completed_task_posts_its_record_with_the_secret_once(
    client: Client, add_account: AddAccount, router: Router, drain: Drain, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/done"))
    assert task.webhook_endpoint == f"{endpoint.url}/done" and task.webhook_status is None
    drain()
    done = client.get(task.id)
    assert done is not None and done.status == "completed"
    assert (done.webhook_event, done.webhook_status, done.webhook_attempts) == (
        "completed",
        "delivered",
        1,
    )
    assert done.webhook_error is None
    (hit,) = endpoint.hits
    assert hit.path == "/done" and hit.headers["content-type"] == "application/json"
    assert hit.headers["x-webhook-secret"] == SECRET
    assert hit.headers["x-webhook-event"] == "completed"
    assert hit.headers["x-webhook-id"] == f"{task.id}/{done.attempt}/completed"  # stable
    record = {k: v for k, v in done.public().items() if not k.startswith("webhook_")}
    assert {k: v for k, v in hit.body.items() if not k.startswith("webhook_")} == record
    assert hit.body["webhook_status"] == "pending"  # as it was while being delivered
    assert router.redis.zcard(router.keys.outbox("alice")) == 0


def test_failed_and_cancelled_tasks_are_delivered(
    client: Client,
    add_account: AddAccount,
    router: Router,
    drain: Drain,
    endpoint: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_SIM__TRANSIENT_FAILURE_RATE", "1")  # the driver always fails
    monkeypatch.setenv("BYOA_TRANSIENT_RETRIES", "0")
    monkeypatch.setenv("BYOA_MAX_RETRIES", "0")
    add_account("a-pro", "alice", "pro")
    message = {"id": "long", "owner": "alice", "input": {"prompt": "x" * 501}}
    router.redis.lpush(router.keys.intake, json.dumps({**message, "webhook": endpoint.hook("/v")}))
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())  # stored failed: prompt_too_long
    nobody = client.submit("bob", "a cat", webhook=endpoint.hook("/r"))  # bob has no account
    broken = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/d"))
    waiting = client.submit("alice", "a dog", webhook=endpoint.hook("/c"))
    client.cancel(waiting.id)  # before any worker starts it
    drain()
    for task_id, path, code in (
        ("long", "/v", "prompt_too_long"),
        (nobody.id, "/r", "no_account"),
        (broken.id, "/d", "driver_error"),
        (waiting.id, "/c", None),
    ):
        done = client.get(task_id)
        assert done is not None and done.webhook_status == "delivered", (task_id, done)
        assert (done.error.code if done.error else None) == code
        (hit,) = endpoint.to(path)
        assert hit.body["status"] == hit.headers["x-webhook-event"] == done.status.value
        assert hit.body["error"] == (done.error.model_dump() if done.error else None)
    assert client.get(waiting.id).status == "cancelled"  # type: ignore[union-attr]


def test_progress_posts_the_start_then_the_end(
    client: Client, add_account: AddAccount, spawn: Spawn, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("worker", BYOA_SIM_SPEED="30")  # a fast job lasts about 2 s
    task = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/p", progress=True))
    plain = client.submit("alice", "a dog", mode="fast", webhook=endpoint.hook("/plain"))
    for t in (task, plain):
        wait_for(settled(client, t.id), what="the webhooks to be delivered")
    seen = [(h.headers["x-webhook-event"], h.body["status"]) for h in endpoint.to("/p")]
    assert seen == [("running", "running"), ("completed", "completed")]
    assert [h.body["status"] for h in endpoint.to("/plain")] == ["completed"]


def test_endpoint_failing_twice_gets_a_third_attempt(
    client: Client, add_account: AddAccount, drain: Drain, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    endpoint.answers["/flaky"] = [500, 503, 200]
    task = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/flaky"))
    drain()
    done = client.get(task.id)
    assert done is not None and (done.webhook_status, done.webhook_attempts) == ("delivered", 3)
    assert len(endpoint.to("/flaky")) == 3
    ids = {h.headers["x-webhook-id"] for h in endpoint.to("/flaky")}
    assert ids == {f"{task.id}/{done.attempt}/completed"}  # one event: a receiver dedupes by it


def test_endpoint_always_failing_is_given_up_and_the_task_stays_completed(
    client: Client, add_account: AddAccount, router: Router, drain: Drain, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    endpoint.answers["/down"] = [500]
    down = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/down"))
    closed = {"endpoint": f"http://127.0.0.1:{free_port()}/x", "secret": SECRET}
    refused = client.submit("alice", "a dog", mode="fast", webhook=closed)
    drain()
    attempts = router.settings.webhook_retries + 1
    for task_id, error in ((down.id, "HTTP 500"), (refused.id, "ConnectionRefusedError")):
        done = client.get(task_id)
        assert done is not None and done.status == "completed" and done.result is not None
        assert (done.webhook_status, done.webhook_attempts) == ("failed", attempts)
        assert done.webhook_error == error
    assert len(endpoint.to("/down")) == attempts
    assert router.redis.zcard(router.keys.outbox("alice")) == 0


def test_hung_endpoint_delays_no_other_task_nor_webhook(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("worker", BYOA_WEBHOOK_TIMEOUT_SECONDS="120")
    stuck = client.submit("alice", "first", mode="fast", webhook=endpoint.hook("/hang"))
    wait_for(lambda: endpoint.held == 1, what="the endpoint to hold the first webhook")
    others = [
        client.submit("alice", f"cat {i}", mode="fast", webhook=endpoint.hook("/ok")).id
        for i in range(6)
    ]
    assert all(client.get(t).account_id == "a-pro" for t in others)  # type: ignore[union-attr]
    for task_id in others:
        wait_for(settled(client, task_id), what="the other tasks and their webhooks")
    assert len(endpoint.to("/ok")) == 6 and endpoint.held == 1  # still hanging
    hung = client.get(stuck.id)
    assert hung is not None and (hung.status, hung.webhook_status) == ("completed", "pending")


def test_deliveries_of_a_killed_worker_are_made_by_another(
    client: Client, add_account: AddAccount, router: Router, spawn: Spawn, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    first = spawn("worker", BYOA_WEBHOOK_TIMEOUT_SECONDS="3")  # holds a claim for 7 s
    task = client.submit("alice", "a cat", mode="fast", webhook=endpoint.hook("/hang"))
    wait_for(lambda: endpoint.held == 1, what="the first worker to be posting")
    now = router.redis.time()[0] * 1e6
    held = router.redis.zscore(router.keys.outbox("alice"), f"{task.id}/completed")
    assert held is not None and held > now  # claimed by the first worker
    kill_tree(first)
    endpoint.release.set()  # the endpoint answers at once from now on
    spawn("worker")
    done = wait_for(settled(client, task.id), what="another worker to deliver")
    assert (done.status, done.webhook_status, done.webhook_attempts) == (
        "completed",
        "delivered",
        1,  # the killed worker's attempt was never recorded
    )
    assert len(endpoint.to("/hang")) == 2


@pytest.mark.parametrize(
    ("webhook", "says"),
    [
        ({"endpoint": "ftp://example.com/x"}, "http:// or https://"),
        ({"endpoint": "http:///x"}, "with a host"),
        ({"endpoint": "https://user:pw@example.com/"}, "user or password"),
        ({"endpoint": "http://example.com/" + "a" * 2100}, "longer than 2048"),
        ({"endpoint": "http://example.com/a b"}, "without spaces"),
        ({"endpoint": "http://example.com:99999/"}, "not a valid URL"),
        ({"endpoint": "http://example.com/", "secret": SECRET + "\r\nX: 1"}, "visible ASCII"),
        ({"endpoint": "http://example.com/", "secret": SECRET * 20}, "longer than 256"),
        ({"endpoint": "http://example.com/", "progress": "yes"}, "valid boolean"),
        ({"endpoint": "http://example.com/", "retry": 3}, "Extra inputs"),
        ({"secret": SECRET}, "endpoint: Field required"),
        ("http://example.com/", "valid dictionary"),
    ],
)
def test_bad_webhooks_are_invalid_tasks_that_never_quote_the_secret(
    webhook: Any, says: str, settings: Settings
) -> None:
    message = {"id": "t1", "owner": "alice", "webhook": webhook}
    result = check_message(message, settings)
    assert isinstance(result, Rejection) and result.code == "invalid_task"
    assert "webhook" in result.message and says in result.message, result.message
    assert SECRET not in result.message
    stored = result.as_failed_task()
    assert stored is not None and stored.webhook is None  # nowhere to tell
    with pytest.raises(ValidationError) as e:
        TaskMessage.model_validate(message)
    assert SECRET not in str(e.value)


def test_secret_is_in_no_record_log_output_or_dead_letter(
    client: Client,
    add_account: AddAccount,
    router: Router,
    drain: Drain,
    endpoint: Endpoint,
    env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    add_account("a-pro", "alice", "pro")
    hook = endpoint.hook("/s")
    for message in (
        {"id": "in-1", "owner": "alice", "input": {"prompt": "a fox"}, "webhook": hook},
        {"id": "bad-hook", "owner": "alice", "webhook": {**hook, "endpoint": "ftp://x/"}},
        {"owner": 42, "webhook": hook},  # no usable owner: a dead letter
    ):
        router.redis.lpush(router.keys.intake, json.dumps(message))
    router.redis.lpush(router.keys.intake, '{"webhook": {"secret": "' + SECRET + '", ')
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).dead_letters == 2
    with pytest.raises(TaskRejected) as rejected:
        client.submit("alice", "a cat", webhook={**hook, "endpoint": "nope"})
    assert rejected.value.code == "invalid_task" and SECRET not in str(rejected.value)
    runner, outputs = CliRunner(), []
    hooked = ["--webhook", f"{endpoint.url}/s", "--webhook-secret-env", "HOOK_SECRET"]
    for args in (
        ["submit", "--owner", "alice", "--prompt", "a dog", "--id", "cli-1", "--json", *hooked],
        ["task", "in-1", "--json"],
        ["task", "bad-hook"],
        ["dead-letters"],
    ):
        result = runner.invoke(main, args, env={**env, "HOOK_SECRET": SECRET})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    drain()
    outputs.append(runner.invoke(main, ["task", "cli-1", "--json"], env=env).output)
    assert json.loads(outputs[-1])["webhook_status"] == "delivered"
    bad = client.get("bad-hook")
    assert bad is not None and bad.error is not None and bad.error.code == "invalid_task"
    assert "webhook.endpoint" in bad.error.message
    hits = endpoint.to("/s")
    assert len(hits) == 2 and all(h.headers["x-webhook-secret"] == SECRET for h in hits)
    # Only the secret's own keys hold it; they live as long as their task's record.
    kept = {}
    for raw_key in router.redis.scan_iter(match=f"{router.keys.prefix}:*"):
        key = text(raw_key)
        kind = text(router.redis.type(key))
        dump = {
            "string": lambda k: router.redis.get(k),
            "hash": lambda k: router.redis.hgetall(k),
            "list": lambda k: router.redis.lrange(k, 0, -1),
            "set": lambda k: router.redis.smembers(k),
            "zset": lambda k: router.redis.zrange(k, 0, -1),
        }[kind](key)
        if SECRET in repr(dump):
            kept[key] = router.redis.ttl(key)
    owner_base = router.keys.owner_base("alice")
    assert set(kept) == {f"{owner_base}:hook:in-1", f"{owner_base}:hook:cli-1"}
    ttl = router.settings.task_ttl_seconds
    assert all(0 < t <= ttl for t in kept.values())
    assert SECRET not in "".join(outputs)
    assert SECRET not in caplog.text
    assert "webhook of alice/in-1/completed delivered" in caplog.text
