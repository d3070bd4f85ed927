"""The unified task API (GoAPI / PiAPI shape) on the router's own rules.

`POST /api/v1/task` turns `{model, task_type, input, config}` into our task message and
sends it through `check_message` and `Router.submit_many`: the validation, error codes
and SUBMIT script of the intake list and the Python client. `model` may be left out (it
is `midjourney`, the only one served). `GET` and `DELETE /api/v1/task/{task_id}` read and
cancel the caller's own tasks; another owner's task id answers exactly as an unknown one
does (404). `GET /api/v1/task` lists the caller's tasks, newest first, a page at a time.

Their inputs as ours: `imagine` takes `prompt` (required: one that is empty once its mode
flags are taken out is refused, 400, since the account would get nothing to draw),
`process_mode` and `aspect_ratio` (added to the prompt as `--ar W:H`, which is how
Midjourney takes it); `describe` its `image_url` (our `image`, PiAPI
https://piapi.ai/docs/midjourney-api/describe), `blend` its `image_urls` (2 to 5, our
`images`) and `dimension` (our `dimensions`: portrait, square or landscape), as PiAPI's
published clients send them; the children (`upscale`, `variation`, `reroll`, `outpaint`,
`pan`, `inpaint`) take `origin_task_id` (our `parent_id`) and `index` (1 to 4), an
upscale's `2x`, `4x`, `subtle` and `creative` being our `upscale_2x`, `upscale_4x`,
`upscale_subtle` and `upscale_creative` (PiAPI https://piapi.ai/docs/midjourney-api/upscale;
its V4 `light` and `beta` are not served), outpaint's `zoom_ratio` (our `zoom`), inpaint's
`mask` (our `mask_base64`); other input fields travel to the driver as they are. PiAPI
documents no Midjourney video, so none is served here (the midjourney-proxy API and the
client take them). A child whose `origin_task_id` names no task of the caller
answers 404 `parent_not_found`, one whose parent has not completed 409
`parent_not_completed`: SUBMIT stores such a child failed, as it does from every door, and
the answer carries that task in `data`.
`config.webhook_config {endpoint, secret}` is our task webhook, POSTed when the task
starts and when it ends (those APIs also tell status updates) in their body,
`{timestamp, data}` with `data` as `GET` answers it, the secret in `x-webhook-secret`
(`envelope.hook_body`); `config.service_mode` means nothing here.

An `Idempotency-Key` header names the submission (`router.api.idempotency`): a retry with
the same key answers the first attempt's task, as `GET` would, and never makes a second.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.api import idempotency
from router.api.auth import Caller
from router.api.batcher import Submission
from router.api.body import parse_json
from router.api.envelope import (
    HOOK_FORMAT,
    MODEL,
    ApiError,
    Envelope,
    TaskListEnvelope,
    TaskPageOut,
    ok,
    refused,
    task_out,
)
from router.apikeys import ApiKey
from router.core import Router
from router.job_inputs import MAX_BLEND_IMAGES
from router.models import ID_RE, ErrorCode, TaskStatus, TaskType
from router.modes import strip_flags
from router.requests import Rejection, _describe, check_message
from router.task_list import MOST_READ, TaskFilter, TaskList
from router.tasks import Task
from router.webhooks import endpoint_problem, keep_body_format

PATH = "/api/v1/task"
ASPECT_RATIO = re.compile(r"[1-9][0-9]{0,3}:[1-9][0-9]{0,3}")
HAS_ASPECT = re.compile("(?:^|\\s)(?:--|\u2014|\u2013)(?:ar|aspect)(?:\\s|$)", re.IGNORECASE)
VARIATION_STRENGTH = {"high_variation": "strong", "low_variation": "subtle"}
"""PiAPI's non-numeric variation indexes: Vary (Strong) and Vary (Subtle)."""
INDEXED = frozenset({TaskType.UPSCALE, TaskType.VARIATION})
SERVED = (
    TaskType.IMAGINE,
    TaskType.DESCRIBE,
    TaskType.BLEND,
    TaskType.UPSCALE,
    TaskType.VARIATION,
    TaskType.REROLL,
    TaskType.OUTPAINT,
    TaskType.PAN,
    TaskType.INPAINT,
)
"""The task types this API takes, PiAPI's names for them (an upscale's HD indexes make
our HD upscales: `HD_UPSCALES`)."""
HD_UPSCALES = {
    "2x": TaskType.UPSCALE_2X,
    "4x": TaskType.UPSCALE_4X,
    "subtle": TaskType.UPSCALE_SUBTLE,
    "creative": TaskType.UPSCALE_CREATIVE,
}
"""PiAPI's `upscale` indexes beyond 1-4: V5's 2x and 4x, V6's (and later) Subtle and
Creative, each our task type of its own."""
UNSERVED_INDEXES = frozenset({"light", "beta"})
"""PiAPI's V4 upscales: no task type of ours."""
EMPTY_PROMPT = "input.prompt is required: imagine needs a prompt besides a mode flag"
PARENT_REFUSED: dict[str, int] = {
    ErrorCode.PARENT_NOT_FOUND: 404,
    ErrorCode.PARENT_NOT_COMPLETED: 409,
}
"""A child whose `origin_task_id` names no task of the caller, or one not completed: the
failed task SUBMIT stores for it, answered with this status (not 200 "success")."""


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    endpoint: str = ""
    secret: str = ""


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    service_mode: str = ""
    webhook_config: WebhookConfig | None = None


