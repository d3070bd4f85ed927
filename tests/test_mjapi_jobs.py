"""The 2026 job types through the midjourney-proxy API: `/mj/submit/describe`, `blend`,
`shorten` and `video` (and its extend) with the bodies new-api relays (QuantumNous/new-api
08b94b7 re-sends the client's own JSON: trueai's DTO fields), each refusal with the code
trueai-org/midjourney-proxy ed32197 answers, trueai's button ids pressed on
`/mj/submit/action`, and the buttons a finished task offers, per kind and version. Tasks
run to their end on the simulated pool (the drain fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from router.apikeys import ApiKeys
from router.core import Router
from router.tasks import Task
from tests.test_mjapi import (
    TASK_FIELDS,
    accepted,
    go_body,
    go_decodes,
    new_api_action,
    poll,
    submit,
)

Drain = Callable[[], None]
IMAGE = "https://example.com/start.png"
END = "https://example.com/end.png"
B64 = "data:image/png;base64,iVBORw0KGgo="
DESCRIBE = "/mj/submit/describe"
BLEND = "/mj/submit/blend"
SHORTEN = "/mj/submit/shorten"
VIDEO = "/mj/submit/video"
ACTION = "/mj/submit/action"


@pytest.fixture
def new_key(router: Router) -> Callable[[str], str]:
    keys = ApiKeys(router.redis, router.scripts)
    return lambda owner: keys.create(owner, "test")[1].get_secret_value()


@pytest.fixture
def alice(new_key: Callable[[str], str], add_account: Callable[..., None]) -> dict[str, str]:
    """new-api's headers with a key of alice, who has one Pro account (relax video)."""
    add_account("a-pro", "alice", "pro")
    return {"Content-Type": "application/json", "mj-api-secret": new_key("alice")}


def record(router: Router, task_id: str) -> Task:
    task = router.tasks.get(task_id)
    assert task is not None, task_id
    return task


