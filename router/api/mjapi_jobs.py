"""What the midjourney-proxy API's job routes (`/mj/submit/describe`, `blend`, `video`)
check of a body before it becomes a task, in the order trueai-org/midjourney-proxy ed32197
checks it (`src/Midjourney.API/Controllers/SubmitController.cs`), and the input our task
record keeps of it, in our names (`router.job_inputs`): `link` and `base64` a describe's
`image` or `base64`, `base64Array` a blend's `images`, `image`, `endImage`, `videoType`
and `batchSize` a video's `image`, `end_image`, `video_type` (`sd`, `hd`) and
`batch_size`, an extend's `index` 0-3 our clip 1-4. What the core checks itself (a
shorten's prompt, a motion, a batch size) it refuses as it does from every door.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from router.api import mjapi_models as mj
from router.job_inputs import DIMENSIONS, MAX_BLEND_IMAGES
from router.models import ErrorCode

EXTEND = "extend"
"""A video body's `action` that makes it the extend of its `taskId`, compared exactly on
the controller (`SubmitController.cs:992-997`), in any case by the service
(`src/Midjourney.Services/TaskService.cs:439`)."""
VIDEO_TYPES = {"vid_1.1_i2v_480": "sd", "vid_1.1_i2v_720": "hd"}
"""trueai's `videoType`s (`SubmitVideoDTO.cs:74-80`) as ours."""
_DATA_URL = re.compile(r"data:(?P<type>.+?);base64,(?P<data>.+)", re.DOTALL)
_LINK = re.compile(r"https?://.+")


@dataclass(frozen=True)
class Refused:
    """A body refused before it becomes a task: trueai's code, our text and stable code."""

    description: str
    code: int = mj.VALIDATION_ERROR
    error_code: str = ErrorCode.INVALID_TASK


def given(value: str | None) -> str | None:
    """A text field's value, None when missing or blank (C#'s `IsNullOrWhiteSpace`)."""
    return value if value is not None and value.strip() else None


def is_link(value: str) -> bool:
    """trueai takes a value that starts with `http`, in any case, as a link
    (`src/Midjourney.Base/Dto/DataUrl.cs:90-96`)."""
    return value[:4].lower() == "http"


def image_ok(value: str) -> bool:
    """A link, or base64 with or without a `data:<type>;base64,` prefix that decodes, as
    `DataUrl.Parse` takes an image (`DataUrl.cs:83-125`; .NET skips white space in base64)."""
    if is_link(value):
        return True
    found = _DATA_URL.search(value)
    data = "".join((found.group("data") if found else value).split())
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def describe_input(body: mj.DescribeBody) -> dict[str, Any] | Refused:
    """`base64` or `link` (`SubmitController.cs:283-324`): a link, or base64 that is a link,
    is our `image`; other base64 our `base64`."""
    data, link = given(body.base64), given(body.link)
    if data is None and link is None:
        return Refused("base64 or link is required")
    if link is not None and not _LINK.match(link):
        return Refused("link must be an http(s) URL")
    if data is None:
        return {"image": link}
    if not image_ok(data):
        return Refused("base64 is neither base64 nor a link")
    return {"image": data} if is_link(data) else {"base64": data}


def blend_input(body: mj.BlendBody) -> dict[str, Any] | Refused:
    """2 to 5 images, then the dimensions, then each image (`SubmitController.cs:386-414`;
    a dimension trueai's enum does not name fails its binding, `Program.cs:229-237`)."""
    images = body.base64Array
    if images is None or not 2 <= len(images) <= MAX_BLEND_IMAGES:
        return Refused(f"base64Array must hold 2 to {MAX_BLEND_IMAGES} images")
    dimensions = (body.dimensions or "").upper()
    if dimensions not in DIMENSIONS:
        return Refused(f"dimensions must be one of {', '.join(DIMENSIONS)}")
    if not all(image_ok(i) for i in images if given(i)):
        return Refused("base64Array holds an image that is neither base64 nor a link")
    return {"images": list(images), "dimensions": dimensions}


def video_refusal(body: mj.VideoBody) -> Refused | None:
    """The checks every video body gets, in trueai's order: a prompt (an extend's too:
    `SubmitController.cs:931-934`), images that parse (:936-948), `action` `extend` with a
    `taskId` (:992-997), a `taskId` with an extend (code 3, `TaskService.cs:439-444`)."""
    if given(body.prompt) is None:
        return Refused("prompt is required")
    for name, value in (("image", body.image), ("endImage", body.endImage)):
        image = given(value)
        if image is not None and not image_ok(image):
            return Refused(f"{name} is neither base64 nor a link")
    if given(body.taskId) is not None and body.action != EXTEND:
        return Refused(f"action must be {EXTEND!r} for a video with a taskId")
    if given(body.taskId) is None and (body.action or "").lower() == EXTEND:
        return Refused(
            "an extend needs taskId, the video it extends", mj.NOT_FOUND, ErrorCode.PARENT_NOT_FOUND
        )
    return None


def extends(body: mj.VideoBody) -> bool:
    """Whether the body extends its `taskId` (once `video_refusal` passed it)."""
    return given(body.taskId) is not None


def video_input(body: mj.VideoBody) -> dict[str, Any]:
    """A new video's input: the DTO's defaults (motion low, SD, a batch of 4) as trueai
    sends them (`TaskService.cs:684-727`)."""
    input_: dict[str, Any] = {"loop": body.loop}
    for name, value in (("image", body.image), ("end_image", body.endImage)):
        if given(value) is not None:
            input_[name] = value
    if given(body.motion) is not None:
        input_["motion"] = str(body.motion).lower()
    video_type = given(body.videoType)
    if video_type is not None:  # trueai: anything but 720 is SD; here sd, hd or refused
        input_["video_type"] = VIDEO_TYPES.get(video_type, video_type)
    if body.batchSize is not None:
        input_["batch_size"] = body.batchSize
    return input_


def extend_input(body: mj.VideoBody) -> dict[str, Any] | Refused:
    """An extend's input: the clip (`index` 0-3, our 1-4: trueai presses clip `index + 1`,
    `TaskService.cs:800`), its motion (no motion: high, :805), and the resolution and batch
    only when the body says them (an extend is its video's resolution otherwise)."""
    index = body.index
    if index is None or not 0 <= index <= 3:
        return Refused("index must be 0, 1, 2 or 3 (the clip of the video to extend)")
    motion = str(body.motion).lower() if body.motion is not None else "high"
    input_: dict[str, Any] = {"index": index + 1, "motion": motion}
    fields = body.model_fields_set
    video_type = given(body.videoType)
    if "videoType" in fields and video_type is not None:
        input_["video_type"] = VIDEO_TYPES.get(video_type, video_type)
    if "batchSize" in fields and body.batchSize is not None:
        input_["batch_size"] = body.batchSize
    if given(body.endImage) is not None:
        input_["end_image"] = body.endImage
    if body.loop:
        input_["loop"] = True
    return input_
