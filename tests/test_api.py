"""`byoa api`, the unified task API (GoAPI / PiAPI shape), served by real uvicorn on the
test's Redis: keys, owners kept apart, bodies bounded and parsed strictly, tasks run to
their end through real workers, probes, metrics and the OpenAPI document."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.apikeys import ApiKeys
from router.core import Router
from router.settings import Settings
from tests.conftest import allow_loopback_webhooks, wait_for
from tests.servers import Endpoint

TASKS = "/api/v1/task"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Webhooks to these tests' receivers (on this host) allowed."""
    return allow_loopback_webhooks(settings)


@pytest.fixture
def new_key(router: Router) -> Callable[..., str]:
    keys = ApiKeys(router.redis, router.scripts)

    def make(owner: str = "alice", rate: float | None = None) -> str:
        return keys.create(owner, "test", rate)[1].get_secret_value()

    return make


@pytest.fixture
def alice(new_key: Callable[..., str], add_account: Callable[..., None]) -> dict[str, str]:
    """Headers with a key of alice, who has one Pro account."""
    add_account("a-pro", "alice", "pro")
    return {"x-api-key": new_key("alice")}


def imagine(**input: Any) -> dict[str, Any]:
    return {"model": "midjourney", "task_type": "imagine", "input": {"prompt": "a cat", **input}}


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value on the API's /metrics (0 if absent)."""
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return 0.0


