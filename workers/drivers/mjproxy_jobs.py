"""What a job is to a midjourney-proxy: the handle that names it, the button or change a
child task sends (Midjourney's buttons as the proxies relay them), how the job's mode
reaches Midjourney, and what its result says (a describe's prompts, a video's clips)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router.driver import DriverError, UnknownJob
from router.models import Mode

HANDLE_PREFIX = "mjp"
MODES = frozenset(m.value for m in Mode)
CHANGE_ACTIONS = {"upscale": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}
"""novicezk's `/submit/change` actions (dto/SubmitChangeDTO.java:15-23, enums/
TaskAction.java:8-28): the only children a proxy without buttons runs."""


FREE_BUTTONS = ("MJ::JOB::upsample::", "MJ::JOB::video_virtual_upscale")
"""U1-U4 and a video's clip upscale: trueai records them UPSCALE (src/Midjourney.API/
Controllers/SubmitController.cs:516-556), gives them no slot and no mode check (src/
Midjourney.Services/DiscordService.cs:1566-1580; TaskService.cs:1341-1380) and counts no
fast time for them (DiscordService.cs:2664-2671)."""
FREE_TYPES = frozenset({"upscale", "video_upscale", "describe"})
"""Jobs that spend no fast time by trueai's count: those of FREE_BUTTONS (novicezk's
`/submit/change` UPSCALE too), and a describe, which trueai counts apart
(src/Midjourney.Services/DiscordService.cs:2664-2669)."""
CHOSEN_BUTTONS = (
    "MJ::Inpaint::", "MJ::CustomZoom::", "MJ::JOB::variation::", "MJ::JOB::low_variation::",
    "MJ::JOB::high_variation::", "MJ::JOB::pan_", "MJ::JOB::reroll::", "MJ::JOB::animate_",
)  # fmt: skip
"""Buttons whose job trueai may give a prompt with a mode of its own choosing: vary region
and custom zoom always answer a modal (src/Midjourney.Services/TaskService.cs:1697-1719),
and with the account's Remix on (which no client can read) so do variations, pans,
rerolls and videos (:1965-2012). The modal's prompt passes `GetPrompt`, which writes the
task's mode (src/Midjourney.Services/DiscordService.cs:3282-3286): FAST, TURBO, RELAX, the
first the account allows (TaskService.cs:1256-1264, 1341-1368, 1493)."""
TRUEAI_FAST_FLOOR = 6
"""trueai allows FAST only with more than this many fast jobs left, TURBO with more than
twice as many (src/Midjourney.Services/DiscordService.cs:628-637): at this or fewer it
chooses RELAX."""
KEYCAP = re.compile(r"([1-9])\ufe0f?\u20e3")
"""The keycap emoji Midjourney numbers a describe's and a shorten's prompts with (trueai
src/Midjourney.Base/Models/TaskInfo.cs:1171-1213 labels its buttons with them)."""
SUFFIX = re.compile(r"\((fast|relaxed|turbo)(?:,\s*stealth)?\)", re.I)
"""Midjourney's word for the mode a job ran in, at the end of its message (trueai src/
Midjourney.Base/Utils/MjMessageParser.cs:18, 26-117)."""
MENTION = re.compile(r"<@\d+>")


class Reach(StrEnum):
    """How a job's mode reaches Midjourney."""

    FLAG = "flag"
    """In its prompt, as the router wrote it (the proxy keeps it or writes the same)."""
    SETTING = "setting"
    """Not at all: it runs in the account's own Midjourney mode (/fast, /relax)."""
    CHOSEN = "chosen"
    """In a prompt the proxy writes with a mode of its own choosing (trueai)."""


def reach(path: str, body: dict[str, Any], buttons: bool) -> Reach:
    """How the mode of the job `path` and `body` submit reaches Midjourney. trueai
    (`buttons`) writes the route's mode into an imagine's, blend's, shorten's and new
    video's prompt (src/Midjourney.Services/DiscordService.cs:3254-3317, via :2413-2475,
    2544-2575); an extend's prompt gets the mode it chooses (src/Midjourney.Services/
    TaskService.cs:446-450, 1493; DiscordWebSocketService.cs:4084-4225); see
    CHOSEN_BUTTONS. A describe sends no prompt (DiscordService.cs:2362-2410). novicezk
    passes an imagine's prompt as written (service/TaskServiceImpl.java:55); a blend, a
    describe and a change send no prompt (service/DiscordServiceImpl.java:59-119)."""
    if path == "/submit/imagine" or (buttons and path in ("/submit/blend", "/submit/shorten")):
        return Reach.FLAG
    if path == "/submit/video":
        return Reach.CHOSEN if body.get("action") == "extend" else Reach.FLAG
    if buttons and str(body.get("customId") or "").startswith(CHOSEN_BUTTONS):
        return Reach.CHOSEN
    return Reach.SETTING


def free(task_type: str, path: str, body: dict[str, Any]) -> bool:
    """Whether the job spends no fast time (FREE_TYPES), judged by what it presses."""
    if path == "/submit/action":
        return str(body.get("customId") or "").startswith(FREE_BUTTONS)
    if path == "/submit/change":
        return body.get("action") == "UPSCALE"
    return task_type == "describe" and path == "/submit/describe"