class TaskRequest(BaseModel):
    """The body of `POST /api/v1/task`."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    model: str = Field(default=MODEL, description=f"{MODEL!r}, the only model served here")
    task_type: str
    input: dict[str, Any] = Field(default_factory=dict)
    config: TaskConfig = Field(default_factory=TaskConfig)


routes = APIRouter(tags=["tasks"])
ANSWERS: dict[int | str, dict[str, Any]] = {
    code: {"model": Envelope} for code in (200, 400, 401, 404, 408, 409, 413, 429, 503)
}
SUBMIT_ANSWERS: dict[int | str, dict[str, Any]] = {
    **ANSWERS,
    422: {"model": Envelope, "description": idempotency.OPENAPI["responses"]["422"]["description"]},
}


PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_PAGE = MOST_READ
LIST_STATUSES: dict[str, TaskStatus | frozenset[TaskStatus]] = {
    "pending": TaskStatus.QUEUED,
    "processing": TaskStatus.RUNNING,
    "completed": TaskStatus.COMPLETED,
    "failed": frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED}),
    **{
        s.value: s
        for s in TaskStatus
        if s is not TaskStatus.FAILED and s is not TaskStatus.COMPLETED
    },
}
"""`status` of a listing: this API's (as `status` shows it; `failed` takes cancelled tasks
too) or ours (as `meta.status` shows it: `cancelled` alone)."""
LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
        "description": "Which page, from 1.",
    },
    {
        "name": "page_size",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": PAGE_SIZE,
        },
        "description": "Tasks a page.",
    },
    {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(LIST_STATUSES)},
        "description": "Only tasks of this status: `pending`, `processing`, `completed` or "
        "`failed` (cancelled ones included) as `status` shows it, or `queued`, `running` or "
        "`cancelled` as `meta.status` does.",
    },
    {
        "name": "task_type",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": [t.value for t in TaskType]},
        "description": "Only tasks of this type.",
    },
]
"""The listing's query parameters, read on the batcher's thread after the key check (a bad
key answers 401 whatever its query), so declared here for the OpenAPI document."""
TERMINAL = frozenset(s.value for s in TaskStatus if s.terminal)
CANCEL_TEXT = {
    "cancelled": "task {} cancelled",
    "requested": "task {} is processing: its job is being stopped, then it ends cancelled",
    "cancel_unsupported": "task {} runs on: its backend cannot stop the job; the task ends "
    "cancelled when the job does",
    "already_finished": "task {} had already ended: nothing to cancel",
}
"""DELETE's `message`, by `meta.cancel_outcome`."""