def test_probes_openapi_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").text == "ready\n"
    doc = http.get("/openapi.json").json()
    assert {"post"} <= doc["paths"][TASKS].keys()
    assert {"get", "delete"} <= doc["paths"][TASKS + "/{task_id}"].keys()
    body = doc["paths"][TASKS]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TaskRequest"}
    schemas = doc["components"]["schemas"]
    assert {"TaskRequest", "TaskConfig", "WebhookConfig", "Envelope"} <= schemas.keys()
    assert "x-api-key" in json.dumps(doc["components"]["securitySchemes"])
    assert http.get("/docs").status_code == 200
    assert metric(http, "byoa_api_requests_total", route="/openapi.json", code="200") == 1
    assert metric(http, "byoa_api_request_seconds_count", route="/healthz") == 1
    nowhere = http.get("/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"
    assert metric(http, "byoa_api_requests_total", route="unmatched", code="404") == 1


def test_missing_bad_and_revoked_keys_answer_401_counted_never_logged(
    http: httpx.Client,
    router: Router,
    new_key: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = new_key("alice")
    forged = key[:-6] + "AAAAAA"
    revoked = new_key("alice")
    ApiKeys(router.redis, router.scripts).revoke(revoked.split("_")[1])
    cases = {"missing": None, "malformed": "hunter2", "unknown": forged, "revoked": revoked}
    for reason, presented in cases.items():
        headers = {} if presented is None else {"x-api-key": presented}
        for answer in (
            http.post(TASKS, json=imagine(), headers=headers),
            http.get(f"{TASKS}/abc", headers=headers),
        ):
            assert answer.status_code == 401, reason
            assert answer.json()["error"]["code"] == "unauthorized"
            assert presented is None or presented not in answer.text
        assert metric(http, "byoa_api_auth_failures_total", reason=reason) == 2, reason
    assert not any(p and p in caplog.text for p in (key, forged, revoked))
    assert http.get(f"{TASKS}/abc", headers={"x-api-key": key}).status_code == 404


def test_a_key_over_its_rate_answers_429(http: httpx.Client, new_key: Callable[..., str]) -> None:
    headers = {"x-api-key": new_key("alice", rate=2)}
    codes = [http.get(f"{TASKS}/nope", headers=headers).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    over = http.get(f"{TASKS}/nope", headers=headers)
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
    assert int(over.headers["retry-after"]) >= 1
    other = {"x-api-key": new_key("alice")}  # no limit, and a bucket of its own
    assert http.get(f"{TASKS}/nope", headers=other).status_code == 404


def test_imagine_runs_to_completed_through_a_worker(
    http: httpx.Client, alice: dict[str, str], drain: Callable[[], None]
) -> None:
    made = http.post(TASKS, json=imagine(aspect_ratio="16:9", process_mode="fast"), headers=alice)
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["code"], body["message"]) == (200, "success")
    data = body["data"]
    assert (data["model"], data["task_type"], data["status"]) == (
        "midjourney",
        "imagine",
        "pending",
    )
    assert data["meta"]["process_mode"] == "fast" and data["meta"]["account_id"] == "a-pro"
    assert data["input"]["prompt"] == "a cat --ar 16:9 --fast"
    drain()
    done = http.get(f"{TASKS}/{data['task_id']}", headers=alice).json()["data"]
    assert done["status"] == "completed", done
    assert done["output"]["image_url"] and done["output"]["image_urls"]
    assert done["error"]["code"] == 0 and done["meta"]["ended_at"]


def test_children_by_origin_task_id_and_their_checks(
    http: httpx.Client, alice: dict[str, str], drain: Callable[[], None]
) -> None:
    parent = http.post(TASKS, json=imagine(), headers=alice).json()["data"]["task_id"]
    drain()
    children = [
        ("upscale", {"index": "2"}),
        ("variation", {"index": 3}),
        ("variation", {"index": "high_variation"}),
        ("reroll", {}),
    ]
    ids = []
    for task_type, extra in children:
        body = {
            "model": "midjourney",
            "task_type": task_type,
            "input": {"origin_task_id": parent, **extra},
        }
        answer = http.post(TASKS, json=body, headers=alice)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["data"]["task_id"])
    drain()
    for task_id, (task_type, _) in zip(ids, children, strict=True):
        data = http.get(f"{TASKS}/{task_id}", headers=alice).json()["data"]
        assert (data["status"], data["task_type"]) == ("completed", task_type), data
        assert data["input"]["origin_task_id"] == parent
    upscale = http.get(f"{TASKS}/{ids[0]}", headers=alice).json()["data"]
    assert upscale["input"]["index"] == 2
    strong = http.get(f"{TASKS}/{ids[2]}", headers=alice).json()["data"]
    assert strong["input"]["strength"] == "strong"

    refusals = [
        ({"task_type": "video", "input": {"prompt": "x"}}, "unknown_task_type"),  # not PiAPI's
        ({"task_type": "upscale", "input": {"origin_task_id": parent}}, "invalid_task"),
        ({"task_type": "upscale", "input": {"origin_task_id": parent, "index": "light"}}, None),
        ({"task_type": "upscale", "input": {"origin_task_id": parent, "index": "8x"}}, None),
        ({"task_type": "upscale", "input": {"index": 1}}, "invalid_task"),
        ({"task_type": "variation", "input": {"origin_task_id": parent, "index": []}}, None),
        ({"task_type": "variation", "input": {"origin_task_id": parent, "index": {}}}, None),
        ({"task_type": "imagine", "input": {"prompt": "x", "process_mode": "slow"}}, None),
        ({"task_type": "imagine", "input": {"prompt": "x", "aspect_ratio": "wide"}}, None),
        ({"task_type": "imagine", "input": {"prompt": "x" * 501}}, "prompt_too_long"),
        ({"model": "flux", "task_type": "imagine", "input": {"prompt": "x"}}, None),
    ]
    for body, code in refusals:
        answer = http.post(TASKS, json={"model": "midjourney", **body}, headers=alice)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == (code or "invalid_task"), answer.text
        assert answer.json()["data"] is None


def test_another_owners_task_answers_as_an_unknown_one(
    http: httpx.Client,
    alice: dict[str, str],
    new_key: Callable[..., str],
    add_account: Callable[..., None],
    drain: Callable[[], None],
) -> None:
    add_account("b-pro", "bob", "pro")
    bob = {"x-api-key": new_key("bob")}
    task_id = http.post(TASKS, json=imagine(), headers=alice).json()["data"]["task_id"]
    drain()
    for method in ("GET", "DELETE"):
        theirs = http.request(method, f"{TASKS}/{task_id}", headers=bob)
        unknown = http.request(method, f"{TASKS}/0123456789abcdef", headers=bob)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.content == unknown.content
        assert http.request(method, f"{TASKS}/bad%20id", headers=bob).content == unknown.content
    # A child of another owner's task is refused as a child of no task.
    for origin in (task_id, "0123456789abcdef"):
        body = {
            "model": "midjourney",
            "task_type": "upscale",
            "input": {"origin_task_id": origin, "index": 1},
        }
        answer = http.post(TASKS, json=body, headers=bob)
        assert answer.status_code == 404 and answer.json()["code"] == 404
        assert answer.json()["error"]["code"] == "parent_not_found"
        data = answer.json()["data"]
        assert data["status"] == "failed"
        assert data["error"]["detail"] == {"code": "parent_not_found"}
    # The owner is the key's: an `owner` in the body changes nothing.
    sneaky = {**imagine(), "owner": "alice"}
    made = http.post(TASKS, json=sneaky, headers=bob).json()["data"]
    assert made["meta"]["account_id"] == "b-pro"
    assert http.get(f"{TASKS}/{made['task_id']}", headers=alice).status_code == 404
    assert http.get(f"{TASKS}/{task_id}", headers=alice).json()["data"]["status"] == "completed"


def test_delete_cancels_a_pending_task(
    http: httpx.Client, alice: dict[str, str], router: Router
) -> None:
    task_id = http.post(TASKS, json=imagine(), headers=alice).json()["data"]["task_id"]
    answer = http.delete(f"{TASKS}/{task_id}", headers=alice)
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["status"] == "failed" and data["error"]["detail"] == {"code": "cancelled"}
    assert data["meta"]["status"] == "cancelled"
    task = router.tasks.get(task_id)
    assert task is not None and task.status == "cancelled"


def test_webhook_config_becomes_the_task_webhook(
    http: httpx.Client, alice: dict[str, str], router: Router
) -> None:
    hook = {"endpoint": "http://127.0.0.1:9/hook", "secret": "s3cret-value"}
    body = {**imagine(), "config": {"service_mode": "public", "webhook_config": hook}}
    answer = http.post(TASKS, json=body, headers=alice)
    assert answer.status_code == 200 and "s3cret-value" not in answer.text
    task_id = answer.json()["data"]["task_id"]
    task = router.tasks.get(task_id)
    assert task is not None and task.webhook_endpoint == hook["endpoint"]
    assert router.redis.get(router.keys.webhook_secret("alice", task_id)) == b"s3cret-value"
    # PiAPI's examples send empty strings for "no webhook".
    empty = {**imagine(), "config": {"webhook_config": {"endpoint": "", "secret": ""}}}
    task_id = http.post(TASKS, json=empty, headers=alice).json()["data"]["task_id"]
    stored = router.tasks.get(task_id)
    assert stored is not None and stored.webhook_endpoint is None
    bad = {**imagine(), "config": {"webhook_config": {"endpoint": "ftp://x/"}}}
    answer = http.post(TASKS, json=bad, headers=alice)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_task"


def test_webhook_config_is_posted_goapis_body_with_the_secret_header(
    http: httpx.Client,
    alice: dict[str, str],
    router: Router,
    drain: Callable[[], None],
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GoAPI and PiAPI POST `{timestamp, data}`, `data` as their fetch answers it, and the
    secret in `x-webhook-secret` (https://piapi.ai/docs/unified-webhook)."""
    caplog.set_level(logging.DEBUG)
    secret = "whsec-goapi-CANARY-41d9"
    hook = {"endpoint": f"{endpoint.url}/goapi", "secret": secret}
    body = {**imagine(), "config": {"webhook_config": hook}}
    task_id = http.post(TASKS, json=body, headers=alice).json()["data"]["task_id"]
    drain()

    def told(event: str) -> list[Any]:
        return [h for h in endpoint.to("/goapi") if h.headers["x-webhook-event"] == event]

    last = wait_for(lambda: told("completed"), 30, "the completed webhook")[-1]
    assert last.body.keys() == {"timestamp", "data"}
    assert last.headers["x-webhook-secret"] == secret
    fetched = http.get(f"{TASKS}/{task_id}", headers=alice).json()["data"]
    told_meta, fetched_meta = last.body["data"].pop("meta"), fetched.pop("meta")
    assert last.body["data"] == fetched and fetched["status"] == "completed"
    assert fetched["output"]["image_url"]
    # the same meta but for the webhook's own status (delivered once this POST was answered)
    del told_meta["webhook_status"], fetched_meta["webhook_status"]
    assert told_meta == fetched_meta
    task = router.tasks.get(task_id)
    assert task is not None and task.finished_at is not None and task.started_at is not None
    assert last.body["timestamp"] == int(task.finished_at.timestamp())  # same on a retry
    # `running` is POSTed unless the task ended before it went out: a later event replaces
    # one not yet delivered (router/commands/outbox_record.lua), as on a loaded machine
    for started in told("running"):
        assert started.body["timestamp"] == int(task.started_at.timestamp())
        assert started.body["data"]["task_id"] == task_id
    wait_for(lambda: (router.tasks.get(task_id) or task).webhook_status == "delivered")
    assert secret not in caplog.text


def test_oversized_and_malformed_bodies(http: httpx.Client, alice: dict[str, str]) -> None:
    limit = 65536
    big = json.dumps(imagine(pad="x" * limit)).encode()
    answer = http.post(TASKS, content=big, headers=alice)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "message_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "midjourney", "pad": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    answer = http.post(TASKS, content=chunks(), headers=alice)
    assert answer.status_code == 413
    malformed = [
        b"",
        b"{",
        b"\xff\xfe{}",
        b'{"model": "midjourney", "model": "midjourney"}',
        b'{"model": NaN}',
        b"[1, 2]",
        b'"text"',
        b"[" * 60_000,
        b'{"model": "midjourney", "task_type": "imagine", "input": {"prompt": "\\ud800"}}',
        b'{"model": 1, "task_type": "imagine"}',
        b'{"model": "midjourney", "task_type": "imagine", "input": []}',
    ]
    for raw in malformed:
        answer = http.post(TASKS, content=raw, headers=alice)
        assert answer.status_code == 400, (raw[:40], answer.text)
        assert answer.json()["error"]["code"] in ("invalid_json", "invalid_task"), answer.text
    assert http.post(TASKS, content=b"{", headers=alice).json()["error"]["code"] == "invalid_json"
    assert http.put(TASKS, json={}, headers=alice).status_code == 405


def test_model_may_be_left_out_and_then_is_midjourney(
    http: httpx.Client, alice: dict[str, str]
) -> None:
    answer = http.post(
        TASKS, json={"task_type": "imagine", "input": {"prompt": "a cat"}}, headers=alice
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["model"] == "midjourney"
    # Without a model, the body's own problem is the one told.
    unknown = http.post(TASKS, json={"task_type": "video", "input": {}}, headers=alice)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_task_type", unknown.text
    other = http.post(TASKS, json={**imagine(), "model": "flux"}, headers=alice)
    assert other.status_code == 400 and "model" in other.json()["error"]["message"]


def test_an_imagine_with_nothing_to_draw_is_refused_and_makes_no_task(
    http: httpx.Client, alice: dict[str, str], router: Router
) -> None:
    for input_ in (
        {},
        {"prompt": ""},
        {"prompt": " \t\n"},
        {"prompt": "--relax"},
        {"prompt": " \u2014fast  --turbo "},
        {"prompt": "", "aspect_ratio": "16:9", "process_mode": "fast"},
    ):
        body = {"model": "midjourney", "task_type": "imagine", "input": input_}
        answer = http.post(TASKS, json=body, headers=alice)
        assert answer.status_code == 400, (input_, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_task" and "input.prompt" in error["message"]
        assert answer.json()["data"] is None
    assert router.redis.zcard(router.keys.task_index("alice")) == 0
    assert http.post(TASKS, json=imagine(prompt="x --fast"), headers=alice).status_code == 200


def upscale_of(origin: str) -> dict[str, Any]:
    return {
        "model": "midjourney",
        "task_type": "upscale",
        "input": {"origin_task_id": origin, "index": 1},
    }


def test_a_child_of_a_missing_or_unfinished_parent_is_an_error_answer(
    http: httpx.Client, alice: dict[str, str], router: Router
) -> None:
    pending = http.post(TASKS, json=imagine(), headers=alice).json()["data"]["task_id"]
    for origin, status, code in (
        ("0123456789abcdef", 404, "parent_not_found"),
        (pending, 409, "parent_not_completed"),
    ):
        named = {**alice, "Idempotency-Key": f"child-of-{origin}"}
        first = http.post(TASKS, json=upscale_of(origin), headers=named)
        assert first.status_code == status, first.text
        body = first.json()
        assert body["code"] == status and body["error"]["code"] == code
        assert body["message"].startswith(code)
        # the failed task SUBMIT stored for it, as GET answers it
        data = body["data"]
        assert data["status"] == "failed" and data["error"]["detail"] == {"code": code}
        fetched = http.get(f"{TASKS}/{data['task_id']}", headers=alice).json()["data"]
        assert fetched == data
        # a retry with its Idempotency-Key: the same answer, the same task, no second one
        again = http.post(TASKS, json=upscale_of(origin), headers=named)
        assert (again.status_code, again.json()) == (status, body)
    assert router.redis.zcard(router.keys.task_index("alice")) == 3


def started(router: Router, task_id: str) -> None:
    """Start a placed task as a worker would (it runs until settled)."""
    task = router.tasks.get(task_id)
    assert task is not None
    ok_, status, _ = router.tasks.start(task.owner, task.id, task.attempt)
    assert ok_ and status == "running"


def cancel(http: httpx.Client, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    answer = http.delete(f"{TASKS}/{task_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == 200 and task_id in body["message"]
    return body["data"]


def test_delete_answers_what_the_cancel_did(
    http: httpx.Client, alice: dict[str, str], router: Router, drain: Callable[[], None]
) -> None:
    pending, running, stubborn, done = (
        http.post(TASKS, json=imagine(prompt=f"cat {n}"), headers=alice).json()["data"]["task_id"]
        for n in range(4)
    )
    now = cancel(http, alice, pending)
    assert (now["status"], now["meta"]["cancel_outcome"]) == ("failed", "cancelled")
    assert now["error"]["detail"] == {"code": "cancelled"}
    # a retry of that DELETE (its answer lost, say) finds nothing to cancel
    again = cancel(http, alice, pending)
    assert (again["status"], again["meta"]["cancel_outcome"]) == ("failed", "already_finished")

    started(router, running)
    asked = cancel(http, alice, running)
    assert (asked["status"], asked["meta"]["cancel_outcome"]) == ("processing", "requested")
    assert router.tasks.settle("alice", running, 1, "completed")[0] == "cancelled"
    ended = http.get(f"{TASKS}/{running}", headers=alice).json()["data"]
    assert ended["meta"]["status"] == "cancelled"

    started(router, stubborn)  # its worker found that the backend cannot stop its job
    router.redis.hset(router.keys.task("alice", stubborn), "cancel_outcome", "cancel_unsupported")
    runs_on = cancel(http, alice, stubborn)
    assert (runs_on["status"], runs_on["meta"]["cancel_outcome"]) == (
        "processing",
        "cancel_unsupported",
    )
    assert router.tasks.settle("alice", stubborn, 1, "completed")[0] == "cancelled"

    drain()
    finished = cancel(http, alice, done)
    assert (finished["status"], finished["meta"]["cancel_outcome"]) == (
        "completed",
        "already_finished",
    )
    assert http.get(f"{TASKS}/{done}", headers=alice).json()["data"]["status"] == "completed"


def listed(http: httpx.Client, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    answer = http.get(TASKS, params=query, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert (body["code"], body["message"]) == (200, "success")
    return body["data"]


def test_get_lists_the_callers_own_tasks_newest_first_paged_and_filtered(
    http: httpx.Client,
    alice: dict[str, str],
    new_key: Callable[..., str],
    add_account: Callable[..., None],
    drain: Callable[[], None],
) -> None:
    add_account("b-pro", "bob", "pro")
    bob = {"x-api-key": new_key("bob")}
    assert listed(http, alice) == {
        "tasks": [],
        "page": 1,
        "page_size": 50,
        "has_more": False,
        "truncated": False,
    }
    ids = [
        http.post(TASKS, json=imagine(prompt=f"cat {n}"), headers=alice).json()["data"]["task_id"]
        for n in range(5)
    ]
    theirs = http.post(TASKS, json=imagine(), headers=bob).json()["data"]["task_id"]
    drain()
    child = http.post(TASKS, json=upscale_of(ids[0]), headers=alice).json()["data"]["task_id"]
    http.delete(f"{TASKS}/{child}", headers=alice)  # pending: cancelled at once
    newest_first = [child, *reversed(ids)]

    every = listed(http, alice)
    assert [t["task_id"] for t in every["tasks"]] == newest_first
    assert every["tasks"][1] == http.get(f"{TASKS}/{ids[-1]}", headers=alice).json()["data"]
    pages = [listed(http, alice, page=n, page_size=2) for n in (1, 2, 3)]
    assert [[t["task_id"] for t in p["tasks"]] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:6],
    ]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert listed(http, alice, page=4, page_size=2)["tasks"] == []

    def ids_of(**query: Any) -> list[str]:
        return [t["task_id"] for t in listed(http, alice, **query)["tasks"]]

    assert ids_of(status="completed") == list(reversed(ids))
    assert ids_of(status="failed") == ids_of(status="cancelled") == [child]
    assert ids_of(status="pending") == ids_of(status="processing") == []
    assert ids_of(task_type="upscale") == [child]
    assert ids_of(task_type="imagine", status="completed", page_size=1) == [ids[-1]]
    assert [t["task_id"] for t in listed(http, bob)["tasks"]] == [theirs]

    for query in (
        {"page": "0"},
        {"page": "x"},
        {"page_size": "101"},
        {"page_size": "-1"},
        {"status": "done"},
        {"task_type": "teleport"},
    ):
        answer = http.get(TASKS, params=query, headers=alice)
        assert answer.status_code == 400, query
        assert answer.json()["error"]["code"] == "invalid_request", answer.text
    # the key is checked first: a bad one answers 401 whatever the query
    refused = http.get(TASKS, params={"page": "0"}, headers={"x-api-key": "nope"})
    assert refused.status_code == 401

    doc = http.get("/openapi.json").json()
    listing = doc["paths"][TASKS]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "page",
        "page_size",
        "status",
        "task_type",
    }
    assert listing["security"] == [{"ApiKey": []}]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskListEnvelope"
    }


def test_docs_and_redoc_load_every_asset_from_this_server(http: httpx.Client) -> None:
    """Swagger UI and ReDoc work on a network without the internet: each page names only
    this server's files, and each of them is served."""
    for page, needed in (("/docs", ("SwaggerUIBundle", ".css")), ("/redoc", ("<redoc",))):
        html = http.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert all(n in html.text for n in needed), page
        assert "//" not in re.sub(r"<!--.*?-->", "", html.text, flags=re.S), page  # no URL
        # scripts, styles, icon, and the OpenAPI document (Swagger UI's `url`, ReDoc's)
        refs = re.findall(r'(?:src|href|spec-url)="([^"]+)"|url: \'([^\']+)\'', html.text)
        assets = [a or b for a, b in refs]
        assert "/openapi.json" in assets and len(assets) >= 3, (page, assets)
        for ref in assets:
            assert ref.startswith("/"), (page, ref)
            asset = http.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, (page, ref)
    script = http.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert http.get("/docs/assets/nothing.js").status_code == 404
