"""The unified task API's answers: `{code, data, message}`, GoAPI / PiAPI style.

`data` is a task as those APIs show it (`task_id`, `model`, `task_type`, `status`,
`input`, `output`, `meta`, `error`); our own fields (the mode a task really runs in, why
it fell back, its account) go in `meta`, where those APIs' clients expect extra facts.
Errors keep the envelope too, with the HTTP status as `code` and our stable error code
in `error.code` beside the text; `data` is null, but for a child refused for its parent
(the failed task stored for it). A task's webhook is POSTed `{timestamp, data}`, `data`
as `GET` answers it (`hook_body`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from router.models import TaskStatus, TaskType
from router.tasks import Task

MODEL = "midjourney"

STATUS = {
    TaskStatus.QUEUED: "pending",
    TaskStatus.RUNNING: "processing",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "failed",
}
"""Our statuses as the task API's: a cancelled task has failed, with error code `cancelled`."""


class ApiError(Exception):
    """An answer other than 2xx: HTTP status, stable code, text, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class TaskErrorOut(BaseModel):
    """Why a task failed: `code` 0 when it has not; our stable code in `detail.code`."""

    code: int = 0
    message: str = ""
    raw_message: str = ""
    detail: dict[str, str] | None = None


class TaskOut(BaseModel):
    task_id: str
    model: str = MODEL
    task_type: str
    status: str = Field(description="pending, processing, completed or failed")
    input: dict[str, Any]
    output: dict[str, Any]
    meta: dict[str, Any]
    error: TaskErrorOut


class Envelope(BaseModel):
    """Every answer of the task API about one task (or none: a refused request)."""

    code: int
    data: TaskOut | None = Field(
        default=None,
        description="The task; on a refusal, none, except a child refused for its parent: "
        "the failed task stored for it.",
    )
    message: str
    error: dict[str, str] | None = Field(
        default=None, description="On a refused request: our stable `code` and `message`."
    )


class TaskPageOut(BaseModel):
    """A page of the caller's tasks, newest first."""

    tasks: list[TaskOut]
    page: int
    page_size: int
    has_more: bool = Field(description="More tasks match: ask for the next page.")
    truncated: bool = Field(
        default=False,
        description="The listing stopped reading after the newest tens of thousands of "
        "tasks: older matches may exist though `has_more` is false.",
    )


class TaskListEnvelope(BaseModel):
    """The answer of `GET /api/v1/task`."""

    code: int
    data: TaskPageOut
    message: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_out(task: Task) -> TaskOut:
    """A stored task as the task API shows it."""
    input_: dict[str, Any] = {**task.input}
    if task.prompt is not None:
        input_["prompt"] = task.prompt
    if task.parent_id is not None:
        input_["origin_task_id"] = task.parent_id
    result = task.result
    output: dict[str, Any] = dict(result) if isinstance(result, dict) else {}
    if result is not None and not isinstance(result, dict):
        output["result"] = result
    if "image_url" in output and "image_urls" not in output:
        output["image_urls"] = [output["image_url"]]
    prompts = output.get("prompts")
    if task.task_type == TaskType.DESCRIBE and isinstance(prompts, list):
        # PiAPI's describe answers its prompts as `output.description`
        # (https://piapi.ai/docs/midjourney-api/describe), one text.
        output.setdefault("description", "\n\n".join(str(p) for p in prompts))
    error = TaskErrorOut()
    if task.error is not None:
        error = TaskErrorOut(
            code=1,
            message=f"{task.error.code}: {task.error.message}",
            raw_message=task.error.message,
            detail={"code": task.error.code},
        )
    elif task.status is TaskStatus.CANCELLED:
        error = TaskErrorOut(code=1, message="cancelled", detail={"code": "cancelled"})
    meta = {
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "ended_at": _iso(task.finished_at),
        "status": task.status.value,
        "process_mode": task.effective_mode.value if task.effective_mode else None,
        "requested_mode": task.requested_mode.value if task.requested_mode else None,
        "fallback_reason": task.fallback_reason,
        "account_id": task.account_id,
        "attempt": task.attempt,
        "retries": task.retries,
        "ran_mode": task.ran_mode.value if task.ran_mode else None,
        "cancel_outcome": task.cancel_outcome,
        "webhook_status": task.webhook_status,
    }
    return TaskOut(
        task_id=task.id,
        task_type=task.task_type,
        status=STATUS[task.status],
        input=input_,
        output=output,
        meta=meta,
        error=error,
    )


HOOK_FORMAT = "task-api"
"""A task's webhook body is this API's: `{timestamp, data}`, `data` as the fetch answers
it, the secret in `x-webhook-secret` (GoAPI, https://goapi.ai/docs/unified-api-webhook;
PiAPI, https://piapi.ai/docs/unified-webhook), not our task record
(`Keys.hook_format`)."""


def hook_body(task: Task, event: str) -> dict[str, Any]:
    """The webhook body of a task submitted through this API. `timestamp` (Unix seconds)
    is when the event happened (the task started for `running`, else it ended), so a retry
    of one notification carries the same one: those APIs' receivers tell duplicates by it."""
    at = task.started_at if event == "running" else task.finished_at
    when = at or task.created_at
    return {
        "timestamp": int(when.timestamp()) if when else 0,
        "data": task_out(task).model_dump(mode="json"),
    }


def ok(task: Task, message: str = "success", **meta: Any) -> JSONResponse:
    """200 with the task; `meta`: facts of this answer beside the record's."""
    out = task_out(task)
    out.meta.update(meta)
    body = Envelope(code=200, data=out, message=message)
    return JSONResponse(body.model_dump(mode="json"))


def refused(e: ApiError, task: Task | None = None) -> JSONResponse:
    """The error's status, in the envelope; `task`: the failed task stored for the request
    (`data`), if any."""
    body = Envelope(
        code=e.status,
        data=task_out(task) if task is not None else None,
        message=f"{e.code}: {e.message}",
        error={"code": e.code, "message": e.message},
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=e.status, headers=e.headers)
