"""The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header) on both APIs of
`byoa api`, over real HTTP on the test's Redis: a retry with the key returns the first
attempt's task and never runs a second, even when the first attempt answered 503 after its
SUBMIT ran (its reply withheld by a relay until the API's Redis timeout); the key on
another body or route is 422; keys are per owner; simultaneous attempts make one task; a
malformed key is 400 naming the header."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from pydantic import SecretStr

from router.api.app import connect, create_app
from router.api.envelope import HOOK_FORMAT
from router.apikeys import ApiKeys
from router.client import Client
from router.core import Router
from router.scripts import text, text_hash
from tests.conftest import TEST_REDIS_URL, served, wait_for
from tests.test_mjapi import accepted, go_body
from tests.test_recovery import expire_lease, running_reaper

TASKS = "/api/v1/task"
IMAGINE = "/mj/submit/imagine"
HEADER = "Idempotency-Key"
SUBMIT_ROUTES = [
    TASKS,
    IMAGINE,
    "/mj/submit/action",
    "/mj/submit/modal",
    "/mj/submit/change",
    "/mj/submit/simple-change",
    "/mj/submit/describe",
    "/mj/submit/blend",
    "/mj/submit/shorten",
    "/mj/submit/video",
]
IMAGE = "https://example.com/a.png"


@pytest.fixture
def keys(router: Router, add_account: Callable[..., None]) -> dict[str, str]:
    """API keys of alice and bob, who have a Pro account each."""
    add_account("a-pro", "alice", "pro")
    add_account("b-pro", "bob", "pro")
    api_keys = ApiKeys(router.redis, router.scripts)
    return {o: api_keys.create(o, "test")[1].get_secret_value() for o in ("alice", "bob")}


def imagine(prompt: str = "a cat", **input: Any) -> dict[str, Any]:
    return {"model": "midjourney", "task_type": "imagine", "input": {"prompt": prompt, **input}}


def create(
    http: httpx.Client, api_key: str, body: Any, key: str | bytes | None = None
) -> httpx.Response:
    """POST a task API submission, with `key` as its Idempotency-Key."""
    headers: dict[str, str | bytes] = {"x-api-key": api_key}
    if key is not None:
        headers[HEADER] = key
    return http.post(TASKS, json=body, headers=headers)


def mj(http: httpx.Client, path: str, api_key: str, key: str | None, **body: Any) -> dict[str, Any]:
    """POST a midjourney-proxy submission as new-api relays it, with an Idempotency-Key;
    the answer's body, its HTTP status under `status`."""
    headers = {"Content-Type": "application/json", "mj-api-secret": api_key}
    if key is not None:
        headers[HEADER] = key
    answer = http.post(path, content=go_body(body), headers=headers)
    return {**answer.json(), "status": answer.status_code}


def task_id(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["task_id"])


def task_ids(router: Router, owner: str) -> set[str]:
    """The ids of every task record the owner has."""
    pattern = router.keys.task(owner, "*")
    return {text(k).rsplit(":", 1)[1] for k in router.redis.scan_iter(match=pattern, count=1000)}


def ran(router: Router, owner: str) -> tuple[int, int]:
    """(tasks submitted, tasks ended) by the owner's counters."""
    stats = text_hash(router.redis.hgetall(router.keys.stats(owner)))
    ended = sum(int(v) for k, v in stats.items() if k.startswith("finished:"))
    return int(stats.get("submitted", 0)), ended


