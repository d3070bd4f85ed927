"""The midjourney-proxy API of `byoa api`, served by real uvicorn on the test's Redis and
driven with the requests new-api's midjourney relay sends (QuantumNous/new-api, read at
Calcium-Ion/new-api ef8ae4db): its paths, its `mj-api-secret` header and its bodies, and
answers checked to decode as its Go structs decode them (`dto/midjourney.go:29-101`).
Tasks run to their end through real rq jobs on the simulated pool (the drain fixture)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from router.apikeys import ApiKeys
from router.core import Router
from router.settings import Settings
from tests.conftest import allow_loopback_webhooks, wait_for
from tests.servers import Endpoint, Hit

IMAGINE = "/mj/submit/imagine"
CONDITION = "/mj/task/list-by-condition"

GO_STRING = (str, type(None))
GO_INT = (int, type(None))
SUBMIT_FIELDS: dict[str, tuple[type, ...]] = {
    "code": GO_INT,
    "description": GO_STRING,
    "result": GO_STRING,
}
"""`dto.MidjourneyResponse` (`dto/midjourney.go:29-34`): Go's json leaves a field at its zero
value for null, and fails the whole answer for a value of another type."""
TASK_FIELDS: dict[str, tuple[type, ...]] = {
    "id": GO_STRING,
    "action": GO_STRING,
    "customId": GO_STRING,
    "botType": GO_STRING,
    "prompt": GO_STRING,
    "promptEn": GO_STRING,
    "description": GO_STRING,
    "state": GO_STRING,
    "submitTime": GO_INT,
    "startTime": GO_INT,
    "finishTime": GO_INT,
    "imageUrl": GO_STRING,
    "videoUrl": GO_STRING,
    "status": GO_STRING,
    "progress": GO_STRING,
    "failReason": GO_STRING,
    "maskBase64": GO_STRING,
    "properties": (dict, type(None)),
}
"""`dto.MidjourneyDto` (`dto/midjourney.go:47-66`), which new-api's poller decodes a
list-by-condition answer into (`controller/midjourney.go:109-114`); `videoUrl` and
`videoUrls` (`[{url}]`) as QuantumNous/new-api 08b94b7 has them (`dto/midjourney.go:60-61,
70-72`)."""


def go_decodes(value: Any, fields: dict[str, tuple[type, ...]]) -> None:
    """Assert new-api's Go structs would decode `value` (an object of those fields)."""
    assert isinstance(value, dict), value
    for name, types in fields.items():
        got = value.get(name)
        assert isinstance(got, types) and not isinstance(got, bool), (name, got)
    properties = value.get("properties")
    if fields is TASK_FIELDS and isinstance(properties, dict):
        for name in ("finalPrompt", "finalZhPrompt"):  # dto.Properties, :98-101
            assert isinstance(properties.get(name), GO_STRING), (name, properties)
    if fields is TASK_FIELDS:
        videos = value.get("videoUrls")
        assert videos is None or isinstance(videos, list), videos
        for video in videos or []:  # []struct{Url string `json:"url"`}
            assert isinstance(video, dict) and isinstance(video.get("url"), str), videos


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Webhooks to these tests' receivers (on this host) allowed."""
    return allow_loopback_webhooks(settings)


@pytest.fixture
def new_key(router: Router) -> Callable[[str], str]:
    keys = ApiKeys(router.redis, router.scripts)
    return lambda owner: keys.create(owner, "test")[1].get_secret_value()


@pytest.fixture
def alice(new_key: Callable[[str], str], add_account: Callable[..., None]) -> dict[str, str]:
    """The headers new-api's relay sends with a channel key of alice (one Pro account):
    the client's Content-Type and Accept, the key as `mj-api-secret`
    (`service/midjourney.go:200-206`)."""
    add_account("a-pro", "alice", "pro")
    return {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "mj-api-secret": new_key("alice"),
    }