def prompts(text: str) -> list[str]:
    """The prompts of a describe's or shorten's text: each after a keycap, else each line."""
    marks = list(KEYCAP.finditer(text))
    if marks:
        ends = [m.start() for m in marks[1:]] + [len(text)]
        found = [text[m.end() : end].strip() for m, end in zip(marks, ends, strict=True)]
    else:
        found = [line.strip() for line in text.splitlines()]
    return [p for p in found if p]


def said_mode(content: str) -> Mode | None:
    """The mode Midjourney's message says its job ran in: the last "(fast)", "(relaxed)" or
    "(turbo)" after the message's last mention of the user (the prompt, which the owner
    wrote, comes before it); None where it says none (a U's "Image #N")."""
    mentions = list(MENTION.finditer(content))
    if not mentions:
        return None
    found = SUFFIX.findall(content[mentions[-1].end() :])
    if not found:
        return None
    word = found[-1].lower()
    return Mode.RELAX if word == "relaxed" else Mode(word)


def upscale_version(prompt: str) -> str:
    """The upscale buttons' version for an image of this prompt: V7 and Niji 7 `v7`, V6.1
    `v6r1`, V6 and Niji 6 `v6` (trueai src/Midjourney.Base/Models/CustomComponentModel.cs:
    131-174, the customIds of Midjourney's buttons it mirrors); else V7, the default."""
    found = re.search(r"--(v|version|niji)\s+(\d+(?:\.\d+)?)", prompt, re.I)
    number = found.group(2) if found else "7"
    if number.startswith("6.1"):
        return "v6r1"
    return "v6" if number in ("6", "6.0") else "v7"


def image_index(params: dict[str, Any]) -> int:
    """Which of the grid's images a child acts on (`input.index`, 1 to 4)."""
    try:
        index = int(params.get("index", 1))
    except (TypeError, ValueError):
        index = 0
    if not 1 <= index <= 4:
        raise DriverError("input.index must be a number from 1 to 4")
    return index


def button_prefix(task_type: str, params: dict[str, Any], parent_prompt: str = "") -> str:
    """The start of the customId of the button a child task presses, as the proxies relay
    Midjourney's buttons (e.g. `MJ::JOB::upsample::2::<hash>`, `MJ::Outpaint::50::1::...`):
    trueai's Upscale (Subtle/Creative) by the version of `parent_prompt`, V5's
    Upscale (2x/4x), Animate by `motion`, a video's clip upscale by `index` (src/Midjourney.
    API/Controllers/SubmitController.cs:537-556, 645-671; src/Midjourney.Base/Models/
    CustomComponentModel.cs:67-89, 131-188; TaskInfo.cs:1110-1133)."""
    index = image_index(params)
    version = upscale_version(parent_prompt)
    motion = str(params.get("motion") or "low").lower()
    strength = {"subtle": "low_", "strong": "high_"}.get(str(params.get("strength", "")), "")
    zoom = {"1.5": "MJ::Outpaint::75::", "custom": "MJ::CustomZoom::"}
    prefixes = {
        "upscale": f"MJ::JOB::upsample::{index}::",
        "variation": f"MJ::JOB::{strength}variation::{'' if strength else f'{index}::'}",
        "reroll": "MJ::JOB::reroll::",
        "pan": f"MJ::JOB::pan_{str(params.get('direction', 'left')).lower()}::",
        "outpaint": zoom.get(str(params.get("zoom", "2")), "MJ::Outpaint::50::"),
        "inpaint": "MJ::Inpaint::",
        "upscale_subtle": f"MJ::JOB::upsample_{version}_2x_subtle::",
        "upscale_creative": f"MJ::JOB::upsample_{version}_2x_creative::",
        "upscale_2x": "MJ::JOB::upsample_v5_2x::",
        "upscale_4x": "MJ::JOB::upsample_v5_4x::",
        "animate": f"MJ::JOB::animate_{motion}::",
        "video_upscale": f"MJ::JOB::video_virtual_upscale::{index}::",
    }
    if task_type not in prefixes:
        raise DriverError(f"{task_type} is not a child task type")
    return prefixes[task_type]


@dataclass(frozen=True)
class Handle:
    """What a handle carries: enough for any process to find the job (no secret)."""

    owner: str
    account_id: str
    mode: Mode
    task_type: str
    task_id: str
    hd: bool = False
    """A video asked for in HD: trueai records a new video's resolution nowhere the task
    shows (only an extend's `videoType`: src/Midjourney.Services/TaskService.cs:811)."""

    def __str__(self) -> str:
        kind = f"{self.task_type}+hd" if self.hd else self.task_type
        return ":".join((HANDLE_PREFIX, self.owner, self.account_id, self.mode, kind, self.task_id))

    @classmethod
    def parse(cls, handle: str) -> Handle:
        parts = handle.split(":", 5)
        if len(parts) != 6 or parts[0] != HANDLE_PREFIX or parts[3] not in MODES:
            raise UnknownJob(f"{handle!r} is not a midjourney-proxy handle")
        task_type, _, hd = parts[4].partition("+")
        return cls(parts[1], parts[2], Mode(parts[3]), task_type, parts[5], hd == "hd")
