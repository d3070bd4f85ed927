"""The 2026 job types through the unified task API, as PiAPI documents them: `describe`
(`image_url`), `blend` (`image_urls`, `dimension`) and an `upscale` whose index is `2x`,
`4x`, `subtle` or `creative` (our HD upscales); no video (PiAPI has none). Run to their
end on the simulated pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from router.apikeys import ApiKeys
from router.core import Router

TASKS = "/api/v1/task"
IMAGE = "https://example.com/a.png"
Drain = Callable[[], None]


@pytest.fixture
def alice(router: Router, add_account: Callable[..., None]) -> dict[str, str]:
    """Headers with a key of alice, who has one Pro account."""
    add_account("a-pro", "alice", "pro")
    return {
        "x-api-key": ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    }


def create(http: httpx.Client, headers: dict[str, str], task_type: str, **input: Any) -> Any:
    body = {"model": "midjourney", "task_type": task_type, "input": input}
    return http.post(TASKS, json=body, headers=headers)


def made(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def get(http: httpx.Client, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    return made(http.get(f"{TASKS}/{task_id}", headers=headers))


def test_describe_and_blend_as_piapi_documents_them(
    http: httpx.Client, alice: dict[str, str], drain: Drain
) -> None:
    # https://piapi.ai/docs/midjourney-api/describe: {image_url, process_mode, bot_id}.
    described = made(
        create(http, alice, "describe", image_url=IMAGE, process_mode="fast", bot_id=0)
    )
    assert (described["task_type"], described["status"]) == ("describe", "pending")
    assert described["input"]["image"] == IMAGE and "image_url" not in described["input"]
    assert described["meta"]["requested_mode"] == "fast"
    urls = [IMAGE, "https://example.com/b.png", "https://example.com/c.png"]
    blended = made(create(http, alice, "blend", image_urls=urls, dimension="landscape"))
    assert (blended["input"]["images"], blended["input"]["dimensions"]) == (urls, "LANDSCAPE")
    drain()
    done = get(http, alice, described["task_id"])
    assert done["status"] == "completed", done
    prompts = done["output"]["prompts"]
    assert len(prompts) == 4 and done["output"]["description"] == "\n\n".join(prompts)
    grid = get(http, alice, blended["task_id"])
    assert grid["status"] == "completed" and grid["output"]["image_url"], grid
    # A blend's grid takes U1-U4 as an imagine's does.
    up = made(create(http, alice, "upscale", origin_task_id=grid["task_id"], index="3"))
    drain()
    assert get(http, alice, up["task_id"])["status"] == "completed"


def test_an_upscales_hd_indexes_are_our_hd_upscales(
    http: httpx.Client, alice: dict[str, str], drain: Drain
) -> None:
    grid = made(create(http, alice, "imagine", prompt="a fox --v 7"))["task_id"]
    drain()
    upscaled = made(create(http, alice, "upscale", origin_task_id=grid, index=1))["task_id"]
    drain()
    # https://piapi.ai/docs/midjourney-api/upscale: index 1-4, light, beta, 2x, 4x, subtle,
    # creative.
    wanted = {
        "subtle": "upscale_subtle",
        "creative": "upscale_creative",
        "2x": "upscale_2x",
        "4x": "upscale_4x",
    }
    ids = {}
    for index, task_type in wanted.items():
        data = made(create(http, alice, "upscale", origin_task_id=upscaled, index=index))
        assert data["task_type"] == task_type and "index" not in data["input"], data
        ids[index] = data["task_id"]
    drain()
    assert all(get(http, alice, i)["status"] == "completed" for i in ids.values())


def test_describe_blend_and_upscale_refusals_name_piapis_fields(
    http: httpx.Client, alice: dict[str, str]
) -> None:
    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("describe", {}, "input.image_url"),
        ("describe", {"image_url": ""}, "input.image_url"),
        ("blend", {"image_urls": [IMAGE]}, "input.image_urls"),
        ("blend", {"image_urls": [IMAGE] * 6}, "input.image_urls"),
        ("blend", {"image_urls": IMAGE}, "input.image_urls"),
        ("blend", {"image_urls": [IMAGE, IMAGE], "dimension": "wide"}, "dimensions"),
        ("upscale", {"origin_task_id": "t1", "index": "light"}, "V4"),
        ("upscale", {"origin_task_id": "t1", "index": "beta"}, "V4"),
    ]
    for task_type, input_, named in refusals:
        answer = create(http, alice, task_type, **input_)
        assert answer.status_code == 400, (task_type, input_, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_task" and named in error["message"], error
    # PiAPI documents no Midjourney video: not a task type here.
    for task_type in ("video", "animate", "video_extend", "shorten"):
        answer = create(http, alice, task_type, prompt="a wave", image=IMAGE)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "unknown_task_type"
