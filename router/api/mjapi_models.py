"""The midjourney-proxy API's vocabulary: return codes, statuses, the task JSON with its
buttons, and the buttons' `customId`s read back as our child tasks.

Shapes as the two open servers answer them (read at novicezk/midjourney-proxy 0be95a9 and
trueai-org/midjourney-proxy ed32197, "11.10.3"), and as new-api's relay parses them
(QuantumNous/new-api, Calcium-Ion's tree ef8ae4db, `dto/midjourney.go:29-101`):

- a submission answers `{code, description, result, properties}`
  (novicezk `result/SubmitResultVO.java:14-24`): `result` the task id, or null when
  refused (`SubmitResultVO.java:53-55`);
- a task is `{id, action, status, prompt, promptEn, description, state, submitTime,
  startTime, finishTime, imageUrl, progress, failReason, buttons, properties}` (novicezk
  `support/Task.java:20-48`, trueai `src/Midjourney.Base/Models/TaskInfo.cs:190-350`),
  times in epoch milliseconds. new-api reads `properties` as `{finalPrompt, finalZhPrompt}`
  strings (`dto/midjourney.go:98-101`), so every value we add there is a string or null.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from router.models import TaskStatus, TaskType
from router.tasks import Task

SUCCESS = 1
NOT_FOUND = 3
VALIDATION_ERROR = 4
FAILURE = 9
EXISTED = 21
IN_QUEUE = 22
QUEUE_REJECTED = 23
"""Return codes: novicezk `ReturnCode.java:10-31`, the same in trueai
`src/Midjourney.Base/Dto/ReturnCode.cs:35-65`. 21 also answers an action that waits for
a modal (trueai `SubmitController.cs:654-667`, `src/Midjourney.Services/TaskService.cs:
1697-1718`), which new-api passes on as it is for INPAINT and CUSTOM_ZOOM
(`relay/relay-mj.go:564-586`). An unknown task is code 3 with HTTP 404 (trueai
`SubmitController.cs:500`), and another owner's task answers exactly so."""

STATE_TEXT = "the task has not succeeded"
"""An action on a task that has not succeeded (novicezk `SubmitController.java:125-126`)."""

STATUS = {
    TaskStatus.QUEUED: "NOT_START",
    TaskStatus.COMPLETED: "SUCCESS",
    TaskStatus.FAILED: "FAILURE",
    TaskStatus.CANCELLED: "FAILURE",
}
"""Our statuses as theirs (novicezk `enums/TaskStatus.java:10-26`): a running task is
SUBMITTED until its backend job exists, then IN_PROGRESS; a cancelled one has failed, as
trueai fails a cancelled task (`TaskController.cs:96-118`)."""

ACTION = {
    TaskType.IMAGINE: "IMAGINE",
    TaskType.UPSCALE: "UPSCALE",
    TaskType.VARIATION: "VARIATION",
    TaskType.REROLL: "REROLL",
    TaskType.OUTPAINT: "ZOOM",
    TaskType.PAN: "PAN",
    TaskType.INPAINT: "INPAINT",
}
"""Task types as trueai's TaskAction (`src/Midjourney.Base/Models/Enums.cs:243-306`)."""

GRIDS = frozenset({TaskType.IMAGINE, TaskType.VARIATION, TaskType.REROLL, TaskType.OUTPAINT})
"""Tasks whose image is a grid of four (U1-U4, V1-V4 and reroll act on it); the rest
make one image (an upscale's buttons)."""

MODAL_PREFIXES = ("MJ::CustomZoom::", "MJ::Inpaint::")
"""Buttons that open a modal (a prompt, a mask): the action waits for `/submit/modal`
(trueai `SubmitController.cs:654-667`, `TaskService.cs:1697-1718`)."""


HOOK_FORMAT = "midjourney-proxy"
"""A task's webhook body is this API's task JSON (what both servers POST to a `notifyHook`:
novicezk `service/NotifyServiceImpl.java:37-80`, and new-api's `/mj/notify` reads it as a
task, `relay/relay-mj.go:66-104`), not our task record (`Keys.hook_format`)."""