def _invalid(message: str, code: str = ErrorCode.INVALID_TASK) -> ApiError:
    return ApiError(400, code, message)


def _index(task_type: TaskType, value: Any) -> dict[str, Any]:
    """A child's `index` as our input: 1 to 4, or a variation's strength."""
    if task_type is TaskType.VARIATION and isinstance(value, str) and value in VARIATION_STRENGTH:
        return {"strength": VARIATION_STRENGTH[value]}
    digit = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if digit not in ("1", "2", "3", "4"):
        raise _invalid(f"input.index must be 1, 2, 3 or 4 for {task_type.value}")
    return {"index": int(digit)}


def _describe_input(given: dict[str, Any]) -> None:
    """PiAPI's `image_url` as our `image` (our own `image` or `base64` as they are)."""
    if "image_url" in given:
        given["image"] = given.pop("image_url")
    if not any(given.get(name) for name in ("image", "base64")):
        raise _invalid("describe needs input.image_url, the image to describe")


def _blend_input(given: dict[str, Any]) -> None:
    """PiAPI's `image_urls` and `dimension` as our `images` and `dimensions`."""
    if "image_urls" in given:
        given["images"] = given.pop("image_urls")
    images = given.get("images")
    if not isinstance(images, list) or not 2 <= len(images) <= MAX_BLEND_IMAGES:
        raise _invalid(f"blend needs input.image_urls, 2 to {MAX_BLEND_IMAGES} image URLs")
    if "dimension" in given:
        dimension = given.pop("dimension")
        given["dimensions"] = dimension.upper() if isinstance(dimension, str) else dimension


def to_message(request: TaskRequest, owner: str) -> dict[str, Any]:
    """Our task message for a task API request (`check_message` checks the rest)."""
    if request.model != MODEL:
        raise _invalid(f"model must be {MODEL!r}")
    try:
        task_type = TaskType(request.task_type)
        if task_type not in SERVED:
            raise ValueError(task_type)
    except ValueError:
        known = ", ".join(t.value for t in SERVED)
        raise _invalid(
            f"task_type {request.task_type[:40]!r} is not one of {known}",
            ErrorCode.UNKNOWN_TASK_TYPE,
        ) from None
    given = dict(request.input)
    prompt = given.pop("prompt", "")
    mode = given.pop("process_mode", None)
    named = given.get("index") if task_type is TaskType.UPSCALE else None
    if isinstance(named, str) and named in UNSERVED_INDEXES:
        raise _invalid(f"input.index {named} (a V4 upscale) is not served")
    if isinstance(named, str) and named in HD_UPSCALES:
        task_type = HD_UPSCALES[given.pop("index")]
    message: dict[str, Any] = {"owner": owner, "task_type": task_type.value}
    if task_type is TaskType.DESCRIBE:
        _describe_input(given)
    elif task_type is TaskType.BLEND:
        _blend_input(given)
    elif task_type is TaskType.IMAGINE:
        if isinstance(prompt, str) and not strip_flags(prompt):  # else check_message says
            raise _invalid(EMPTY_PROMPT)
        ratio = given.pop("aspect_ratio", None)
        if ratio not in (None, ""):
            if not isinstance(ratio, str) or not ASPECT_RATIO.fullmatch(ratio):
                raise _invalid("input.aspect_ratio must look like W:H, e.g. 16:9")
            if isinstance(prompt, str) and not HAS_ASPECT.search(prompt):
                prompt = f"{prompt} --ar {ratio}"
    else:
        origin = given.pop("origin_task_id", None)
        if not origin:
            raise _invalid(f"{task_type.value} needs input.origin_task_id")
        message["parent_id"] = origin
        if task_type in INDEXED or "index" in given:
            given.update(_index(task_type, given.pop("index", None)))
        if "zoom_ratio" in given:
            given["zoom"] = str(given.pop("zoom_ratio"))
        if "mask" in given:
            given["mask_base64"] = given.pop("mask")
    message["input"] = {**given, "prompt": prompt, "process_mode": mode or ""}
    hook = request.config.webhook_config
    if hook is not None and hook.endpoint:
        message["webhook"] = {"endpoint": hook.endpoint, "secret": hook.secret, "progress": True}
    return message


