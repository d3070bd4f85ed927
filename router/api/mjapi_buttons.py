"""The midjourney-proxy API's buttons: the ones a finished task offers, by its kind and
its Midjourney version, and the `customId`s read back as our child tasks.

Forms and labels as trueai-org/midjourney-proxy ed32197 builds them
(`src/Midjourney.Base/Models/CustomComponentModel.cs`, `src/Midjourney.Base/Models/
TaskInfo.cs:1012-1165`) and reads them (`src/Midjourney.API/Controllers/SubmitController.
cs:516-688`); each `customId` names the task itself as its hash, which `/submit/action`
takes back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from router.models import TaskStatus, TaskType
from router.tasks import Task

DEFAULT_VERSION = "v 8.1"
"""The version of a prompt without `--v` (trueai `MjPromptParser.cs:61`, `TaskInfo.cs:
1265-1291`): on it, as on any V8, Midjourney has no Upscale (Subtle/Creative), zoom or
pan (`CustomComponentModel.cs:131-135, 323-331, 373-381`)."""
NIJI_DEFAULT = "7"
"""`--niji` without a number (`MjPromptParser.cs:66`)."""
VERSION_KEY = "model_version"
"""Where a child made here keeps its parent's version (`v 7`, `niji 6`): its own prompt is
empty, and its buttons depend on the version of the image it acts on."""

_PARAM = re.compile(r"(?<!\S)--(version|v|niji)(?:\s+([^\s-]\S*))?", re.IGNORECASE)
_GIVEN = re.compile(r"(v|niji)?\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)

GRIDS = frozenset(
    {TaskType.IMAGINE, TaskType.VARIATION, TaskType.REROLL, TaskType.OUTPAINT, TaskType.BLEND}
)
"""Tasks whose image is a grid of four (U1-U4, V1-V4 and reroll act on it); a blend is one
(trueai runs it as an imagine of the images, `TaskService.cs:1138-1161`)."""
HD_UPSCALES = frozenset(
    {TaskType.UPSCALE_SUBTLE, TaskType.UPSCALE_CREATIVE, TaskType.UPSCALE_2X, TaskType.UPSCALE_4X}
)
CLIPS = frozenset({TaskType.VIDEO, TaskType.ANIMATE, TaskType.VIDEO_EXTEND})
"""Tasks that make a batch of video clips (their buttons take one clip on)."""
UNBUTTONED = frozenset({TaskType.DESCRIBE, TaskType.SHORTEN})
"""A describe's buttons (`MJ::Job::PicReader::N`) imagine one of its prompts, through a
modal; a shorten's cannot be pressed on trueai (`SubmitController.cs:683-688`): neither is
run here, so neither is offered."""


def version_of_prompt(prompt: str | None) -> str:
    """trueai's `GetVersion`: `v 7`, `v 6.1`, `niji 6`... from `--version`, `--v` and
    `--niji`, else the default."""
    params = {m.group(1).lower(): m.group(2) or "" for m in _PARAM.finditer(prompt or "")}
    number = params.get("version") or params.get("v")
    if "niji" in params:
        return f"niji {number or params['niji'] or NIJI_DEFAULT}"
    return f"v {number}" if number else DEFAULT_VERSION


def version_of(task: Task) -> str:
    """The version of the image a task made: the one its input keeps (a child's), else its
    prompt's."""
    given = task.input.get(VERSION_KEY)
    if isinstance(given, str):
        found = _GIVEN.fullmatch(given.strip())
        if found:
            return f"{(found.group(1) or 'v').lower()} {found.group(2)}"
    return version_of_prompt(task.prompt)


def _number(version: str) -> float:
    """The version's number (`7`, `6.1`); 0 for one that is none (`--v nan`)."""
    try:
        n = float(version.split(" ")[-1])
    except ValueError:
        return 0.0
    return n if math.isfinite(n) else 0.0


def _button(custom_id: str, label: str = "", emoji: str = "") -> dict[str, Any]:
    """trueai's form (`CustomComponentModel.cs:51-59`)."""
    return {"customId": custom_id, "emoji": emoji, "label": label, "style": 2, "type": 2}


HD_KINDS = {
    7: ("v7_2x_subtle", "v7_2x_creative", "Upscale (Subtle)", "Upscale (Creative)"),
    6: ("v6_2x_subtle", "v6_2x_creative", "Upscale (Subtle)", "Upscale (Creative)"),
    5: ("v5_2x", "v5_4x", "Upscale (2x)", "Upscale (4x)"),
}
"""`CreateUpscaleButtons` (`CustomComponentModel.cs:97-248`), by major version: V7 and niji
7, V6 and niji 6 (V6.1: `v6r1`), V5 and niji 5; none for V8 and for V1-V4."""


def upscale_hd_buttons(job: str, version: str) -> list[dict[str, Any]]:
    n = _number(version)
    kinds = HD_KINDS.get(int(n)) if n < 8 else None
    if kinds is None:
        return []
    first, second, label1, label2 = kinds
    if version.startswith("v ") and 6.1 <= n < 7:
        first, second = "v6r1_2x_subtle", "v6r1_2x_creative"
    return [
        _button(f"MJ::JOB::upsample_{first}::1::{job}::SOLO", label1, "upscale_1"),
        _button(f"MJ::JOB::upsample_{second}::1::{job}::SOLO", label2, "upscale_1"),
    ]


def vary_buttons(job: str, version: str) -> list[dict[str, Any]]:
    """Vary (Subtle/Strong), and Vary (Region) from V5 (`CustomComponentModel.cs:256-312`)."""
    rows = [
        _button(f"MJ::JOB::low_variation::1::{job}::SOLO", "Vary (Subtle)", "\U0001fa84"),
        _button(f"MJ::JOB::high_variation::1::{job}::SOLO", "Vary (Strong)", "\U0001fa84"),
    ]
    if _number(version) >= 5:
        rows.append(_button(f"MJ::Inpaint::1::{job}::SOLO", "Vary (Region)", "\U0001f58c\ufe0f"))
    return rows


def zoom_buttons(job: str, version: str) -> list[dict[str, Any]]:
    """Zoom Out 2x / 1.5x and Custom Zoom, V5 to V7 (`CustomComponentModel.cs:321-362`); the
    custom zoom in Midjourney's own form (`SubmitController.cs:652-654`)."""
    if not 5 <= _number(version) < 8:
        return []
    return [
        _button(f"MJ::Outpaint::50::1::{job}::SOLO", "Zoom Out 2x", "\U0001f50d"),
        _button(f"MJ::Outpaint::75::1::{job}::SOLO", "Zoom Out 1.5x", "\U0001f50d"),
        _button(f"MJ::CustomZoom::{job}", "Custom Zoom", "\U0001f50d"),
    ]


PAN_EMOJI = {
    "left": "\u2b05\ufe0f",
    "right": "\u27a1\ufe0f",
    "up": "\u2b06\ufe0f",
    "down": "\u2b07\ufe0f",
}


def pan_buttons(job: str, version: str) -> list[dict[str, Any]]:
    """Pan left/right/up/down, V5 to V7 (`CustomComponentModel.cs:371-421`)."""
    if not 5 <= _number(version) < 8:
        return []
    return [_button(f"MJ::JOB::pan_{d}::1::{job}::SOLO", "", e) for d, e in PAN_EMOJI.items()]


def animate_buttons(job: str) -> list[dict[str, Any]]:
    """Animate (High/Low motion) (`CustomComponentModel.cs:67-88`)."""
    return [
        _button(f"MJ::JOB::animate_{m}::1::{job}::SOLO", f"Animate ({m.title()} motion)", "🎞️")
        for m in ("high", "low")
    ]


def reroll_button(job: str) -> dict[str, Any]:
    return _button(f"MJ::JOB::reroll::0::{job}::SOLO", "", "\U0001f504")


def grid_buttons(job: str) -> list[dict[str, Any]]:
    """U1-U4, reroll, V1-V4 of a grid, in trueai's order."""
    ups = [_button(f"MJ::JOB::upsample::{i}::{job}", f"U{i}") for i in range(1, 5)]
    vs = [_button(f"MJ::JOB::variation::{i}::{job}", f"V{i}") for i in range(1, 5)]
    return [*ups, reroll_button(job), *vs]


def upscaled_buttons(job: str, version: str) -> list[dict[str, Any]]:
    """An upscaled image's (U1-U4's): Upscale (Subtle/Creative) or (2x/4x) by version, vary,
    zoom, pan, Animate, reroll (`OnUpscaleButtons`, `TaskInfo.cs:1012-1065`)."""
    return [
        *upscale_hd_buttons(job, version),
        *vary_buttons(job, version),
        *zoom_buttons(job, version),
        *pan_buttons(job, version),
        *animate_buttons(job),
        reroll_button(job),
    ]


def hd_buttons(job: str, version: str) -> list[dict[str, Any]]:
    """An HD-upscaled image's: vary, zoom, Animate, reroll; no upscale nor pan
    (`OnUpscale2xButtons`, `TaskInfo.cs:1070-1105`)."""
    return [
        *vary_buttons(job, version),
        *zoom_buttons(job, version),
        *animate_buttons(job),
        reroll_button(job),
    ]


def image_buttons(job: str) -> list[dict[str, Any]]:
    """A pan's or vary region's image: vary, zoom out, custom zoom, pan, vary region."""
    rows = [
        (f"MJ::JOB::low_variation::1::{job}::SOLO", "Vary (Subtle)"),
        (f"MJ::JOB::high_variation::1::{job}::SOLO", "Vary (Strong)"),
        (f"MJ::Outpaint::50::1::{job}::SOLO", "Zoom Out 2x"),
        (f"MJ::Outpaint::75::1::{job}::SOLO", "Zoom Out 1.5x"),
        (f"MJ::CustomZoom::{job}", "Custom Zoom"),
        *((f"MJ::JOB::pan_{d}::1::{job}::SOLO", "") for d in ("left", "right", "up", "down")),
        (f"MJ::Inpaint::1::{job}::SOLO", "Vary (Region)"),
    ]
    return [_button(c, lbl) for c, lbl in rows]


def clip_buttons(job: str, clips: int) -> list[dict[str, Any]]:
    """A video's: one upscale per clip, `MJ::JOB::video_virtual_upscale::<i>::<hash>` "U<i>"
    (`SetVideoUpscaleButtons`, `TaskInfo.cs:1110-1133`). Its reroll is not offered: our
    reroll is an image job."""
    return [
        _button(f"MJ::JOB::video_virtual_upscale::{i}::{job}", f"U{i}") for i in range(1, clips + 1)
    ]


def extend_buttons(job: str) -> list[dict[str, Any]]:
    """An upscaled clip's: Extend (High/Low motion) (`SetVideoExtendButtons`, `TaskInfo.cs:
    1139-1165`)."""
    return [
        _button(f"MJ::JOB::animate_{m}_extend::1::{job}", f"Extend ({m.title()} motion)", "🎞️")
        for m in ("high", "low")
    ]


def buttons(task: Task) -> list[dict[str, Any]]:
    """A finished task's buttons; none before it succeeds."""
    if task.status is not TaskStatus.COMPLETED or task.task_type not in set(TaskType):
        return []
    kind = TaskType(task.task_type)
    if kind in GRIDS:
        return grid_buttons(task.id)
    if kind is TaskType.UPSCALE:
        return upscaled_buttons(task.id, version_of(task))
    if kind in HD_UPSCALES:
        return hd_buttons(task.id, version_of(task))
    if kind in CLIPS:
        result = task.result if isinstance(task.result, dict) else {}
        urls = result.get("video_urls")
        return clip_buttons(task.id, len(urls) if isinstance(urls, list) else 4)
    if kind is TaskType.VIDEO_UPSCALE:
        return extend_buttons(task.id)
    if kind in UNBUTTONED:
        return []
    return image_buttons(task.id)


@dataclass(frozen=True)
class Press:
    """A button pressed: the child task it makes, of which task."""

    task_type: TaskType
    parent_id: str
    input: dict[str, Any]
    modal: bool = False
    """It waits for `/submit/modal` (a prompt, a mask) before it can run."""


ZOOMS = {"50": "2", "75": "1.5"}
"""Outpaint's zoom out factors as Midjourney's buttons name them (`MJ::Outpaint::50`: 2x)."""
PANS = frozenset({"left", "right", "up", "down"})
UPSCALE_HD = {
    "subtle": TaskType.UPSCALE_SUBTLE,
    "creative": TaskType.UPSCALE_CREATIVE,
    "2x": TaskType.UPSCALE_2X,
    "4x": TaskType.UPSCALE_4X,
}
_HD = re.compile(r"upsample_(?:(?:v7|v6r1|v6)_2x_(subtle|creative)|v5_(2x|4x))")
"""Upscale (Subtle/Creative) of V7, V6.1 and V6 images, V5's Upscale (2x/4x): trueai's
UPSCALE_HD (`SubmitController.cs:645-651`)."""
_ANIMATE = re.compile(r"animate_(high|low)(_extend)?")
"""Animate (a video from an image) and a clip's extend: trueai's VIDEO
(`SubmitController.cs:665-671`), the motion in the id."""


def press(custom_id: str) -> Press | None:
    """The child a `customId` makes, or None for a button we do not run. The forms are
    trueai's (`SubmitController.cs:520-688`): `MJ::JOB::<kind>::<n>::<hash>[::SOLO]`,
    `MJ::Outpaint::<50|75>::1::<hash>::SOLO`, `MJ::CustomZoom::<hash>`,
    `MJ::Inpaint::1::<hash>::SOLO`."""
    parts = custom_id.split("::")
    if len(parts) < 3 or parts[0] != "MJ":
        return None
    if parts[1] == "CustomZoom" and len(parts) == 3:
        return Press(TaskType.OUTPAINT, parts[2], {"zoom": "custom"}, modal=True)
    if parts[1] == "Inpaint":
        if len(parts) == 5 and parts[2] == "1" and parts[4] == "SOLO":
            return Press(TaskType.INPAINT, parts[3], {}, modal=True)
        return None
    if len(parts) not in (5, 6) or (len(parts) == 6 and parts[5] != "SOLO"):
        return None
    kind, number, job = parts[2], parts[3], parts[4]
    if parts[1] == "Outpaint" and kind in ZOOMS and len(parts) == 6:
        return Press(TaskType.OUTPAINT, job, {"zoom": ZOOMS[kind]})
    if parts[1] != "JOB":
        return None
    indexed = number in ("1", "2", "3", "4")
    return _job_press(kind, int(number) if indexed else None, job)


def _job_press(kind: str, index: int | None, job: str) -> Press | None:
    """`MJ::JOB::<kind>::<number>::<job>`: `index` the number when it is 1 to 4."""
    if kind == "upsample" and index:
        return Press(TaskType.UPSCALE, job, {"index": index})
    if kind == "variation" and index:
        return Press(TaskType.VARIATION, job, {"index": index})
    if kind in ("low_variation", "high_variation"):
        strength = "subtle" if kind == "low_variation" else "strong"
        return Press(TaskType.VARIATION, job, {"strength": strength})
    if kind == "reroll":
        return Press(TaskType.REROLL, job, {})
    if kind.startswith("pan_") and kind[4:] in PANS:
        return Press(TaskType.PAN, job, {"direction": kind[4:]})
    hd = _HD.fullmatch(kind)
    if hd and index:
        return Press(UPSCALE_HD[hd.group(1) or hd.group(2)], job, {})
    # A clip's upscale and extend name the clip (`SubmitController.cs:537-556`, the extend
    # button `MJ::JOB::animate_high_extend::4::<hash>`: `DiscordWebSocketService.cs:3618`).
    if kind == "video_virtual_upscale" and index:
        return Press(TaskType.VIDEO_UPSCALE, job, {"index": index})
    animate = _ANIMATE.fullmatch(kind)
    if animate and index:
        motion = animate.group(1)
        if animate.group(2):
            return Press(TaskType.VIDEO_EXTEND, job, {"index": index, "motion": motion})
        return Press(TaskType.ANIMATE, job, {"motion": motion})
    return None


def inherited(child: TaskType, parent: Task) -> dict[str, Any]:
    """What a child made here keeps of its parent: an image child, the parent's version
    (its own buttons are that image's)."""
    if child in CLIPS or child is TaskType.VIDEO_UPSCALE:
        return {}
    return {VERSION_KEY: version_of(parent)}
