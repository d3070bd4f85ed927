"""A slow endpoint stalls nothing: an owner's deliveries hold at most its own share of a
worker's delivery threads, each POST has one deadline, and a warm shutdown ends within
it, leaving what it did not deliver to another worker."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from router.client import Client
from router.settings import Settings
from tests.conftest import allow_loopback_webhooks, wait_for
from tests.servers import Endpoint
from tests.test_webhook_guard import Trickler
from tests.test_webhooks import settled

AddAccount = Callable[..., None]
Spawn = Callable[..., Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The receivers of these tests (on this host) allowed."""
    return allow_loopback_webhooks(settings)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    slow = Trickler(every=0.2)
    yield slow
    slow.close()


def test_an_owner_with_hanging_endpoints_holds_only_its_share_of_the_threads(
    client: Client, add_account: AddAccount, spawn: Spawn, endpoint: Endpoint
) -> None:
    add_account("m-pro", "mallory", "pro")
    add_account("a-pro", "alice", "pro")
    spawn(
        "worker",
        BYOA_WEBHOOK_TIMEOUT_SECONDS="120",
        BYOA_WEBHOOK_THREADS="4",
        BYOA_WEBHOOK_OWNER_THREADS="2",
    )
    hanging = [
        client.submit("mallory", f"cat {i}", mode="fast", webhook=endpoint.hook("/hang")).id
        for i in range(6)
    ]
    wait_for(lambda: endpoint.held == 2, what="mallory's endpoint to hold two deliveries")
    others = [
        client.submit("alice", f"dog {i}", mode="fast", webhook=endpoint.hook("/ok")).id
        for i in range(5)
    ]
    for task_id in others:
        wait_for(settled(client, task_id), what="alice's webhooks beside mallory's hanging ones")
    assert len(endpoint.to("/ok")) == 5
    assert endpoint.held == 2 and len(endpoint.to("/hang")) == 2  # never more than its share
    assert all(client.get(t).webhook_status == "pending" for t in hanging)  # type: ignore[union-attr]
    endpoint.release.set()  # then mallory's are all made too
    for task_id in hanging:
        wait_for(settled(client, task_id), what="mallory's webhooks once its endpoint answers")
    assert len(endpoint.to("/hang")) == 6


def test_a_warm_shutdown_ends_within_the_deadline_of_a_post_that_never_finishes(
    client: Client, add_account: AddAccount, spawn: Spawn, trickler: Trickler, endpoint: Endpoint
) -> None:
    add_account("a-pro", "alice", "pro")
    worker = spawn("worker", BYOA_WEBHOOK_TIMEOUT_SECONDS="3")
    hook = {"endpoint": f"{trickler.url}/slow"}
    task = client.submit("alice", "a cat", mode="fast", webhook=hook)
    wait_for(lambda: trickler.connections >= 1, what="the worker to be posting")
    worker.send_signal(signal.SIGTERM)
    # The answer trickles in for hours; the POST's own deadline ends it, and the process.
    wait_for(lambda: worker.poll() is not None, 30, "the worker to stop")
    assert worker.returncode == 0
    done = client.get(task.id)
    assert done is not None and done.status == "completed"
    assert done.webhook_status == "pending"  # not lost: due again, for another worker