def _ms(value: datetime | None) -> int | None:
    return round(value.timestamp() * 1000) if value else None


def grid_buttons(job: str) -> list[dict[str, Any]]:
    """U1-U4, reroll, V1-V4 of a grid, in trueai's order and form (`customId`, `emoji`,
    `label`, `style`, `type`: `src/Midjourney.Base/Models/CustomComponentModel.cs:51-59`)."""
    ups = [(f"MJ::JOB::upsample::{i}::{job}", f"U{i}", "") for i in range(1, 5)]
    vs = [(f"MJ::JOB::variation::{i}::{job}", f"V{i}", "") for i in range(1, 5)]
    rows = [*ups, (f"MJ::JOB::reroll::0::{job}::SOLO", "", "\U0001f504"), *vs]
    return [{"customId": c, "emoji": e, "label": lbl, "style": 2, "type": 2} for c, lbl, e in rows]


def image_buttons(job: str) -> list[dict[str, Any]]:
    """An upscaled image's buttons: vary, zoom out, custom zoom, pan, vary region."""
    rows = [
        (f"MJ::JOB::low_variation::1::{job}::SOLO", "Vary (Subtle)"),
        (f"MJ::JOB::high_variation::1::{job}::SOLO", "Vary (Strong)"),
        (f"MJ::Outpaint::50::1::{job}::SOLO", "Zoom Out 2x"),
        (f"MJ::Outpaint::75::1::{job}::SOLO", "Zoom Out 1.5x"),
        (f"MJ::CustomZoom::{job}", "Custom Zoom"),
        *((f"MJ::JOB::pan_{d}::1::{job}::SOLO", "") for d in ("left", "right", "up", "down")),
        (f"MJ::Inpaint::1::{job}::SOLO", "Vary (Region)"),
    ]
    return [{"customId": c, "emoji": "", "label": lbl, "style": 2, "type": 2} for c, lbl in rows]


def buttons(task: Task) -> list[dict[str, Any]]:
    """A finished task's buttons, each `customId` naming the task itself as its hash (the
    action endpoint takes them back); none before it succeeds."""
    if task.status is not TaskStatus.COMPLETED or task.task_type not in set(TaskType):
        return []
    return grid_buttons(task.id) if TaskType(task.task_type) in GRIDS else image_buttons(task.id)


def description(task: Task) -> str:
    """novicezk's descriptions: `/imagine <prompt>`, `/up <parent> U1` (`SubmitController.
    java:86,115-120`); the other children name their kind."""
    given = task.input
    if task.task_type == TaskType.IMAGINE:
        return f"/imagine {task.prompt or ''}"
    if task.task_type in (TaskType.UPSCALE, TaskType.VARIATION) and "index" in given:
        return f"/up {task.parent_id} {task.task_type[0].upper()}{given['index']}"
    if task.task_type == TaskType.REROLL:
        return f"/up {task.parent_id} R"
    return f"/{task.task_type} {task.parent_id}"


def status(task: Task) -> str:
    if task.status is TaskStatus.RUNNING:
        return "IN_PROGRESS" if task.handle else "SUBMITTED"
    return STATUS[task.status]


def progress(task: Task) -> str:
    """`0%` until it ends, `100%` on success, empty on failure (novicezk `support/Task.java:
    50-67`: start, success, fail)."""
    if task.status is TaskStatus.COMPLETED:
        return "100%"
    return "" if task.status.terminal else "0%"


def task_json(task: Task) -> dict[str, Any]:
    """A stored task as a midjourney-proxy task."""
    result = task.result if isinstance(task.result, dict) else {}
    image = result.get("image_url")
    fail = None
    if task.error is not None:
        fail = f"{task.error.code}: {task.error.message}"
    elif task.status is TaskStatus.CANCELLED:
        fail = "cancelled"
    state = task.input.get("state")
    prompt = task.prompt or ""
    return {
        "id": task.id,
        "action": ACTION.get(TaskType(task.task_type)) if task.task_type in set(TaskType) else None,
        "status": status(task),
        "prompt": prompt,
        "promptEn": prompt,
        "description": description(task),
        "state": state if isinstance(state, str) else None,
        "submitTime": _ms(task.created_at),
        "startTime": _ms(task.started_at),
        "finishTime": _ms(task.finished_at),
        "imageUrl": image if isinstance(image, str) else None,
        "progress": progress(task),
        "failReason": fail,
        "buttons": buttons(task),
        "properties": {
            "finalPrompt": prompt,
            "parentId": task.parent_id,
            "processMode": task.effective_mode.value if task.effective_mode else None,
            "requestedMode": task.requested_mode.value if task.requested_mode else None,
            "fallbackReason": task.fallback_reason,
            "accountId": task.account_id,
            "errorCode": task.error.code if task.error else None,
        },
    }