def submit(
    router: Router, request: TaskRequest, owner: str, named: idempotency.Named | None = None
) -> Submission:
    """Validate one task as the client does (`Client.submit`), to be routed and answered
    with its batch; `named`: its Idempotency-Key, which gives its id."""
    hook = request.config.webhook_config
    if hook is not None and hook.endpoint:
        allowed = router.settings.webhook_allowed_networks
        problem = endpoint_problem(hook.endpoint, allowed)
        if problem:
            raise _invalid(f"config.webhook_config.endpoint: {problem}")
    task_id = named.task_id if named else None
    checked = check_message(to_message(request, owner), router.settings, task_id)
    if isinstance(checked, Rejection):
        raise _invalid(checked.message, checked.code)
    if checked.webhook is not None:  # told in this API's body, not our task record
        ttl = router.settings.task_ttl_seconds
        keep_body_format(router.redis, router.keys, owner, checked.id, HOOK_FORMAT, ttl)
    return Submission(checked, _created, named)


def _created(task: Task) -> JSONResponse:
    """A stored submission's answer: the task, or, for a child refused for its parent, the
    error with the failed task in `data` (a retry with its Idempotency-Key reads the same
    record, so it gets the same answer)."""
    error = task.error
    status = PARENT_REFUSED.get(error.code) if error is not None else None
    if error is None or status is None:
        return ok(task)
    return refused(ApiError(status, error.code, error.message), task)


@routes.post(
    PATH,
    summary="Create a task",
    responses=SUBMIT_ANSWERS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}
            },
        },
        "parameters": [idempotency.PARAMETER],
    },
)
async def create_task(request: Request, key: Caller) -> JSONResponse:
    """Submit a Midjourney task: `imagine`, or a child of a completed task. Send an
    `Idempotency-Key` so that a retry returns this task rather than running another."""
    raw = await key.body()
    keys = request.headers.getlist(idempotency.HEADER)
    return await key.run(_create, request.app.state.router, raw, keys)


def _create(key: ApiKey, router: Router, raw: bytes, keys: Sequence[str] = ()) -> Submission:
    """`keys`: the request's Idempotency-Key header values (checked first)."""
    given = idempotency.key_of(keys)
    data = parse_json(raw)
    try:
        body = TaskRequest.model_validate(data)
    except ValidationError as e:
        raise _invalid(_describe(e)) from None
    ttl = router.settings.task_ttl_seconds
    return submit(
        router,
        body,
        key.owner,
        idempotency.name(router.keys, key.owner, given, PATH, data, ttl, router.idempotency_secret),
    )


def _own_task_id(task_id: str) -> str:
    if not ID_RE.fullmatch(task_id):
        raise ApiError(404, "task_not_found", "no such task")
    return task_id


@routes.get(PATH + "/{task_id}", summary="Get a task", responses=ANSWERS)
async def get_task(request: Request, task_id: str, key: Caller) -> JSONResponse:
    """The task's state; another owner's task answers as an unknown one."""
    return await key.run(_get, request.app.state.router, task_id)


def _get(key: ApiKey, router: Router, task_id: str) -> JSONResponse:
    task = router.tasks.get(_own_task_id(task_id), key.owner)
    if task is None:
        raise ApiError(404, "task_not_found", "no such task")
    return ok(task)


