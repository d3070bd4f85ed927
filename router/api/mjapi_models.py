"""The midjourney-proxy API's vocabulary: return codes, statuses, the task JSON (its
buttons: `router.api.mjapi_buttons`) and the submissions' bodies.

Shapes as the two open servers answer them (read at novicezk/midjourney-proxy 0be95a9 and
trueai-org/midjourney-proxy ed32197, "11.10.3"), and as new-api's relay parses them
(QuantumNous/new-api, Calcium-Ion's tree ef8ae4db, `dto/midjourney.go:29-101`):

- a submission answers `{code, description, result, properties}`
  (novicezk `result/SubmitResultVO.java:14-24`): `result` the task id, or null when
  refused (`SubmitResultVO.java:53-55`);
- a task is `{id, action, status, prompt, promptEn, description, state, submitTime,
  startTime, finishTime, imageUrl, videoUrl, videoUrls, progress, failReason, buttons,
  properties}` (novicezk `support/Task.java:20-48`, trueai `src/Midjourney.Base/Models/
  TaskInfo.cs:190-628`), times in epoch milliseconds, `videoUrls` `[{url}]` as new-api
  decodes it (at 08b94b7, `dto/midjourney.go:60-61, 70-72`). new-api reads `properties`
  as `{finalPrompt, finalZhPrompt}` strings (`dto/midjourney.go:98-101`), so every value
  we add there is a string or null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt

from router.api.mjapi_buttons import buttons
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
    TaskType.DESCRIBE: "DESCRIBE",
    TaskType.BLEND: "BLEND",
    TaskType.SHORTEN: "SHORTEN",
    TaskType.VIDEO: "VIDEO",
    TaskType.UPSCALE: "UPSCALE",
    TaskType.VARIATION: "VARIATION",
    TaskType.REROLL: "REROLL",
    TaskType.OUTPAINT: "ZOOM",
    TaskType.PAN: "PAN",
    TaskType.INPAINT: "INPAINT",
    TaskType.UPSCALE_SUBTLE: "UPSCALE_HD",
    TaskType.UPSCALE_CREATIVE: "UPSCALE_HD",
    TaskType.UPSCALE_2X: "UPSCALE_HD",
    TaskType.UPSCALE_4X: "UPSCALE_HD",
    TaskType.ANIMATE: "VIDEO",
    TaskType.VIDEO_EXTEND: "VIDEO",
    TaskType.VIDEO_UPSCALE: "UPSCALE",
}
"""Task types as trueai records them (its TaskAction, `src/Midjourney.Base/Models/Enums.cs:
243-360`): describe, shorten, blend and video as their routes set them
(`SubmitController.cs:329, 351, 418, 952`), an Upscale (Subtle/Creative) or (2x/4x)
UPSCALE_HD (:645-651), an Animate VIDEO (:665-671), a clip's upscale UPSCALE (:538-557), a
video extend VIDEO once it runs (`src/Midjourney.Services/DiscordWebSocketService.cs:
4134-4138`)."""

PROMPTS_JOIN = "\r\n"
"""A describe's four prompts in one text, as trueai joins them into `promptEn` and
`properties.finalPrompt` (`src/Midjourney.Base/Models/TaskInfo.cs:1251-1252`); a shorten's
too."""
WORDED = frozenset({TaskType.DESCRIBE, TaskType.SHORTEN})
"""Tasks whose result is text (`prompts`), not an image."""


HOOK_FORMAT = "midjourney-proxy"
"""A task's webhook body is this API's task JSON (what both servers POST to a `notifyHook`:
novicezk `service/NotifyServiceImpl.java:37-80`, and new-api's `/mj/notify` reads it as a
task, `relay/relay-mj.go:66-104`), not our task record (`Keys.hook_format`)."""


def _ms(value: datetime | None) -> int | None:
    return round(value.timestamp() * 1000) if value else None


def _prompts(task: Task) -> str | None:
    """A describe's or shorten's prompts, as one text; None before it has them."""
    result = task.result if isinstance(task.result, dict) else {}
    prompts = result.get("prompts")
    if not isinstance(prompts, list):
        return None
    return PROMPTS_JOIN.join(str(p) for p in prompts)


def description(task: Task) -> str:
    """The servers' descriptions: `/imagine <prompt>`, `/up <parent> U1` (novicezk
    `SubmitController.java:86,115-120`); `/describe`, `/shorten <prompt>` (a finished one:
    its prompts), `/blend <id> <n>`, `/video <prompt>` and `/video extend` as trueai writes
    them (`SubmitController.cs:332, 369, 419, 1017`; `DiscordWebSocketService.cs:2707`;
    `TaskService.cs:812`); the other children name their kind."""
    given = task.input
    kind = task.task_type
    if kind == TaskType.IMAGINE:
        return f"/imagine {task.prompt or ''}"
    if kind == TaskType.DESCRIBE:
        return "/describe"
    if kind == TaskType.SHORTEN:
        return _prompts(task) or f"/shorten {task.prompt or ''}"
    if kind == TaskType.BLEND:
        images = given.get("images")
        return f"/blend {task.id} {len(images) if isinstance(images, list) else 0}"
    if kind == TaskType.VIDEO:
        return f"/video {task.prompt or ''}"
    if kind == TaskType.VIDEO_EXTEND:
        return "/video extend"
    if kind in (TaskType.UPSCALE, TaskType.VARIATION) and "index" in given:
        return f"/up {task.parent_id} {kind[0].upper()}{given['index']}"
    if kind == TaskType.REROLL:
        return f"/up {task.parent_id} R"
    return f"/{kind} {task.parent_id}"


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


def _media(task: Task) -> tuple[str | None, list[dict[str, str]] | None]:
    """The task's image (a video's first clip, as trueai's `imageUrl` is the video link:
    `TaskInfo.cs:782-783`; a describe's: the image described) and its clips as trueai's
    `videoUrls`, `[{url}]` (`TaskInfo.cs:1542-1564`), which new-api decodes
    (at 08b94b7, `dto/midjourney.go:60-61, 70-72`)."""
    result = task.result if isinstance(task.result, dict) else {}
    clips = result.get("video_urls")
    videos = [{"url": u} for u in clips if isinstance(u, str)] if isinstance(clips, list) else None
    image = result.get("image_url")
    if not isinstance(image, str):
        image = videos[0]["url"] if videos else None
    if image is None and task.task_type == TaskType.DESCRIBE:
        link = task.input.get("image")
        image = link if isinstance(link, str) and link.startswith(("http://", "https://")) else None
    return image, videos


def task_json(task: Task) -> dict[str, Any]:
    """A stored task as a midjourney-proxy task."""
    image, videos = _media(task)
    fail = None
    if task.error is not None:
        fail = f"{task.error.code}: {task.error.message}"
    elif task.status is TaskStatus.CANCELLED:
        fail = "cancelled"
    state = task.input.get("state")
    prompt = task.prompt or ""
    final = prompt
    prompt_en = prompt
    worded = _prompts(task) if task.task_type in WORDED else None
    if worded is not None:
        # trueai: a describe's prompts are its promptEn, a shorten's its description, both
        # its finalPrompt (DiscordWebSocketService.cs:2636-2645, 2705-2714).
        final = worded
        if task.task_type == TaskType.DESCRIBE:
            prompt_en = worded
    return {
        "id": task.id,
        "action": ACTION.get(TaskType(task.task_type)) if task.task_type in set(TaskType) else None,
        "status": status(task),
        "prompt": prompt,
        "promptEn": prompt_en,
        "description": description(task),
        "state": state if isinstance(state, str) else None,
        "submitTime": _ms(task.created_at),
        "startTime": _ms(task.started_at),
        "finishTime": _ms(task.finished_at),
        "imageUrl": image,
        "videoUrl": videos[0]["url"] if videos else None,
        "videoUrls": videos,
        "progress": progress(task),
        "failReason": fail,
        "buttons": buttons(task),
        "properties": {
            "finalPrompt": final,
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
        "videoUrl": None,
        "videoUrls": None,
        "progress": "0%",
        "failReason": None,
        "buttons": [],
        "properties": {"finalPrompt": "", "parentId": held.get("parent_id")},
    }


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


class DescribeBody(Body):
    """trueai `SubmitDescribeDTO.cs:32-60`: the image as `base64` (a data URL or bare) or
    as `link`; `botType`, `language` and `accountFilter` mean nothing here."""

    base64: str | None = None
    link: str | None = None


class ShortenBody(Body):
    """trueai takes a shorten as an imagine's body (`SubmitController.cs:345-346`)."""

    prompt: str | None = None


class BlendBody(Body):
    """trueai `SubmitBlendDTO.cs:32-56`: 2 to 5 images (data URLs, bare base64 or URLs)."""

    base64Array: list[str] | None = None
    dimensions: str | None = "SQUARE"


class VideoBody(Body):
    """trueai `SubmitVideoDTO.cs:31-87`, defaults as there: a new video (`prompt`, `image`,
    `endImage`, `motion`, `loop`, `videoType`, `batchSize`) or, with `action` `extend`,
    `taskId` and `index` (0-3), the extend of a clip of that video. Numbers and booleans
    are JSON's own, as trueai binds them (`Program.cs:219-223`)."""

    prompt: str | None = None
    motion: str | None = "low"
    image: str | None = None
    endImage: str | None = None
    loop: StrictBool = False
    action: str | None = None
    index: StrictInt | None = None
    taskId: str | None = None
    videoType: str | None = "vid_1.1_i2v_480"
    batchSize: StrictInt | None = 4