def fetch(http: httpx.Client, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    answer = http.get(f"/mj/task/{task_id}/fetch", headers=headers)
    assert answer.status_code == 200, answer.text
    task = answer.json()
    go_decodes(task, TASK_FIELDS)
    return dict(task)


def press(http: httpx.Client, headers: dict[str, str], parent: str, custom_id: str) -> str:
    """A button of `parent` pressed as new-api relays it (`{taskId, customId}`)."""
    return accepted(submit(http, ACTION, headers, customId=custom_id, taskId=parent))


def refusal(http: httpx.Client, path: str, headers: dict[str, str], **body: Any) -> Any:
    """A refused submission: its HTTP status, trueai's code and our stable code."""
    answer = http.post(path, content=go_body(body), headers=headers)
    data = answer.json()
    assert data["result"] is None, data
    return answer.status_code, data["code"], data["properties"]["errorCode"]


def ids(buttons: list[dict[str, Any]]) -> list[str]:
    return [b["customId"] for b in buttons]


def test_describe_blend_shorten_and_video_run_end_to_end_as_new_api_relays_them(
    http: httpx.Client, alice: dict[str, str], router: Router, drain: Drain
) -> None:
    by_link = accepted(submit(http, "/mj-fast/mj/submit/describe", alice, link=IMAGE))
    by_base64 = accepted(submit(http, DESCRIBE, alice, base64=B64, botType="MID_JOURNEY"))
    blend = accepted(submit(http, BLEND, alice, base64Array=[B64, IMAGE], dimensions="PORTRAIT"))
    square = accepted(submit(http, BLEND, alice, base64Array=[IMAGE, IMAGE, IMAGE]))
    short = accepted(submit(http, SHORTEN, alice, prompt="a very long prompt about a fox --fast"))
    body = {"prompt": "a wave", "image": IMAGE, "endImage": END, "motion": "high"}
    clip = accepted(submit(http, "/mj-turbo/mj/submit/video", alice, **body, loop=True))
    hd = accepted(
        submit(
            http,
            VIDEO,
            alice,
            prompt="a wave --fast",
            image=B64,
            batchSize=2,
            videoType="vid_1.1_i2v_720",
        )
    )
    # Our records keep them in our names (router.job_inputs).
    assert record(router, by_link).input["image"] == IMAGE
    assert record(router, by_base64).input["base64"] == B64
    assert record(router, blend).input["images"] == [B64, IMAGE]
    assert record(router, blend).input["dimensions"] == "PORTRAIT"
    assert record(router, square).input["dimensions"] == "SQUARE"  # trueai's default
    video = record(router, clip)
    assert (video.task_type, video.requested_mode) == ("video", "turbo")
    assert {k: video.input[k] for k in ("image", "end_image", "motion", "loop", "video_type")} == {
        "image": IMAGE,
        "end_image": END,
        "motion": "high",
        "loop": True,
        "video_type": "sd",
    }
    assert video.input["batch_size"] == 4
    assert record(router, hd).input["video_type"] == "hd"
    assert record(router, hd).input["batch_size"] == 2
    assert record(router, by_link).requested_mode == "fast"
    assert record(router, short).requested_mode == "fast"
    drain()
    done = {t["id"]: t for t in poll(http, alice, [by_link, by_base64, blend, short, clip, hd])}
    assert all(t["status"] == "SUCCESS" for t in done.values()), done
    actions = [done[i]["action"] for i in (by_link, blend, short, clip, hd)]
    assert actions == ["DESCRIBE", "BLEND", "SHORTEN", "VIDEO", "VIDEO"]

    described = done[by_link]
    assert described["description"] == "/describe" and described["imageUrl"] == IMAGE
    prompts = record(router, by_link).result["prompts"]
    assert len(prompts) == 4
    assert described["promptEn"] == "\r\n".join(prompts) == described["properties"]["finalPrompt"]
    assert described["buttons"] == []

    shortened = done[short]
    assert shortened["prompt"] == "a very long prompt about a fox --fast"
    joined = "\r\n".join(record(router, short).result["prompts"])
    assert shortened["description"] == joined == shortened["properties"]["finalPrompt"]

    blended = done[blend]
    assert blended["description"] == f"/blend {blend} 2" and blended["imageUrl"]
    assert [b["label"] for b in blended["buttons"] if b["label"]][:4] == ["U1", "U2", "U3", "U4"]

    made = done[clip]
    urls = record(router, clip).result["video_urls"]
    assert len(urls) == 4 and made["videoUrls"] == [{"url": u} for u in urls]
    assert made["videoUrl"] == urls[0] == made["imageUrl"]
    assert made["description"] == "/video a wave --turbo"
    assert len(done[hd]["videoUrls"]) == 2
    assert record(router, hd).result["hd"] is True


def test_each_route_refuses_what_trueai_refuses_with_its_codes(
    http: httpx.Client,
    alice: dict[str, str],
    add_account: Callable[..., None],
    new_key: Callable[[str], str],
) -> None:
    invalid = (200, 4, "invalid_task")
    cases: list[tuple[str, dict[str, Any]]] = [
        # SubmitController.cs:283-312: an image, a link that is one, base64 that parses.
        (DESCRIBE, {}),
        (DESCRIBE, {"base64": " ", "link": ""}),
        (DESCRIBE, {"link": "ftp://example.com/a.png"}),
        (DESCRIBE, {"base64": "data:image/png;base64,%%%"}),
        # :386-414: 2 to 5 images, dimensions, each image.
        (BLEND, {"base64Array": [B64]}),
        (BLEND, {"base64Array": [B64] * 6, "dimensions": "SQUARE"}),
        (BLEND, {"base64Array": [B64, B64], "dimensions": None}),
        (BLEND, {"base64Array": [B64, B64], "dimensions": "WIDE"}),
        (BLEND, {"base64Array": [B64, "not base64!"]}),
        (BLEND, {"base64Array": [B64, ""]}),  # the core: an empty image
        # A shorten needs its prompt here (trueai does not check: Midjourney would refuse).
        (SHORTEN, {"prompt": "  "}),
        # :925-948: a prompt, even for an extend; images that parse.
        (VIDEO, {"image": IMAGE}),
        (VIDEO, {"prompt": "a wave", "image": "??"}),
        (VIDEO, {"prompt": "a wave", "image": IMAGE, "endImage": "data:x;base64,%"}),
        # The core: a start image, motion low|high, batch 1|2|4, sd|hd.
        (VIDEO, {"prompt": "a wave"}),
        (VIDEO, {"prompt": "a wave", "image": IMAGE, "motion": "medium"}),
        (VIDEO, {"prompt": "a wave", "image": IMAGE, "batchSize": 3}),
        (VIDEO, {"prompt": "a wave", "image": IMAGE, "videoType": "vid_1.1_i2v_1080"}),
        # :992-997: a taskId is an extend's, compared exactly.
        (VIDEO, {"prompt": "a wave", "taskId": "t1", "action": "Extend", "index": 0}),
        (VIDEO, {"prompt": "a wave", "taskId": "t1", "index": 0}),
    ]
    for path, body in cases:
        assert refusal(http, path, alice, **body) == invalid, (path, body)
    # TaskService.cs:439-444: an extend without its video is code 3, HTTP 200.
    no_video = refusal(http, VIDEO, alice, prompt="on", action="extend", index=0)
    assert no_video == (200, 3, "parent_not_found")
    # :999-1003: a video that is not the caller's answers as an unknown one, 404.
    unknown = refusal(http, VIDEO, alice, prompt="on", action="extend", taskId="nope", index=0)
    assert unknown == (404, 3, "task_not_found")
    # JSON's own types, as trueai binds them: 400.
    for body in ({"loop": "yes"}, {"batchSize": "2"}, {"index": "1"}, {"base64Array": "a"}):
        answer = http.post(VIDEO if "base64Array" not in body else BLEND, json=body, headers=alice)
        assert answer.status_code == 400 and answer.json()["code"] == 4, (body, answer.text)
    # The plan rules per job type, answered as trueai answers a video no account runs.
    add_account("b-std", "bob", "standard")
    bob = {**alice, "mj-api-secret": new_key("bob")}
    relax = refusal(http, "/mj-relax/mj/submit/video", bob, prompt="a wave", image=IMAGE)
    assert relax == (200, 3, "no_relax_video_account")
    hd_relax = {"prompt": "a wave --relax", "image": IMAGE, "videoType": "vid_1.1_i2v_720"}
    assert refusal(http, VIDEO, alice, **hd_relax) == (200, 4, "hd_video_fast_only")


def test_a_video_extend_on_the_video_route_is_a_child_of_the_clip_it_extends(
    http: httpx.Client, alice: dict[str, str], router: Router, drain: Drain
) -> None:
    made = submit(
        http, VIDEO, alice, prompt="a wave", image=IMAGE, videoType="vid_1.1_i2v_720", batchSize=2
    )
    video = accepted(submit(http, "/mj-fast/mj/submit/video", alice, prompt="a wave", image=IMAGE))
    assert made["properties"]["errorCode"] == "hd_video_fast_only"  # relax by default
    pending = refusal(http, VIDEO, alice, prompt="on", action="extend", taskId=video, index=0)
    assert pending == (200, 4, "parent_not_completed")  # SubmitController.cs:1005-1008
    drain()
    for index in (-1, 4, None):
        body = {"prompt": "on", "action": "extend", "taskId": video, "index": index}
        assert refusal(http, VIDEO, alice, **body) == (200, 4, "invalid_task"), index
    # new-api's body for an extend (spec: `{action, taskId, index 0-3, prompt, motion}`).
    extend = {"action": "extend", "taskId": video, "index": 3, "prompt": "and on", "motion": "low"}
    child = accepted(submit(http, VIDEO, alice, **extend))
    plain = accepted(
        submit(http, VIDEO, alice, action="extend", taskId=video, index=0, prompt="on", motion=None)
    )
    task = record(router, child)
    assert (task.task_type, task.parent_id, task.input["index"]) == ("video_extend", video, 4)
    assert task.input["motion"] == "low" and "video_type" not in task.input  # its video's
    assert record(router, plain).input["motion"] == "high"  # TaskService.cs:805
    drain()
    done = fetch(http, alice, child)
    assert (done["status"], done["action"], done["description"]) == (
        "SUCCESS",
        "VIDEO",
        "/video extend",
    )
    assert record(router, child).account_id == record(router, video).account_id
    assert len(done["videoUrls"]) == 4


VERSIONED = {
    "a fox --v 7": "v7_2x",
    "a fox --v 6.1": "v6r1_2x",
    "a fox --v 6": "v6_2x",
    "a fox --niji 6": "v6_2x",
    "a fox --v 5.2": "v5_",
    "a fox": None,  # trueai's default version, 8.1: no HD upscale, zoom or pan
    "a fox --v 4": None,
}


def test_an_upscaled_images_buttons_follow_its_version_and_each_runs(
    http: httpx.Client, alice: dict[str, str], router: Router, drain: Drain
) -> None:
    grids = {p: accepted(submit(http, "/mj/submit/imagine", alice, prompt=p)) for p in VERSIONED}
    drain()
    ups = {p: press(http, alice, g, f"MJ::JOB::upsample::2::{g}") for p, g in grids.items()}
    drain()
    buttons = {p: fetch(http, alice, u)["buttons"] for p, u in ups.items()}
    for prompt, hd in VERSIONED.items():
        upscales = [c for c in ids(buttons[prompt]) if c.startswith("MJ::JOB::upsample_")]
        assert all(hd and f"upsample_{hd}" in c for c in upscales), (prompt, upscales)
        assert len(upscales) == (2 if hd else 0), (prompt, upscales)
    v7, job = buttons["a fox --v 7"], ups["a fox --v 7"]
    assert ids(v7) == [
        f"MJ::JOB::upsample_v7_2x_subtle::1::{job}::SOLO",
        f"MJ::JOB::upsample_v7_2x_creative::1::{job}::SOLO",
        f"MJ::JOB::low_variation::1::{job}::SOLO",
        f"MJ::JOB::high_variation::1::{job}::SOLO",
        f"MJ::Inpaint::1::{job}::SOLO",
        f"MJ::Outpaint::50::1::{job}::SOLO",
        f"MJ::Outpaint::75::1::{job}::SOLO",
        f"MJ::CustomZoom::{job}",
        *(f"MJ::JOB::pan_{d}::1::{job}::SOLO" for d in ("left", "right", "up", "down")),
        f"MJ::JOB::animate_high::1::{job}::SOLO",
        f"MJ::JOB::animate_low::1::{job}::SOLO",
        f"MJ::JOB::reroll::0::{job}::SOLO",
    ]
    labels = [b["label"] for b in v7 if b["label"]]
    assert labels[:2] == ["Upscale (Subtle)", "Upscale (Creative)"]
    assert labels[-2:] == ["Animate (High motion)", "Animate (Low motion)"]
    v8 = [new_api_action(c)[0] for c in ids(buttons["a fox"])]
    assert v8 == [
        *("LOW_VARIATION", "HIGH_VARIATION", "INPAINT"),
        *["UNKNOWN_ACTION"] * 2,
        "REROLL",
    ]
    assert "MJ::Inpaint" not in str(buttons["a fox --v 4"])  # Vary (Region): V5 on
    # Pressed: our child types and inputs (the version rides along for the child's buttons).
    made = {c: press(http, alice, job, c) for c in ids(v7)[:2] + ids(v7)[-3:-1]}
    for custom_id, wanted in zip(
        made, ["upscale_subtle", "upscale_creative", "animate", "animate"], strict=True
    ):
        child = record(router, made[custom_id])
        assert (child.task_type, child.parent_id) == (wanted, job), custom_id
    animate = record(router, made[ids(v7)[-3]])
    assert animate.input["motion"] == "high" and animate.requested_mode == "relax"  # rule 5
    subtle = made[ids(v7)[0]]
    assert record(router, subtle).input["model_version"] == "v 7"
    v5, v6r1 = ups["a fox --v 5.2"], ups["a fox --v 6.1"]
    four = press(http, alice, v5, f"MJ::JOB::upsample_v5_4x::1::{v5}::SOLO")
    creative = press(http, alice, v6r1, f"MJ::JOB::upsample_v6r1_2x_creative::1::{v6r1}::SOLO")
    assert record(router, four).task_type == "upscale_4x"
    assert record(router, creative).task_type == "upscale_creative"
    drain()
    upscaled = fetch(http, alice, subtle)
    assert (upscaled["status"], upscaled["action"]) == ("SUCCESS", "UPSCALE_HD")
    # An HD upscale's: vary, region, zoom, Animate, reroll; no upscale, no pan.
    kinds = [new_api_action(c)[0] for c in ids(upscaled["buttons"])]
    assert kinds == [
        *("LOW_VARIATION", "HIGH_VARIATION", "INPAINT", "ZOOM", "ZOOM", "CUSTOM_ZOOM"),
        *("UNKNOWN_ACTION", "UNKNOWN_ACTION", "REROLL"),
    ]
    animated = fetch(http, alice, made[ids(v7)[-2]])
    assert (animated["status"], animated["action"]) == ("SUCCESS", "VIDEO")
    assert animated["videoUrls"] and fetch(http, alice, four)["status"] == "SUCCESS"


def test_a_videos_buttons_upscale_a_clip_and_an_upscaled_clips_extend_it(
    http: httpx.Client, alice: dict[str, str], router: Router, drain: Drain
) -> None:
    video = accepted(
        submit(http, "/mj-fast/mj/submit/video", alice, prompt="a wave", image=IMAGE, batchSize=2)
    )
    drain()
    made = fetch(http, alice, video)
    assert ids(made["buttons"]) == [
        f"MJ::JOB::video_virtual_upscale::1::{video}",
        f"MJ::JOB::video_virtual_upscale::2::{video}",
    ]
    assert [b["label"] for b in made["buttons"]] == ["U1", "U2"]
    up = press(http, alice, video, made["buttons"][1]["customId"])
    assert (record(router, up).task_type, record(router, up).input["index"]) == (
        "video_upscale",
        2,
    )
    # trueai's Discord form of an extend button names the clip (DiscordWebSocketService.cs:
    # 3618): the extend of clip 2 of the video itself.
    direct = record(router, press(http, alice, video, f"MJ::JOB::animate_high_extend::2::{video}"))
    assert (direct.task_type, direct.input["index"], direct.input["motion"]) == (
        "video_extend",
        2,
        "high",
    )
    drain()
    upscaled = fetch(http, alice, up)
    assert (upscaled["status"], upscaled["action"]) == ("SUCCESS", "UPSCALE")
    assert ids(upscaled["buttons"]) == [
        f"MJ::JOB::animate_high_extend::1::{up}",
        f"MJ::JOB::animate_low_extend::1::{up}",
    ]
    assert [b["label"] for b in upscaled["buttons"]] == [
        "Extend (High motion)",
        "Extend (Low motion)",
    ]
    longer = press(http, alice, up, upscaled["buttons"][1]["customId"])
    task = record(router, longer)
    assert (task.task_type, task.parent_id, task.input["index"], task.input["motion"]) == (
        "video_extend",
        up,
        1,
        "low",
    )
    drain()
    extended = fetch(http, alice, longer)
    assert (extended["status"], extended["action"]) == ("SUCCESS", "VIDEO")
    assert len(extended["buttons"]) == len(extended["videoUrls"]) == 4
