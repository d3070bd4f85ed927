"""The cost model: a job's fast-time estimate, and what it needs of an account (its
`JobClass`), from its type, its prompt's parameters and its input. One place: the router
reserves it, fallback and "surely expires" count it, the scheduling bench and the
simulator use it. The figures are settings (`Settings.gpu_seconds`, `Settings.costs`),
each default with its source beside it, because Midjourney changes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from router.models import JobClass, TaskType

Factor = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]

VIDEO_TYPES = frozenset({TaskType.VIDEO, TaskType.ANIMATE, TaskType.VIDEO_EXTEND})
"""Jobs that make a batch of video clips (`batch_size` of them)."""
INHERITED = frozenset({TaskType.VIDEO_EXTEND, TaskType.VIDEO_UPSCALE})
"""Jobs whose class (SD or HD video) is their parent video's, unless their input says:
SUBMIT reads it. An extend (a video batch) of an HD video costs HD (`HD_SCALED`); a
video's upscale (its U1-U4: one clip separated, which trueai counts free) costs little
whatever the clip."""
HD_SCALED = frozenset({TaskType.VIDEO_EXTEND})
VIDEO_MADE = VIDEO_TYPES | {TaskType.VIDEO_UPSCALE}
"""Jobs whose results are videos (clips)."""
PROMPTS_MADE = frozenset({TaskType.DESCRIBE, TaskType.SHORTEN})
"""Jobs whose results are prompts: nothing acts on them."""
VIDEO_CHILDREN = frozenset({TaskType.VIDEO_EXTEND, TaskType.VIDEO_UPSCALE})
"""Children that act on a video; every other child acts on an image."""


def parent_fits(child: TaskType, parent: TaskType) -> bool:
    """Whether a child of this type acts on a parent of that type: a video's buttons on a
    video, an image's on an image, nothing on a describe's or shorten's prompts."""
    if parent in PROMPTS_MADE:
        return False
    return (child in VIDEO_CHILDREN) == (parent in VIDEO_MADE)


"""Inherited jobs whose estimate SUBMIT multiplies by `CostFactors.hd_video` when their
parent is HD."""
BATCH_SIZES = (1, 2, 4)
"""A video's clips per job (trueai SubmitVideoDTO.cs `BatchSize` 1 | 2 | 4; `--bs`)."""
MAX_ESTIMATE_MS = 6 * 3_600_000
"""The largest estimate one job is given, whatever its factors multiply to (a video batch
of 4 HD clips is about 26 GPU minutes): Redis integers and Lua numbers stay exact."""


class CostFactors(BaseModel):
    """How a job's parameters scale its GPU time; defaults with their sources."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    draft: Factor = 0.5
    """`--draft` (V7): Midjourney's draft-mode article, "about half the GPU time". Enhance
    re-runs a draft at full cost (an imagine)."""
    oref: Factor = 2.0
    """`--oref` (omni-reference): about twice (a third-party measurement; Midjourney
    publishes none)."""
    non_square: Factor = 1.0
    """A non-square `--ar`: above 1x by reports, no factor published or measured: 1 until
    one is."""
    hd_video: Factor = 3.2
    """HD (720p) video against SD (480p): about 3.2x (a third-party measurement)."""
    max_quality: Factor = 4.0
    """`--q N` scales GPU time by N (Midjourney's quality page: higher quality takes
    proportionally longer), up to this (V7 takes 1, 2 and 4)."""


_PARAM = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)([a-z_]+)(?:\s+([^\s\-\u2014\u2013]\S*))?", re.I)
"""A prompt parameter `--name` and its value, if one follows: `--`, or one em or en dash,
as for mode flags (`router.modes`: Midjourney reads `\u2014q 2` as `--q 2`)."""
BATCH_PARAM = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)bs(?:\s+[^\s\-\u2014\u2013]\S*)?(?!\S)", re.I)
"""A `--bs N` in a video's prompt: taken out into `input.batch_size` (`batch_size_of`),
so the account runs the batch the router estimated, however the prompt put it."""
MIN_QUALITY = 0.25
"""The least `--q` counts for (Midjourney's lowest quality): no estimate below it."""


def _params(prompt: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) or "" for m in _PARAM.finditer(prompt)}