@routes.get(
    PATH,
    summary="List your tasks",
    responses={**ANSWERS, 200: {"model": TaskListEnvelope}},
    openapi_extra={"parameters": LIST_PARAMETERS},
)
async def list_tasks(request: Request, key: Caller) -> JSONResponse:
    """The caller's own tasks, newest first, a page at a time (`has_more`: ask for the
    next page), optionally of one `status` and one `task_type`."""
    query = {
        name: request.query_params.get(name)
        for name in ("page", "page_size", "status", "task_type")
    }
    return await key.run(_list, request.app.state.router, query)


def _list(key: ApiKey, router: Router, query: dict[str, str | None]) -> JSONResponse:
    page = _whole(query, "page", 1, MAX_PAGE)
    size = _whole(query, "page_size", PAGE_SIZE, MAX_PAGE_SIZE)
    which = TaskFilter(owner=key.owner, status=_status(query["status"]), task_type=_type(query))
    found = TaskList(router.tasks).page(which, size, (page - 1) * size)
    data = TaskPageOut(
        tasks=[task_out(t) for t in found.tasks],
        page=page,
        page_size=size,
        has_more=found.more,
        truncated=found.truncated,
    )
    body = TaskListEnvelope(code=200, data=data, message="success")
    return JSONResponse(body.model_dump(mode="json"))


def _bad_query(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _whole(query: dict[str, str | None], name: str, default: int, most: int) -> int:
    given = query[name]
    if given is None or given == "":
        return default
    if not (given.isascii() and given.isdigit() and len(given) <= 9 and 1 <= int(given) <= most):
        raise _bad_query(f"{name} must be a whole number from 1 to {most}")
    return int(given)


def _status(given: str | None) -> TaskStatus | frozenset[TaskStatus] | None:
    if not given:
        return None
    if given not in LIST_STATUSES:
        raise _bad_query(f"status must be one of {', '.join(LIST_STATUSES)}")
    return LIST_STATUSES[given]


def _type(query: dict[str, str | None]) -> TaskType | None:
    given = query["task_type"]
    if not given:
        return None
    try:
        return TaskType(given)
    except ValueError:
        known = ", ".join(t.value for t in TaskType)
        raise _bad_query(f"task_type {given[:40]!r} is not one of {known}") from None


@routes.delete(PATH + "/{task_id}", summary="Cancel a task", responses=ANSWERS)
async def cancel_task(request: Request, task_id: str, key: Caller) -> JSONResponse:
    """Cancel a task; the answer is the task after the call, `meta.cancel_outcome` saying
    what happened: `cancelled` (it has ended cancelled), `requested` (it is processing: its
    worker stops the job and it ends cancelled shortly), `cancel_unsupported` (its backend
    cannot stop the job, which runs to its end; the task then ends cancelled) or
    `already_finished` (it had ended: nothing was done)."""
    return await key.run(_cancel, request.app.state.router, task_id)


def _cancel(key: ApiKey, router: Router, task_id: str) -> JSONResponse:
    before, status, outcome = router.tasks.cancel_seen(key.owner, _own_task_id(task_id))
    router.apply(outcome)
    task = router.tasks.get(task_id, key.owner) if status else None
    if task is None:
        raise ApiError(404, "task_not_found", "no such task")
    verdict = cancel_outcome(before, task)
    return ok(task, CANCEL_TEXT[verdict].format(task.id), cancel_outcome=verdict)


def cancel_outcome(before: str, task: Task) -> str:
    """What a cancel did, from the status the task had before it and the task after it."""
    if before in TERMINAL:
        return "already_finished"
    if task.status is TaskStatus.CANCELLED:
        return "cancelled"
    if task.status.terminal:  # it ended otherwise before the cancel took hold
        return "already_finished"
    if task.cancel_outcome == "cancel_unsupported":
        return "cancel_unsupported"
    return "requested"