def test_a_retry_with_the_same_key_returns_the_first_task_and_runs_it_once(
    http: httpx.Client, router: Router, keys: dict[str, str], drain: Callable[[], None]
) -> None:
    alice = keys["alice"]
    body = imagine(process_mode="fast")
    first = create(http, alice, body, "8e03978e-40d5-43e8-bc93-6894a57f9324")
    made = task_id(first)
    again = create(http, alice, body, "8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert task_id(again) == made
    assert again.json() == first.json()  # the same answer: the task, still pending
    assert task_ids(router, "alice") == {made}
    drain()
    later = create(http, alice, body, "8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert task_id(later) == made and later.json()["data"]["status"] == "completed"
    drain()
    assert task_ids(router, "alice") == {made}
    assert ran(router, "alice") == (1, 1)  # one job ran, one job's fast time spent
    # Without the header every submission is a task of its own, as before.
    assert task_id(create(http, alice, body)) != task_id(create(http, alice, body))


def test_the_same_key_on_another_body_or_route_is_422_and_makes_no_task(
    http: httpx.Client, router: Router, keys: dict[str, str]
) -> None:
    alice = keys["alice"]
    made = task_id(create(http, alice, imagine("a cat", aspect_ratio="16:9"), "k1"))
    other = create(http, alice, imagine("a dog", aspect_ratio="16:9"), "k1")
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and HEADER in error["message"]
    assert other.json()["data"] is None
    # The same JSON, its keys in another order and spaced otherwise, is the same request.
    reordered = {"input": {"aspect_ratio": "16:9", "prompt": "a cat"}, "task_type": "imagine"}
    raw = json.dumps({**reordered, "model": "midjourney"}, indent=3).encode()
    headers = {"x-api-key": alice, HEADER: "k1", "Content-Type": "application/json"}
    assert task_id(http.post(TASKS, content=raw, headers=headers)) == made
    # The other API, or a mode prefix, is another route: the key names another request.
    for path in (IMAGINE, "/mj-fast" + IMAGINE):
        refused = mj(http, path, alice, "k1", prompt="a cat")
        assert (refused["status"], refused["code"], refused["result"]) == (422, 4, None)
        assert refused["properties"]["errorCode"] == "idempotency_key_reused"
    assert task_ids(router, "alice") == {made}
    # A refused request leaves the first task's webhook as it was: still this API's body.
    hook = {"webhook_config": {"endpoint": "https://example.com/hook", "secret": "s3"}}
    hooked = task_id(create(http, alice, {**imagine("a fox"), "config": hook}, "k2"))
    refused = mj(http, IMAGINE, alice, "k2", prompt="a fox", notifyHook="https://example.com/h")
    assert refused["status"] == 422
    stored = router.redis.get(router.keys.hook_format("alice", hooked))
    assert stored is not None and text(stored) == HOOK_FORMAT


def test_a_key_is_per_owner(http: httpx.Client, router: Router, keys: dict[str, str]) -> None:
    alice, bob = keys["alice"], keys["bob"]
    hers = task_id(create(http, alice, imagine(), "shared"))
    his = task_id(create(http, bob, imagine(), "shared"))
    assert his != hers
    assert task_id(create(http, alice, imagine(), "shared")) == hers
    assert task_id(create(http, bob, imagine("another"), "other")) not in (hers, his)
    assert http.get(f"{TASKS}/{hers}", headers={"x-api-key": bob}).status_code == 404
    assert task_ids(router, "alice") == {hers} and len(task_ids(router, "bob")) == 2


def test_another_owner_cannot_take_a_keys_task_id_by_guessing_the_key(
    http: httpx.Client, router: Router, keys: dict[str, str], client: Client
) -> None:
    """Task ids are global and the intake list (or the Python client) lets a message name
    its own: the id an Idempotency-Key gives must not be computable from owner and key."""
    guessable = hashlib.sha256(b"alice\0order-1").hexdigest()[:32]
    squatted = client.submit("bob", "squat", id=guessable)
    assert squatted.owner == "bob"
    answer = create(http, keys["alice"], imagine(), "order-1")
    assert answer.status_code == 200, answer.text  # not 409 duplicate_id
    assert task_id(answer) != guessable


def test_a_malformed_key_is_400_naming_the_header_after_the_api_key_check(
    http: httpx.Client, router: Router, keys: dict[str, str]
) -> None:
    alice = keys["alice"]
    bad: list[str | bytes] = [
        "",
        '""',
        "x" * 256,
        '"' + "x" * 256 + '"',
        "caf\u00e9".encode(),
        "two words",
        "tab\there",
        '"unterminated',
        '"bad \\escape"',
        '"a";param=1',
    ]
    for key in bad:
        answer = create(http, alice, imagine(), key)
        assert answer.status_code == 400, key
        error = answer.json()["error"]
        assert error["code"] == "invalid_idempotency_key" and HEADER in error["message"], key
        if isinstance(key, str):
            refused = mj(http, IMAGINE, alice, key, prompt="a")
            assert (refused["status"], refused["code"]) == (400, 4), key
            assert refused["properties"]["errorCode"] == "invalid_idempotency_key"
    twice = http.post(
        TASKS, json=imagine(), headers=[("x-api-key", alice), (HEADER, "a"), (HEADER, "b")]
    )
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "invalid_idempotency_key"
    unknown = create(http, "byoa_000000000000_" + "x" * 43, imagine(), "x" * 256)
    assert unknown.status_code == 401  # the API key is checked first, as for a refused body
    assert task_ids(router, "alice") == set()
    # The draft's form is a quoted string; its bare form is the same key.
    longest = task_id(create(http, alice, imagine(), "k" * 255))
    quoted = task_id(create(http, alice, imagine(), '"a \\"quoted\\" key"'))
    bare = task_id(create(http, alice, imagine(), "uuid-1"))
    assert task_id(create(http, alice, imagine(), '"uuid-1"')) == bare
    assert task_ids(router, "alice") == {longest, quoted, bare}


@pytest.fixture
def replica(router: Router) -> Iterator[str]:
    """A second `byoa api` on the test's Redis (its own batcher); its base URL."""
    with served(create_app(router.settings, router.redis)) as base:
        yield base


def test_simultaneous_requests_with_one_key_make_one_task(
    api: str, replica: str, router: Router, keys: dict[str, str]
) -> None:
    alice = keys["alice"]
    bases = [api, replica]  # two API replicas, each batching its own requests

    def race(bodies: list[dict[str, Any]], key: str) -> list[httpx.Response]:
        """Every body POSTed at once, each by a thread and connection of its own, to the
        two replicas in turn."""
        start = threading.Barrier(len(bodies))
        answers: list[httpx.Response | None] = [None] * len(bodies)

        def send(i: int) -> None:
            with httpx.Client(base_url=bases[i % 2], timeout=30) as http:
                http.get("/healthz")  # connected before the start
                start.wait()
                answers[i] = create(http, alice, bodies[i], key)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(a is not None for a in answers)
        return [a for a in answers if a is not None]

    same = race([imagine()] * 24, "one")
    assert {task_id(a) for a in same} == task_ids(router, "alice")
    assert len(task_ids(router, "alice")) == 1
    (made,) = task_ids(router, "alice")
    several = race([imagine(f"cat {i}") for i in range(12)], "two")
    codes = sorted(a.status_code for a in several)
    assert codes == [200] + [422] * 11, codes
    won = next(task_id(a) for a in several if a.status_code == 200)
    assert task_ids(router, "alice") == {made, won}
    assert ran(router, "alice")[0] == 2


def test_every_midjourney_proxy_submit_route_honours_the_key(
    http: httpx.Client, router: Router, keys: dict[str, str], drain: Callable[[], None]
) -> None:
    alice = keys["alice"]

    def twice(path: str, key: str, **body: Any) -> dict[str, Any]:
        """Submitted, then retried with the same key: the same answer both times."""
        first = mj(http, path, alice, key, **body)
        assert mj(http, path, alice, key, **body) == first
        return first

    grid = accepted(twice(IMAGINE, "i", prompt="a boat --v 7"))
    changed = mj(http, IMAGINE, alice, "i", prompt="a ship")
    assert (changed["status"], changed["code"]) == (422, 4)
    jobs = {
        accepted(twice("/mj/submit/describe", "d", link=IMAGE)),
        accepted(twice("/mj/submit/blend", "b", base64Array=[IMAGE, IMAGE])),
        accepted(twice("/mj/submit/shorten", "h", prompt="a long prompt")),
        accepted(twice("/mj-fast/mj/submit/video", "v", prompt="a wave", image=IMAGE)),
    }
    reused = mj(http, "/mj/submit/describe", alice, "d", link=IMAGE + "?2")
    assert (reused["status"], reused["properties"]["errorCode"]) == (422, "idempotency_key_reused")
    drain()
    (video,) = [t for t in jobs if getattr(router.tasks.get(t), "task_type", "") == "video"]
    extended = accepted(
        twice("/mj/submit/video", "e", action="extend", taskId=video, index=0, prompt="on")
    )
    u1 = f"MJ::JOB::upsample::1::{grid}"
    upscaled = accepted(twice("/mj/submit/action", "a", customId=u1, taskId=grid))
    ids = {
        accepted(twice("/mj/submit/change", "c", action="UPSCALE", index=2, taskId=grid)),
        accepted(twice("/mj/submit/simple-change", "s", content=f"{grid} V3")),
    }
    drain()
    fetched = http.get(f"/mj/task/{upscaled}/fetch", headers={"mj-api-secret": alice}).json()
    zoom = next(b["customId"] for b in fetched["buttons"] if "CustomZoom" in b["customId"])
    held = twice("/mj/submit/action", "z", customId=zoom, taskId=upscaled)
    assert (held["code"], held["properties"]["status"]) == (21, "MODAL")
    modal = accepted(held)
    body = {"taskId": modal, "maskBase64": "", "prompt": "a boat --zoom 1.8"}
    confirmed = twice("/mj/submit/modal", "m", **body)
    assert accepted(confirmed) == modal and confirmed["code"] == 1
    other = mj(http, "/mj/submit/modal", alice, "m", **{**body, "prompt": "a boat --zoom 2"})
    assert (other["status"], other["properties"]["errorCode"]) == (422, "idempotency_key_reused")
    assert task_ids(router, "alice") == {grid, upscaled, modal, *ids, *jobs, extended}
    drain()
    assert ran(router, "alice") == (10, 10)


def test_the_openapi_document_declares_the_header_on_every_submit_route(
    http: httpx.Client,
) -> None:
    doc = http.get("/openapi.json").json()
    assert HEADER in doc["info"]["description"]
    for path in SUBMIT_ROUTES:
        operation = doc["paths"][path]["post"]
        (parameter,) = [p for p in operation.get("parameters", []) if p["name"] == HEADER]
        assert parameter["in"] == "header" and parameter["required"] is False, path
        assert parameter["schema"]["maxLength"] == 255
        assert "422" in operation["responses"], path


class StallingRelay:
    """A TCP relay to the test's Redis. While `stalled` is set, a connection that sends
    `marker` has its commands still forwarded but every reply from then on dropped: Redis
    runs the command, its caller hears nothing and times out, as when Redis answers after
    the caller's timeout."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream = upstream
        self.marker = marker
        self.stalled = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for s in [self.listener, *self.sockets]:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            mute = threading.Event()
            threading.Thread(
                target=self._commands, args=(client, server, mute), daemon=True
            ).start()
            threading.Thread(target=self._replies, args=(server, client, mute), daemon=True).start()

    def _commands(self, src: socket.socket, dst: socket.socket, mute: threading.Event) -> None:
        tail = b""
        for chunk in _chunks(src):
            seen = tail + chunk
            if self.stalled.is_set() and self.marker in seen:
                mute.set()  # before the command goes on: its reply cannot come first
            tail = seen[-len(self.marker) :]
            if not _send(dst, chunk):
                break
        _shut(dst)

    def _replies(self, src: socket.socket, dst: socket.socket, mute: threading.Event) -> None:
        for chunk in _chunks(src):
            if not mute.is_set() and not _send(dst, chunk):
                break
        _shut(dst)


def _chunks(s: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


def _send(s: socket.socket, data: bytes) -> bool:
    try:
        s.sendall(data)
    except OSError:
        return False
    return True


def _shut(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(router: Router) -> Iterator[StallingRelay]:
    """A relay to the test's Redis that can withhold the replies to SUBMIT."""
    url = urlsplit(TEST_REDIS_URL)
    if url.scheme != "redis" or url.hostname is None:
        pytest.skip("the relay reads plain TCP")
    router.scripts.load_all()
    marker = b"EVALSHA\r\n$40\r\n" + router.scripts.submit.sha.encode()
    stalling = StallingRelay((url.hostname, url.port or 6379), marker)
    yield stalling
    stalling.close()


def test_a_retry_after_a_503_returns_the_task_the_timed_out_attempt_made(
    router: Router, keys: dict[str, str], relay: StallingRelay, drain: Callable[[], None]
) -> None:
    url = urlsplit(TEST_REDIS_URL)
    netloc = url.netloc.rsplit("@", 1)
    netloc[-1] = f"127.0.0.1:{relay.port}"
    through = urlunsplit(url._replace(netloc="@".join(netloc)))
    settings = router.settings.model_copy(
        update={"redis_url": SecretStr(through), "api_timeout_seconds": 0.2}
    )
    app = create_app(settings, connect(settings))
    body, key = imagine(process_mode="fast"), "retry-me"
    with served(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        relay.stalled.set()
        first = create(http, keys["alice"], body, key)
        assert first.status_code == 503, first.text
        assert first.json()["error"]["code"] == "unavailable"
        relay.stalled.clear()
        # The SUBMIT ran all the same: the task exists, and will run.
        made = wait_for(lambda: task_ids(router, "alice"), 10, "the task SUBMIT made")
        assert len(made) == 1
        again = create(http, keys["alice"], body, key)
        assert {task_id(again)} == made == task_ids(router, "alice")
    # SUBMIT placed it, but nobody heard to hand it to rq: its dispatch lease runs out and
    # the reaper dispatches it, as after a router that died there.
    (placed,) = made
    expire_lease(router, "alice", placed)
    assert running_reaper(router).reap_leases() == 1
    drain()
    assert ran(router, "alice") == (1, 1)
    done = router.tasks.get(placed, "alice")
    assert done is not None and done.status == "completed"