def _number(value: Any) -> float | None:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return None
    return n if n == n and n not in (float("inf"), float("-inf")) else None


def batch_size_of(prompt: str, input: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """A video's prompt without its `--bs`, and its input with `batch_size` set from the
    last one when the input gives none: one batch size, the one the router estimates and
    the driver sends."""
    found = BATCH_PARAM.findall(prompt)
    if not found:
        return prompt, input
    given = dict(input)
    if given.get("batch_size") is None:
        last = _number(found[-1].split()[-1]) if len(found[-1].split()) > 1 else None
        if last is not None and last in BATCH_SIZES:
            given["batch_size"] = int(last)
    return " ".join(BATCH_PARAM.sub(" ", prompt).split()), given


def batch_size(prompt: str, input: Mapping[str, Any]) -> int:
    """A video job's clips: `batch_size` in the input, else `--bs`, else 4 (trueai's
    default); anything but 1, 2 or 4 is 4."""
    given = input.get("batch_size", _params(prompt).get("bs"))
    n = _number(given)
    return int(n) if n in BATCH_SIZES else 4


def is_hd(input: Mapping[str, Any]) -> bool | None:
    """Whether the input asks for HD video (`video_type` `hd` or trueai's
    `vid_1.1_i2v_720`), SD (`sd`, `vid_1.1_i2v_480`), or says nothing (None)."""
    given = str(input.get("video_type", "")).strip().lower()
    if given in ("hd", "720", "720p", "vid_1.1_i2v_720"):
        return True
    if given in ("sd", "480", "480p", "vid_1.1_i2v_480"):
        return False
    return None


def job_class(task_type: TaskType, input: Mapping[str, Any]) -> JobClass | None:
    """What the job needs of an account; None: its parent's (a video extend or a video's
    upscale whose resolution its input does not say, read by SUBMIT)."""
    if task_type not in VIDEO_TYPES and task_type not in INHERITED:
        return JobClass.IMAGE
    hd = is_hd(input)
    if hd is None and task_type in INHERITED:
        return None
    return JobClass.HD_VIDEO if hd else JobClass.VIDEO


def estimate_ms(
    task_type: TaskType,
    prompt: str,
    input: Mapping[str, Any],
    gpu_seconds: Mapping[TaskType, float],
    factors: CostFactors,
) -> int:
    """GPU milliseconds at the fast rate one job is expected to use (turbo uses them twice
    as fast: the reservation doubles them). An HD video is counted HD here only when its
    input says so; SUBMIT scales an extend that inherits HD by `factors.hd_video`."""
    cost = gpu_seconds[task_type] * 1000.0
    if task_type in VIDEO_TYPES:
        cost *= batch_size(prompt, input) / 4
    kind = job_class(task_type, input)
    if kind is JobClass.HD_VIDEO and task_type in VIDEO_TYPES:
        cost *= factors.hd_video
    params = _params(prompt)
    if kind is JobClass.IMAGE:
        if "draft" in params:
            cost *= factors.draft
        quality = _number(params.get("q", params.get("quality")))
        if quality is not None and quality > 0:
            cost *= min(max(quality, MIN_QUALITY), factors.max_quality)
        if "oref" in params:
            cost *= factors.oref
        ratio = params.get("ar", params.get("aspect"))
        if ratio and not _square(ratio):
            cost *= factors.non_square
    return max(1, min(round(cost), MAX_ESTIMATE_MS))


def _square(ratio: str) -> bool:
    width, _, height = ratio.partition(":")
    w, h = _number(width), _number(height)
    return w is None or h is None or w == h