def go_body(data: dict[str, Any]) -> bytes:
    """A body as new-api re-encodes the client's (`service/midjourney.go:164-193`: a Go map,
    so keys sorted, compact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def submit(http: httpx.Client, path: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """POST a submission as new-api relays it; the answer, checked to decode."""
    answer = http.post(path, content=go_body(body), headers=headers)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    go_decodes(data, SUBMIT_FIELDS)
    assert isinstance(data["properties"], dict)
    return dict(data)


def accepted(data: dict[str, Any]) -> str:
    """The task id of an accepted submission: new-api counts codes 1, 21 and 22 as
    accepted and records `result` as the task id (`relay/relay-mj.go:529-562`)."""
    assert data["code"] in (1, 21, 22), data
    assert data["result"], data
    return str(data["result"])


def poll(http: httpx.Client, headers: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    """new-api's poller: POST `{ids}` with `mj-api-secret` (`controller/midjourney.go:78-94`),
    200 expected (:100-103), a list of MidjourneyDto (:109-114)."""
    poller = {"Content-Type": "application/json", "mj-api-secret": headers["mj-api-secret"]}
    answer = http.post(CONDITION, content=go_body({"ids": ids}), headers=poller)
    assert answer.status_code == 200, answer.text
    items = answer.json()
    assert isinstance(items, list)
    for item in items:
        go_decodes(item, TASK_FIELDS)
    return list(items)


def new_api_action(custom_id: str) -> tuple[str, int]:
    """What new-api reads from a customId (`service/midjourney.go:71-127`): the action
    (UPSCALE, VARIATION, PAN...) and index. It refuses, code 4 `unknown_action`, the video
    buttons trueai runs (Animate, a clip's upscale and extend: 08b94b7 :76-132), and no
    other button we offer."""
    splits = custom_id.split("::")
    action = splits[2] if splits[1] == "JOB" else splits[1]
    if action.startswith("animate_") or action == "video_virtual_upscale":
        return "UNKNOWN_ACTION", 0
    if "upsample" in action:
        return "UPSCALE", int(splits[3])
    if action == "variation":
        return "VARIATION", int(splits[3])
    named = {"reroll": "REROLL", "Outpaint": "ZOOM", "CustomZoom": "CUSTOM_ZOOM"}
    if action in named:
        return named[action], 1
    if "pan" in action:
        return "PAN", 1
    if action in ("low_variation", "high_variation", "Inpaint"):
        return action.upper(), 1
    raise AssertionError(f"new-api cannot read {custom_id}")


def test_imagine_poll_press_u1_poll_as_new_api_does(
    http: httpx.Client, alice: dict[str, str], drain: Callable[[], None]
) -> None:
    # relay/relay-mj.go:379-383: an imagine needs a prompt; the client's body goes on as is.
    made = submit(http, IMAGINE, alice, base64Array=[], prompt="a red fox --v 6")
    task_id = accepted(made)
    assert made["code"] == 1 and made["properties"]["processMode"] == "relax"
    (queued,) = poll(http, alice, [task_id])
    assert (queued["id"], queued["action"], queued["status"]) == (task_id, "IMAGINE", "NOT_START")
    assert queued["progress"] == "0%" and queued["buttons"] == []
    drain()
    (done,) = poll(http, alice, [task_id])
    assert (done["status"], done["progress"]) == ("SUCCESS", "100%"), done
    assert done["imageUrl"].startswith("https://") and done["failReason"] is None
    assert done["prompt"] == "a red fox --v 6 --relax" == done["properties"]["finalPrompt"]
    assert done["description"] == "/imagine a red fox --v 6 --relax"
    assert done["submitTime"] <= done["startTime"] <= done["finishTime"]
    labels = [b["label"] for b in done["buttons"] if b["label"]]
    assert labels == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    assert {new_api_action(b["customId"]) for b in done["buttons"]} >= {
        ("UPSCALE", 1),
        ("VARIATION", 4),
        ("REROLL", 1),
    }
    u1 = next(b["customId"] for b in done["buttons"] if b["label"] == "U1")
    assert u1 == f"MJ::JOB::upsample::1::{task_id}"
    # A button is pressed with the task's id beside it (trueai SubmitActionDTO.cs:38-45).
    child = accepted(submit(http, "/mj/submit/action", alice, customId=u1, taskId=task_id))
    drain()
    fetched = http.get(f"/mj/task/{child}/fetch", headers=alice)
    assert fetched.status_code == 200
    upscaled = fetched.json()
    go_decodes(upscaled, TASK_FIELDS)
    assert (upscaled["action"], upscaled["status"]) == ("UPSCALE", "SUCCESS"), upscaled
    assert upscaled["description"] == f"/up {task_id} U1"
    assert upscaled["properties"]["parentId"] == task_id
    kinds = {new_api_action(b["customId"])[0] for b in upscaled["buttons"]}
    assert kinds == {
        *("UPSCALE", "LOW_VARIATION", "HIGH_VARIATION", "ZOOM", "CUSTOM_ZOOM", "PAN"),
        *("INPAINT", "REROLL", "UNKNOWN_ACTION"),  # Animate: trueai's, not new-api's
    }
    upscales = [b["label"] for b in upscaled["buttons"] if "upsample_v6_2x" in b["customId"]]
    assert upscales == ["Upscale (Subtle)", "Upscale (Creative)"]  # a --v 6 image's


def test_every_button_change_and_simple_change(
    http: httpx.Client, alice: dict[str, str], drain: Callable[[], None]
) -> None:
    grid = accepted(submit(http, IMAGINE, alice, prompt="a boat --v 7"))
    drain()
    # relay/relay-mj.go:394-401: change needs taskId, action and a non-zero index.
    ids = [
        accepted(submit(http, "/mj/submit/change", alice, action="UPSCALE", index=2, taskId=grid)),
        accepted(submit(http, "/mj/submit/change", alice, action="REROLL", index=1, taskId=grid)),
        # :404-413: simple-change's `content`, "<taskId> V1".
        accepted(submit(http, "/mj/submit/simple-change", alice, content=f"{grid} V3")),
    ]
    drain()
    tasks = {t["id"]: t for t in poll(http, alice, ids)}
    assert [tasks[i]["action"] for i in ids] == ["UPSCALE", "REROLL", "VARIATION"]
    assert all(t["status"] == "SUCCESS" for t in tasks.values()), tasks
    assert tasks[ids[2]]["description"] == f"/up {grid} V3"
    upscaled = tasks[ids[0]]
    pressed = []
    for button in upscaled["buttons"]:
        custom_id = button["customId"]
        made = submit(http, "/mj/submit/action", alice, customId=custom_id, taskId=upscaled["id"])
        if new_api_action(custom_id)[0] in ("CUSTOM_ZOOM", "INPAINT"):
            # trueai answers 21 and waits for the modal (TaskService.cs:1697-1718); new-api
            # keeps the 21 for these two (relay/relay-mj.go:582-585) and sends the modal
            # with the answer's result as taskId (:414-419).
            assert made["code"] == 21 and made["properties"]["status"] == "MODAL"
            modal_id = accepted(made)
            (waiting,) = poll(http, alice, [modal_id])
            assert (waiting["status"], waiting["progress"]) == ("MODAL", "0%"), waiting
            if "Inpaint" in custom_id:
                refused = submit(http, "/mj/submit/modal", alice, taskId=modal_id, prompt="x")
                assert (refused["code"], refused["result"]) == (4, None)
                body = {"maskBase64": "data:image/png;base64,AAAA", "prompt": "a hat"}
            else:
                body = {"maskBase64": "", "prompt": "a boat --zoom 1.8"}
            confirmed = submit(http, "/mj/submit/modal", alice, taskId=modal_id, **body)
            assert accepted(confirmed) == modal_id and confirmed["code"] == 1
            again = submit(http, "/mj/submit/modal", alice, taskId=modal_id, **body)
            assert accepted(again) == modal_id  # a retried modal makes no second task
        pressed.append(accepted(made))
    drain()
    done = poll(http, alice, pressed)
    assert len(done) == len(pressed) == 15
    assert all(t["status"] == "SUCCESS" for t in done), done
    actions = sorted(t["action"] for t in done)
    assert actions == [
        *("INPAINT", *["PAN"] * 4, "REROLL", "UPSCALE_HD", "UPSCALE_HD"),
        *("VARIATION", "VARIATION", "VIDEO", "VIDEO", *["ZOOM"] * 3),
    ]


def test_refusals_keep_the_shape_and_a_stable_code(
    http: httpx.Client, alice: dict[str, str], drain: Callable[[], None]
) -> None:
    pending = accepted(submit(http, IMAGINE, alice, prompt="a cow"))
    not_done = submit(http, "/mj/submit/simple-change", alice, content=f"{pending} U1")
    assert (not_done["code"], not_done["result"]) == (4, None)
    assert not_done["properties"]["errorCode"] == "parent_not_completed"
    refusals: list[tuple[str, dict[str, Any], str | None]] = [
        (IMAGINE, {"prompt": "  "}, "invalid_task"),
        (IMAGINE, {"prompt": "x" * 501}, "prompt_too_long"),
        (IMAGINE, {"prompt": "x", "base64Array": ["data:image/png;base64,AA"]}, "invalid_task"),
        (IMAGINE, {"prompt": "x", "notifyHook": "ftp://x/"}, "invalid_task"),
        ("/mj/submit/action", {"customId": "MJ::JOB::bookmark::1::x::SOLO"}, "invalid_task"),
        ("/mj/submit/change", {"action": "DESCRIBE", "index": 1, "taskId": pending}, None),
        ("/mj/submit/change", {"action": "UPSCALE", "index": 5, "taskId": pending}, None),
        ("/mj/submit/simple-change", {"content": f"{pending} U9"}, None),
    ]
    for path, body, code in refusals:
        made = submit(http, path, alice, **body)
        assert (made["code"], made["result"]) == (4, None), (path, body, made)
        assert made["properties"]["errorCode"] == (code or "invalid_task"), made
    malformed = [
        b"",
        b"{",
        b"[1, 2]",
        b'{"prompt": "a", "prompt": "b"}',
        b'{"prompt": 5}',
        b'{"prompt": "\\ud800"}',
        b'{"prompt": NaN}',
    ]
    for raw in malformed:
        answer = http.post(IMAGINE, content=raw, headers=alice)
        assert answer.status_code == 400, (raw, answer.text)
        body = answer.json()
        assert (body["code"], body["result"]) == (4, None)
        assert body["properties"]["errorCode"] in ("invalid_json", "invalid_task"), body
    too_big = http.post(IMAGINE, content=go_body({"prompt": "x" * 70_000}), headers=alice)
    assert too_big.status_code == 413 and too_big.json()["code"] == 4
    for ids in ({"ids": "x"}, {"ids": [1]}):
        assert http.post(CONDITION, json=ids, headers=alice).status_code == 400
    assert http.post(CONDITION, json={}, headers=alice).json() == []
    assert http.post("/mj/task/list-by-ids", json={"ids": [pending]}, headers=alice).json()
    nowhere = http.get("/mj/nowhere", headers=alice)
    assert nowhere.status_code == 404 and nowhere.json()["properties"]["errorCode"] == "not_found"
    assert nowhere.json()["code"] == 4  # code 3 is for tasks only (relay/relay-mj.go:548-556)
    swap = submit(http, "/mj/submit/swap_face", alice, sourceBase64="a", targetBase64="b")
    assert (swap["code"], swap["properties"]["errorCode"]) == (4, "unsupported")


def test_keys_in_either_header_and_401_in_the_api_shape(
    http: httpx.Client, alice: dict[str, str]
) -> None:
    key = alice["mj-api-secret"]
    bearer = {"Authorization": f"Bearer {key}"}
    assert accepted(submit(http, IMAGINE, bearer, prompt="a cat"))
    for headers in ({}, {"mj-api-secret": key[:-4] + "AAAA"}, {"Authorization": "Bearer x"}):
        for answer in (
            http.post(IMAGINE, json={"prompt": "a cat"}, headers=headers),
            http.get("/mj/task/abc/fetch", headers=headers),
            http.post("/mj-relax/mj/task/list-by-condition", json={"ids": []}, headers=headers),
        ):
            assert answer.status_code == 401, answer.text
            body = answer.json()
            assert (body["code"], body["properties"]["errorCode"]) == (4, "unauthorized")
            assert key not in answer.text
    assert http.post(IMAGINE, json={"prompt": "a"}, headers={"x-api-key": key}).status_code == 401
    doc = http.get("/openapi.json").json()
    assert {"/mj/submit/imagine", "/mj/task/{task_id}/fetch"} <= doc["paths"].keys()
    assert not any(p.startswith("/mj-") for p in doc["paths"])  # the same routes, unlisted
    schemes = doc["components"]["securitySchemes"]
    assert {"ApiKey", "MjApiSecret", "Bearer"} <= schemes.keys()
    assert schemes["MjApiSecret"]["name"] == "mj-api-secret"


def test_another_owners_task_answers_as_an_unknown_one(
    http: httpx.Client,
    alice: dict[str, str],
    new_key: Callable[[str], str],
    add_account: Callable[..., None],
    drain: Callable[[], None],
) -> None:
    add_account("b-pro", "bob", "pro")
    bob = {**alice, "mj-api-secret": new_key("bob")}
    task_id = accepted(submit(http, IMAGINE, alice, prompt="a cat"))
    drain()
    unknown = "0123456789abcdef"
    for tid in (task_id, unknown):
        assert poll(http, bob, [tid]) == []
    for theirs, other in [
        (
            http.get(f"/mj/task/{task_id}/fetch", headers=bob),
            http.get(f"/mj/task/{unknown}/fetch", headers=bob),
        ),
        (
            http.post(f"/mj/task/{task_id}/cancel", headers=bob),
            http.post(f"/mj/task/{unknown}/cancel", headers=bob),
        ),
        (
            http.post(
                "/mj/submit/action",
                content=go_body(
                    {"customId": f"MJ::JOB::upsample::1::{task_id}", "taskId": task_id}
                ),
                headers=bob,
            ),
            http.post(
                "/mj/submit/action",
                content=go_body(
                    {"customId": f"MJ::JOB::upsample::1::{unknown}", "taskId": unknown}
                ),
                headers=bob,
            ),
        ),
        (
            http.post(
                "/mj/submit/simple-change",
                content=go_body({"content": f"{task_id} U1"}),
                headers=bob,
            ),
            http.post(
                "/mj/submit/simple-change",
                content=go_body({"content": f"{unknown} U1"}),
                headers=bob,
            ),
        ),
    ]:
        assert theirs.status_code == other.status_code == 404
        assert theirs.content == other.content
        assert theirs.json()["code"] == 3
    assert http.get("/mj/task/bad%20id/fetch", headers=bob).status_code == 404
    # The owner is the key's; alice's task is untouched.
    (mine,) = poll(http, alice, [task_id, unknown])
    assert mine["status"] == "SUCCESS"


def test_prefixes_set_the_mode_and_cancel_fails_the_task(
    http: httpx.Client, alice: dict[str, str], add_account: Callable[..., None]
) -> None:
    add_account("a-std", "alice", "standard")
    relax = accepted(submit(http, "/mj-relax/mj/submit/imagine", alice, prompt="a hill"))
    turbo = accepted(submit(http, "/mj-turbo/mj/submit/imagine", alice, prompt="a lake"))
    plain = accepted(submit(http, IMAGINE, alice, prompt="a sea --relax"))
    got = {t["id"]: t for t in poll(http, alice, [relax, turbo, plain])}
    assert got[relax]["properties"]["requestedMode"] == "relax"
    assert got[turbo]["properties"]["requestedMode"] == "turbo"
    assert got[plain]["properties"]["requestedMode"] == "relax"
    fetched = http.get(f"/mj-fast/mj/task/{relax}/fetch", headers=alice).json()
    assert fetched["id"] == relax
    cancelled = http.post(f"/mj/task/{relax}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.json()["result"] == relax
    (task,) = poll(http, alice, [relax])
    assert (task["status"], task["failReason"]) == ("FAILURE", "cancelled")


def test_notify_hook_is_posted_this_apis_task_json(
    http: httpx.Client,
    alice: dict[str, str],
    router: Router,
    drain: Callable[[], None],
    endpoint: Endpoint,
) -> None:
    hook = f"{endpoint.url}/mj/notify"
    task_id = accepted(submit(http, IMAGINE, alice, prompt="a fox", notifyHook=hook, state="s1"))
    plain = router.tasks.get(accepted(submit(http, IMAGINE, alice, prompt="a dog")))
    assert plain is not None and plain.webhook_endpoint is None
    drain()

    def sent(event: str) -> list[Hit]:
        return [h for h in endpoint.to("/mj/notify") if h.headers["x-webhook-event"] == event]

    last = wait_for(lambda: sent("completed"), what="the completed webhook")[0]
    # new-api's /mj/notify decodes the body as a task (relay/relay-mj.go:66-95).
    go_decodes(last.body, TASK_FIELDS)
    assert (last.body["id"], last.body["state"], last.body["action"]) == (task_id, "s1", "IMAGINE")
    assert last.body["imageUrl"] and len(last.body["buttons"]) == 9
    assert "owner" not in last.body and last.body["status"] == "SUCCESS"
    # A start not yet told when the task ends is told no more (the end supersedes it).
    for started in sent("running"):
        go_decodes(started.body, TASK_FIELDS)
        assert started.body["id"] == task_id
    assert all(h.path == "/mj/notify" for h in endpoint.hits)
    task = router.tasks.get(task_id)
    assert task is not None and task.webhook_endpoint == hook


def test_random_bodies_never_answer_5xx(http: httpx.Client, alice: dict[str, str]) -> None:
    paths = [
        IMAGINE,
        "/mj/submit/action",
        "/mj/submit/modal",
        "/mj/submit/change",
        "/mj/submit/simple-change",
        CONDITION,
        "/mj-fast/mj/submit/imagine",
        "/mj/submit/describe",
        "/mj/submit/blend",
        "/mj/submit/shorten",
        "/mj-relax/mj/submit/video",
    ]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )
    fields = st.sampled_from(
        [
            "prompt",
            "customId",
            "taskId",
            "action",
            "index",
            "content",
            "ids",
            "notifyHook",
            "state",
            "maskBase64",
            "base64Array",
            "base64",
            "link",
            "image",
            "endImage",
            "motion",
            "loop",
            "videoType",
            "batchSize",
            "dimensions",
        ]
    )
    prefixes = [
        "MJ::JOB::upsample::",
        "MJ::JOB::pan_left::1::",
        "MJ::Outpaint::50::1::",
        "MJ::CustomZoom::",
        "MJ::Inpaint::1::",
        "MJ::JOB::reroll::0::",
        "MJ::JOB::upsample_v7_2x_subtle::1::",
        "MJ::JOB::animate_high_extend::",
        "MJ::JOB::video_virtual_upscale::",
        "MJ::",
    ]
    custom_ids = st.builds(
        lambda p, rest: p + rest, st.sampled_from(prefixes), st.text(max_size=16)
    )
    buttons = st.fixed_dictionaries(
        {"customId": custom_ids},
        optional={"taskId": st.text(max_size=8), "prompt": st.text(max_size=8)},
    )
    bodies = (
        st.binary(max_size=200)
        | st.dictionaries(fields, json_values, max_size=4).map(lambda d: json.dumps(d).encode())
        | buttons.map(lambda d: json.dumps(d).encode())
    )

    @hypothesis_settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(path=st.sampled_from(paths), body=bodies)
    def post(path: str, body: bytes) -> None:
        answer = http.post(path, content=body, headers=alice)
        assert answer.status_code < 500, (path, body, answer.text)
        data = answer.json()
        if isinstance(data, dict):
            go_decodes(data, SUBMIT_FIELDS)
            if data["code"] not in (1, 21, 22):
                assert data["properties"]["errorCode"], data

    post()


def test_a_key_over_its_rate_answers_429_in_the_api_shape(
    http: httpx.Client, router: Router
) -> None:
    key = ApiKeys(router.redis, router.scripts).create("alice", "t", 2)[1].get_secret_value()
    headers = {"mj-api-secret": key}
    codes = [http.get("/mj/task/nope/fetch", headers=headers).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    over = http.post(IMAGINE, json={"prompt": "a cat"}, headers=headers)
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
    body = over.json()
    assert (body["code"], body["result"], body["properties"]["errorCode"]) == (
        23,
        None,
        "rate_limited",
    )