def modal_json(task_id: str, held: dict[str, Any]) -> dict[str, Any]:
    """An action waiting for its modal, as trueai shows such a task: status MODAL
    (`src/Midjourney.Base/Models/Enums.cs:214`), nothing run yet."""
    kind = TaskType(held["task_type"])
    state = held.get("state")
    return {
        "id": task_id,
        "action": ACTION[kind],
        "status": "MODAL",
        "prompt": "",
        "promptEn": "",
        "description": "Waiting for window confirm",
        "state": state if isinstance(state, str) else None,
        "submitTime": held.get("submit_ms"),
        "startTime": None,
        "finishTime": None,
        "imageUrl": None,
        "progress": "0%",
        "failReason": None,
        "buttons": [],
        "properties": {"finalPrompt": "", "parentId": held.get("parent_id")},
    }


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


def press(custom_id: str) -> Press | None:
    """The child a `customId` makes, or None for a button we do not run. The forms are
    trueai's (`SubmitController.cs:520-668`) and new-api's reading of them
    (`service/midjourney.go:71-127`): `MJ::JOB::<kind>::<n>::<hash>[::SOLO]`,
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
    if kind == "upsample" and indexed:
        return Press(TaskType.UPSCALE, job, {"index": int(number)})
    if kind == "variation" and indexed:
        return Press(TaskType.VARIATION, job, {"index": int(number)})
    if kind in ("low_variation", "high_variation"):
        strength = "subtle" if kind == "low_variation" else "strong"
        return Press(TaskType.VARIATION, job, {"strength": strength})
    if kind == "reroll":
        return Press(TaskType.REROLL, job, {})
    if kind.startswith("pan_") and kind[4:] in PANS:
        return Press(TaskType.PAN, job, {"direction": kind[4:]})
    return None


CHANGES = {"UPSCALE": TaskType.UPSCALE, "VARIATION": TaskType.VARIATION, "REROLL": TaskType.REROLL}
"""`/submit/change`'s actions (novicezk `dto/SubmitChangeDTO.java:15-23`)."""


def simple_change(content: str) -> tuple[str, str, int | None] | None:
    """`<taskId> U2` as (task id, action, index), or None; read as new-api reads it
    (`service/midjourney.go:130-157`): two words, U1-U4, V1-V4 or R."""
    words = content.split(" ")
    if len(words) != 2 or not words[0]:
        return None
    task_id, change = words[0], words[1].lower()
    if change == "r":
        return task_id, "REROLL", None
    if len(change) == 2 and change[0] in "uv" and change[1] in "1234":
        return task_id, "UPSCALE" if change[0] == "u" else "VARIATION", int(change[1])
    return None


class Body(BaseModel):
    """What every submission may carry."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    state: str | None = None
    """The caller's own value, shown back in the task (novicezk `dto/BaseSubmitDTO.java:11`)."""
    notifyHook: str | None = None
    """Where the task JSON is POSTed when the task starts and ends."""


class ImagineBody(Body):
    prompt: str = ""
    base64Array: list[str] | None = None
    base64: str | None = None


class ActionBody(Body):
    customId: str = ""
    taskId: str = ""


class ModalBody(Body):
    taskId: str = ""
    prompt: str = ""
    maskBase64: str = ""


class ChangeBody(Body):
    taskId: str = ""
    action: str = ""
    index: int | None = None


class SimpleChangeBody(Body):
    content: str = ""


class ConditionBody(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    ids: list[str] | None = None
