"""The unified task API (GoAPI / PiAPI shape) on the router's own rules.

`POST /api/v1/task` turns `{model, task_type, input, config}` into our task message and
sends it through `check_message` and `Router.submit_many`: the validation, error codes
and SUBMIT script of the intake list and the Python client. `GET` and `DELETE
/api/v1/task/{task_id}` read and cancel the caller's own tasks; another owner's task id
answers exactly as an unknown one does (404).

Their inputs as ours: `imagine` takes `prompt`, `process_mode` and `aspect_ratio`
(added to the prompt as `--ar W:H`, which is how Midjourney takes it); the children
(`upscale`, `variation`, `reroll`, `outpaint`, `pan`, `inpaint`) take `origin_task_id`
(our `parent_id`) and `index` (1 to 4), outpaint's `zoom_ratio` (our `zoom`), inpaint's
`mask` (our `mask_base64`); other input fields travel to the driver as they are.
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
from router.api.envelope import HOOK_FORMAT, MODEL, ApiError, Envelope, ok
from router.apikeys import ApiKey
from router.core import Router
from router.models import ID_RE, ErrorCode, TaskType
from router.requests import Rejection, _describe, check_message
from router.webhooks import endpoint_problem, keep_body_format

PATH = "/api/v1/task"
ASPECT_RATIO = re.compile(r"[1-9][0-9]{0,3}:[1-9][0-9]{0,3}")
HAS_ASPECT = re.compile("(?:^|\\s)(?:--|\u2014|\u2013)(?:ar|aspect)(?:\\s|$)", re.IGNORECASE)
VARIATION_STRENGTH = {"high_variation": "strong", "low_variation": "subtle"}
"""PiAPI's non-numeric variation indexes: Vary (Strong) and Vary (Subtle)."""
INDEXED = frozenset({TaskType.UPSCALE, TaskType.VARIATION})
SERVED = (
    TaskType.IMAGINE,
    TaskType.UPSCALE,
    TaskType.VARIATION,
    TaskType.REROLL,
    TaskType.OUTPAINT,
    TaskType.PAN,
    TaskType.INPAINT,
)
"""The task types this API takes, PiAPI's names for them."""


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

    model: str
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
    message: dict[str, Any] = {"owner": owner, "task_type": task_type.value}
    if task_type is TaskType.IMAGINE:
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
    return Submission(checked, ok, named)


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
        router, body, key.owner, idempotency.name(router.keys, key.owner, given, PATH, data, ttl)
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


@routes.delete(PATH + "/{task_id}", summary="Cancel a task", responses=ANSWERS)
async def cancel_task(request: Request, task_id: str, key: Caller) -> JSONResponse:
    """Cancel a task: a pending one ends now, a processing one once its job is stopped
    (or runs to its end where the backend cannot stop it: `meta.cancel_outcome`)."""
    return await key.run(_cancel, request.app.state.router, task_id)


def _cancel(key: ApiKey, router: Router, task_id: str) -> JSONResponse:
    status, outcome = router.tasks.cancel(key.owner, _own_task_id(task_id))
    router.apply(outcome)
    task = router.tasks.get(task_id, key.owner) if status else None
    if task is None:
        raise ApiError(404, "task_not_found", "no such task")
    return ok(task)
