"""What each job type needs in its input, checked before it is routed: a describe needs an
image, a blend 2 to 5, a video a start image, and so on. Fields are named as our task
records keep them (the HTTP APIs map their clients' names onto these); a missing or bad
field is `invalid_task`, naming it. Anything else in the input goes to the driver as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from router.costs import BATCH_SIZES, is_hd
from router.models import TaskType
from router.modes import strip_flags

MAX_BLEND_IMAGES = 5
"""trueai SubmitBlendDTO.cs: 2 to 5 images."""
DIMENSIONS = ("PORTRAIT", "SQUARE", "LANDSCAPE")
"""A blend's `dimensions` (trueai SubmitBlendDTO.cs, midjourney-proxy's BlendDimensions)."""
MOTIONS = ("low", "high")
"""A video's `motion` (trueai SubmitVideoDTO.cs)."""


def _image(value: Any) -> bool:
    """An image given as an http(s) URL or as base64 (a data URL or bare): printable text."""
    return isinstance(value, str) and bool(value.strip()) and value.isprintable()


def _needs_image(input: Mapping[str, Any], prompt: str) -> str | None:
    if not (_image(input.get("image")) or _image(input.get("base64"))):
        return "input.image (a URL) or input.base64 is required"
    return None


def _blend(input: Mapping[str, Any], prompt: str) -> str | None:
    images = input.get("images")
    if not isinstance(images, list) or not 2 <= len(images) <= MAX_BLEND_IMAGES:
        return f"input.images must list 2 to {MAX_BLEND_IMAGES} images (URLs or base64)"
    if not all(_image(i) for i in images):
        return "input.images holds an empty or non-text image"
    dims = input.get("dimensions")
    if dims is not None and str(dims).upper() not in DIMENSIONS:
        return f"input.dimensions must be one of {', '.join(DIMENSIONS)}"
    return None


def _shorten(input: Mapping[str, Any], prompt: str) -> str | None:
    if strip_flags(prompt):
        return None
    return "shorten needs input.prompt, a prompt to shorten (besides a mode flag)"


def _video_params(input: Mapping[str, Any]) -> str | None:
    motion = input.get("motion")
    if motion is not None and str(motion).lower() not in MOTIONS:
        return "input.motion must be low or high"
    size = input.get("batch_size")
    if size is not None and (type(size) is not int or size not in BATCH_SIZES):
        return "input.batch_size must be 1, 2 or 4 (a whole number)"
    if "video_type" in input and is_hd(input) is None:
        return "input.video_type must be sd or hd"
    loop = input.get("loop")
    if loop is not None and not isinstance(loop, bool):
        return "input.loop must be true or false"
    return None


def _video(input: Mapping[str, Any], prompt: str) -> str | None:
    if not _image(input.get("image")):
        return "video needs input.image, its start image (a URL or base64)"
    end = input.get("end_image")
    if end is not None and not _image(end):
        return "input.end_image must be an image (a URL or base64) when given"
    return _video_params(input)


def _clip(input: Mapping[str, Any], prompt: str) -> str | None:
    index = input.get("index")
    if index is not None and (type(index) is not int or index not in (1, 2, 3, 4)):
        return "input.index must be 1, 2, 3 or 4 (the clip)"
    return _video_params(input)


CHECKS: dict[TaskType, Callable[[Mapping[str, Any], str], str | None]] = {
    TaskType.DESCRIBE: _needs_image,
    TaskType.BLEND: _blend,
    TaskType.SHORTEN: _shorten,
    TaskType.VIDEO: _video,
    TaskType.ANIMATE: lambda i, p: _video_params(i),
    TaskType.VIDEO_EXTEND: _clip,
    TaskType.VIDEO_UPSCALE: _clip,
}


def input_problem(task_type: TaskType, input: Mapping[str, Any], prompt: str) -> str | None:
    """Why this input cannot make a job of this type, or None."""
    check = CHECKS.get(task_type)
    return check(input, prompt) if check else None
