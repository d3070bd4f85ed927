"""`byoa api` does every request's Redis work on one thread, many requests a batch
(`router.api.batcher`): requests of several owners batched together each get their own
answer, one request's refusal is its own, and a Redis outage answers 503 without
stopping the thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from router.api import taskapi
from router.api.app import create_app
from router.api.batcher import Batcher, Item
from router.api.envelope import ApiError
from router.apikeys import ApiKey, ApiKeys, AuthFailure
from router.core import Router
from router.errors import ByoaError
from router.settings import Settings
from tests.test_api import TASKS, imagine, metric


def _check(found: ApiKey | AuthFailure, wait: float) -> ApiKey:
    if isinstance(found, AuthFailure):
        raise ApiError(401, "unauthorized", found.value)
    return found


def _item(loop: asyncio.AbstractEventLoop, key: str | None, body: Any, router: Router) -> Item:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    work = partial(taskapi._create, router=router, raw=raw)
    return Item(key, _check, lambda k: work(k), loop, loop.create_future())


@pytest.fixture
def keys(router: Router, add_account: Callable[..., None]) -> dict[str, str]:
    add_account("a-pro", "alice", "pro")
    add_account("b-pro", "bob", "pro")
    api_keys = ApiKeys(router.redis, router.scripts)
    made = {o: api_keys.create(o, "test", None)[1].get_secret_value() for o in ("alice", "bob")}
    revoked_id, revoked = api_keys.create("alice", "old", None)
    api_keys.revoke(revoked_id.id)
    return {**made, "revoked": revoked.get_secret_value()}


def test_one_batch_of_several_owners_answers_each_request_on_its_own(
    router: Router, keys: dict[str, str]
) -> None:
    loop = asyncio.new_event_loop()
    try:
        items = [
            _item(loop, keys["alice"], imagine(prompt="alice 1"), router),
            _item(loop, keys["bob"], imagine(prompt="bob 1"), router),
            _item(loop, keys["revoked"], imagine(), router),
            _item(loop, "byoa_nonsense", imagine(), router),
            _item(loop, keys["alice"], b"{not json", router),
            _item(loop, keys["bob"], {**imagine(), "task_type": "video"}, router),
            _item(loop, keys["alice"], imagine(prompt="alice 2"), router),
        ]
        Batcher(router, ApiKeys(router.redis, router.scripts)).batch(items)
    finally:
        loop.close()
    answers = [json.loads(i.result.body) if i.error is None else i.error for i in items]
    owners = ["alice", "bob", None, None, None, None, "alice"]
    for answer, owner in zip(answers, owners, strict=True):
        if owner is None:
            assert isinstance(answer, ApiError)
            continue
        task = router.tasks.get(answer["data"]["task_id"], owner)
        assert task is not None and task.owner == owner
        assert answer["data"]["status"] == "pending"  # placed, not started (no worker)
        assert task.account_id == ("a-pro" if owner == "alice" else "b-pro")
    refusals = [(a.status, a.code) for a in answers if isinstance(a, ApiError)]
    assert refusals == [
        (401, "unauthorized"),
        (401, "unauthorized"),
        (400, "invalid_json"),
        (400, "unknown_task_type"),
    ]
    assert len({a["data"]["task_id"] for a in answers if isinstance(a, dict)}) == 3


def test_a_task_id_of_another_owner_is_refused_409_in_a_batch_that_routes_the_rest(
    router: Router, keys: dict[str, str]
) -> None:
    """The midjourney-proxy modal confirms under a given id: the clash is per request."""
    from router.api import mjapi
    from router.requests import check_message

    bobs = {"owner": "bob", "task_type": "imagine", "input": {"prompt": "x"}}
    taken = router.submit_many([check_message(bobs, router.settings)])[0][0].task_id
    loop = asyncio.new_event_loop()
    try:

        def clash(key: ApiKey) -> Any:
            message = {"owner": key.owner, "task_type": "imagine", "input": {"prompt": "y"}}
            return mjapi.submit(router, message, taken)

        items = [
            Item(keys["alice"], _check, clash, loop, loop.create_future()),
            _item(loop, keys["alice"], imagine(prompt="fine"), router),
        ]
        Batcher(router, ApiKeys(router.redis, router.scripts)).batch(items)
    finally:
        loop.close()
    assert isinstance(items[0].error, ApiError) and items[0].error.status == 409
    assert items[1].error is None
    assert json.loads(items[1].result.body)["data"]["status"] == "pending"
    task = router.tasks.get(taken, "bob")
    assert task is not None and task.prompt.startswith("x")  # bob's task untouched


def test_concurrent_requests_of_two_owners_each_get_their_own_task(
    api: str, router: Router, keys: dict[str, str], http: httpx.Client
) -> None:
    async def send(n: int) -> list[tuple[str, dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:

            async def one(i: int) -> tuple[str, dict[str, Any]]:
                owner = ("alice", "bob")[i % 2]
                body = imagine(prompt=f"{owner} {i}")
                r = await client.post(TASKS, json=body, headers={"x-api-key": keys[owner]})
                assert r.status_code == 200, r.text
                return owner, r.json()["data"]

            return await asyncio.gather(*(one(i) for i in range(n)))

    answers = asyncio.run(send(80))
    assert len({d["task_id"] for _, d in answers}) == 80
    for owner, data in answers:
        task = router.tasks.get(data["task_id"], owner)
        assert task is not None and task.prompt.startswith(f"{owner} ")
        other = "bob" if owner == "alice" else "alice"
        assert router.tasks.get(data["task_id"], other) is None
    assert metric(http, "byoa_api_batch_requests_sum") >= 80


def test_a_redis_outage_answers_503_and_the_process_keeps_answering(router: Router) -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0", key_prefix=router.settings.key_prefix,
        api_timeout_seconds=2,
    )  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(2):
            key = "byoa_" + "0" * 12 + "_" + "x" * 32  # well formed: it is looked up
            r = client.post(TASKS, json=imagine(), headers={"x-api-key": key})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "unavailable"
        assert client.get("/healthz").status_code == 200


def test_a_key_whose_rate_limit_fails_refuses_only_its_own_request(
    router: Router, keys: dict[str, str]
) -> None:
    api_keys = ApiKeys(router.redis, router.scripts)
    record, broken = api_keys.create("bob", "broken", 1.0)
    router.redis.hset(router.keys.api_key(record.id), "rate", "1e-15")  # PEXPIRE refuses it
    loop = asyncio.new_event_loop()
    try:
        items = [
            _item(loop, broken.get_secret_value(), imagine(), router),
            _item(loop, keys["alice"], imagine(prompt="fine"), router),
        ]
        Batcher(router, api_keys).batch(items)
    finally:
        loop.close()
    assert items[0].error is not None and not isinstance(items[0].error, ApiError)
    assert items[1].error is None and json.loads(items[1].result.body)["code"] == 200
    with pytest.raises(ByoaError, match="rate must be"):
        api_keys.create("bob", "tiny", 1e-15)


def test_a_redis_outage_in_one_requests_work_ends_the_batch_at_once(
    router: Router, keys: dict[str, str]
) -> None:
    """Its other requests answer 503 now, not each after its own timeout."""
    ran: list[int] = []

    def work(n: int) -> Callable[[ApiKey], Any]:
        def run(key: ApiKey) -> Any:
            ran.append(n)
            raise RedisConnectionError("down")

        return run

    loop = asyncio.new_event_loop()
    try:
        items = [Item(keys["alice"], _check, work(n), loop, loop.create_future()) for n in (1, 2)]
        with pytest.raises(RedisConnectionError):
            Batcher(router, ApiKeys(router.redis, router.scripts)).batch(items)
    finally:
        loop.close()
    assert ran == [1]


def test_an_owner_whose_submit_fails_gets_errors_never_a_task_that_will_not_run(
    router: Router, keys: dict[str, str]
) -> None:
    """SUBMIT failing half way may leave a task record: it is not retried into a 200."""
    router.redis.set(router.keys.stats("bob"), "corrupt")  # a wrong type
    loop = asyncio.new_event_loop()
    try:
        items = [
            _item(loop, keys[owner], imagine(prompt=f"{owner} {n}"), router)
            for n in range(5)
            for owner in ("alice", "bob")
        ]
        Batcher(router, ApiKeys(router.redis, router.scripts)).batch(items)
    finally:
        loop.close()
    for item in items:
        if item.presented == keys["bob"]:
            assert item.error is not None and item.result is None
        else:
            assert item.error is None
            task_id = json.loads(item.result.body)["data"]["task_id"]
            task = router.tasks.get(task_id, "alice")
            assert task is not None  # placed, or in alice's line for her one account
