"""The midjourney-proxy API on the router's own rules: what relays such as new-api, chat
front ends and scripts already speak to novicezk/midjourney-proxy and
trueai-org/midjourney-proxy.

`POST /mj/submit/imagine`, `/mj/submit/describe` (an image's prompts), `/mj/submit/blend`
(2 to 5 images), `/mj/submit/shorten` (a prompt's key words), `/mj/submit/video` (a video
from an image, or with `action` `extend` a clip of one made longer: trueai's bodies,
`router.api.mjapi_jobs`), `/mj/submit/action` (a button's `customId`:
`router.api.mjapi_buttons`), `/mj/submit/modal` (the prompt or mask a custom zoom or vary
region waits for), `/mj/submit/change` and `/mj/submit/simple-change` (the older form),
`GET /mj/task/{id}/fetch`, `POST /mj/task/list-by-condition` and
`POST /mj/task/{id}/cancel`; the same under `/mj-fast`, `/mj-relax` and `/mj-turbo`, which
set a new task's mode (trueai `src/Midjourney.API/Controllers/SubmitController.cs:37-40`,
`TaskController.cs:34-37`). Every submission becomes our task message and goes through
`check_message` and `Router.submit_many`, as the intake list's and the client's do.
`notifyHook` is the task's webhook, POSTed this API's task JSON when the task starts and
when it ends.

Answers are the servers': a submission `{code, description, result, properties}` with code
1 (submitted), 22 (waiting for a free account), 21 (an action waiting for its modal) or an
error code, HTTP 200 even for a refused prompt as both servers answer (novicezk
`SubmitController.java:61-62`, trueai `SubmitController.cs:137-139`); a body that is not
JSON, or not the fields' types, 400 with code 4; an unknown task 404 with code 3 (trueai
`SubmitController.cs:500`), and another owner's task id answers exactly so. Our stable error
code is `properties.errorCode` in every refusal.

An `Idempotency-Key` header names a submission, on every submit route
(`router.api.idempotency`): a retry with the same key answers the first attempt's task (an
action waiting for its modal: the same id, code 21) and never makes a second; the same key
on another route or body is 422, code 4.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from router.api import idempotency
from router.api import mjapi_buttons as buttons
from router.api import mjapi_jobs as jobs
from router.api import mjapi_models as mj
from router.api.auth import Key, MjCaller
from router.api.batcher import Submission
from router.api.body import parse_json
from router.api.envelope import ApiError
from router.apikeys import ApiKey
from router.core import Router
from router.models import ID_RE, ErrorCode, Mode, TaskStatus, TaskType
from router.requests import Rejection, _describe, check_message, new_task_id
from router.scripts import text
from router.tasks import Task
from router.webhooks import endpoint_problem, keep_body_format

PREFIXES = {"/mj-fast": Mode.FAST, "/mj-relax": Mode.RELAX, "/mj-turbo": Mode.TURBO}
"""Path prefixes that choose a new task's mode (the routes are the same under each; a
child keeps its parent's)."""
"""Suffix under an owner's base key: an action waiting for its modal, by its task id."""
NOT_FOUND = ApiError(404, "task_not_found", "task not found")
MAX_IDS = 1000
"""Most ids one `list-by-condition` reads."""
ROUTED_NOT_FOUND = frozenset(
    {
        ErrorCode.NO_ACCOUNT,
        ErrorCode.NO_RELAX_ACCOUNT,
        ErrorCode.PARENT_NOT_FOUND,
        ErrorCode.NO_RELAX_VIDEO_ACCOUNT,
        ErrorCode.NO_FAST_HOURS,
    }
)
"""Routing failures answered with code 3, as novicezk answers "no account instance"
(`service/TaskServiceImpl.java:31`) and trueai a video no account can run (relax video, HD:
`src/Midjourney.Services/TaskService.cs:466-469, 486-490`)."""


def is_mj_path(path: str) -> bool:
    """Whether a request path is this API's (its refusals then take its shape)."""
    return path.startswith("/mj/") or any(path.startswith(p + "/mj/") for p in PREFIXES)


def answer(
    code: int,
    description: str,
    result: str | None = None,
    properties: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A submission's answer (novicezk `result/SubmitResultVO.java:14-24`)."""
    body = {
        "code": code,
        "description": description,
        "result": result,
        "properties": properties or {},
    }
    return JSONResponse(body, status_code=status, headers=headers)


def refused(e: ApiError) -> JSONResponse:
    """An ApiError in this API's shape: an unknown task is code 3, 429 code 23 (try
    later), 5xx code 9, any other refusal (an unknown path too) code 4; the HTTP status
    and headers as they are. Code 3 is kept for tasks: new-api takes it from a submission
    as "no account instance" and may disable the channel (`relay/relay-mj.go:548-556`)."""
    code = mj.QUEUE_REJECTED if e.status == 429 else mj.VALIDATION_ERROR
    if e.code == NOT_FOUND.code:
        code = mj.NOT_FOUND
    elif e.status >= 500:
        code = mj.FAILURE
    return answer(code, e.message, None, {"errorCode": e.code}, e.status, e.headers)


B = TypeVar("B", bound=BaseModel)
routes = APIRouter(tags=["midjourney-proxy"])


@dataclass(frozen=True)
class Asked:
    """A submission as its route hands it to the batcher: the body, the path (a mode prefix
    included) and the request's Idempotency-Key header values."""

    raw: bytes
    path: str
    keys: tuple[str, ...]

    @classmethod
    async def of(cls, request: Request, key: Key) -> Asked:
        raw = await key.body()
        keys = tuple(request.headers.getlist(idempotency.HEADER))
        return cls(raw, request.scope["path"], keys)

    def read(
        self, router: Router, owner: str, model: type[B]
    ) -> tuple[B, idempotency.Named | None]:
        """The body as `model` (`_read`) and the Idempotency-Key naming it, or ApiError 400
        (`invalid_idempotency_key` first)."""
        given = idempotency.key_of(self.keys)
        data = parse_json(self.raw)
        ttl = router.settings.task_ttl_seconds
        secret = router.idempotency_secret
        named = idempotency.name(router.keys, owner, given, self.path, data, ttl, secret)
        return _valid(data, model), named


def _read(raw: bytes, model: type[B]) -> B:
    """The body as `model`, or ApiError 400 (`invalid_json`, or `invalid_task` for a field
    of the wrong type)."""
    return _valid(parse_json(raw), model)


def _valid(data: Any, model: type[B]) -> B:
    if not isinstance(data, dict):
        raise ApiError(400, ErrorCode.INVALID_JSON, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(400, ErrorCode.INVALID_TASK, _describe(e)) from None


def _mode(request: Request) -> Mode | None:
    path: str = request.scope["path"]
    return next((m for p, m in PREFIXES.items() if path.startswith(p + "/")), None)


def _invalid(description: str, code: str = ErrorCode.INVALID_TASK) -> JSONResponse:
    return answer(mj.VALIDATION_ERROR, description, None, {"errorCode": code})


def _refuse(refused: jobs.Refused) -> JSONResponse:
    return answer(refused.code, refused.description, None, {"errorCode": refused.error_code})


def _message(
    owner: str, task_type: TaskType, body: mj.Body, input_: dict[str, Any], parent: str = ""
) -> dict[str, Any]:
    """Our task message: the body's `state` kept in the input, `notifyHook` as webhook."""
    message: dict[str, Any] = {"owner": owner, "task_type": task_type.value, "input": input_}
    if parent:
        message["parent_id"] = parent
    if body.state is not None:
        input_["state"] = body.state
    if body.notifyHook:
        message["webhook"] = {"endpoint": body.notifyHook, "progress": True}
    return message


def submit(
    router: Router,
    message: dict[str, Any],
    task_id: str | None = None,
    named: idempotency.Named | None = None,
) -> JSONResponse | Submission:
    """Validate one task as the client does, to be routed with its batch and answered as
    the servers do (`_submitted`); its id is `task_id`, else the one its Idempotency-Key
    (`named`) gives."""
    hook = message.get("webhook")
    if hook is not None:
        problem = endpoint_problem(hook["endpoint"], router.settings.webhook_allowed_networks)
        if problem:
            return _invalid(f"notifyHook: {problem}")
    if task_id is None and named is not None:
        task_id = named.task_id
    checked = check_message(message, router.settings, task_id)
    if isinstance(checked, Rejection):
        return _invalid(checked.message, checked.code)
    if checked.webhook is not None:  # the notifyHook is told in this API's task JSON
        ttl = router.settings.task_ttl_seconds
        keep_body_format(router.redis, router.keys, checked.owner, checked.id, mj.HOOK_FORMAT, ttl)
    return Submission(checked, _submitted, named)


def _submitted(task: Task) -> JSONResponse:
    """A stored submission's answer: refused, in the owner's line, or placed."""
    if task.error is not None:
        code = mj.NOT_FOUND if task.error.code in ROUTED_NOT_FOUND else mj.VALIDATION_ERROR
        return answer(code, task.error.message, None, {"errorCode": task.error.code})
    properties = {
        "status": mj.status(task),
        "processMode": task.effective_mode.value if task.effective_mode else None,
        "fallbackReason": task.fallback_reason,
    }
    if task.account_id is None and task.status is TaskStatus.QUEUED:
        # Waiting in the owner's line for a free account (novicezk's "in queue": new-api
        # takes it as submitted, `relay/relay-mj.go:599-603`).
        return answer(mj.IN_QUEUE, "In queue", task.id, properties)
    return answer(mj.SUCCESS, "Submit success", task.id, properties)


def _parent(router: Router, owner: str, task_id: str) -> Task | JSONResponse:
    """The caller's own task that a child acts on; 404 as unknown when it is not theirs;
    refused unless it has succeeded (novicezk `SubmitController.java:121-127`)."""
    if not ID_RE.fullmatch(task_id):
        raise NOT_FOUND
    task = router.tasks.get(task_id, owner)
    if task is None:
        raise NOT_FOUND
    if task.status is not TaskStatus.COMPLETED:
        return _invalid(mj.STATE_TEXT, ErrorCode.PARENT_NOT_COMPLETED)
    return task


def _child(
    router: Router,
    owner: str,
    body: mj.Body,
    press: buttons.Press,
    named: idempotency.Named | None,
) -> JSONResponse | Submission:
    parent = _parent(router, owner, press.parent_id)
    if isinstance(parent, JSONResponse):
        return parent
    input_ = {**press.input, **buttons.inherited(press.task_type, parent), "prompt": ""}
    message = _message(owner, press.task_type, body, input_, press.parent_id)
    return submit(router, message, named=named)


@routes.post("/mj/submit/imagine", summary="Submit an imagine", openapi_extra=idempotency.OPENAPI)
async def imagine(request: Request, key: MjCaller) -> JSONResponse:
    """Imagine `prompt`; the path's prefix (`/mj-fast`...) or the prompt's flag sets the mode."""
    asked = await Asked.of(request, key)
    return await key.run(_imagine, request.app.state.router, asked, _mode(request))


def _imagine(
    key: ApiKey, router: Router, asked: Asked, mode: Mode | None
) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.ImagineBody)
    if not body.prompt.strip():
        return _invalid("prompt is required")
    if body.base64Array or body.base64:
        return _invalid("image prompts (base64, base64Array) are not supported")
    input_: dict[str, Any] = {"prompt": body.prompt.strip(), "process_mode": mode or ""}
    return submit(router, _message(key.owner, TaskType.IMAGINE, body, input_), named=named)


@routes.post(
    "/mj/submit/action",
    summary="Press a button of a finished task",
    openapi_extra=idempotency.OPENAPI,
)
async def action(request: Request, key: MjCaller) -> JSONResponse:
    """Run the button `customId` of task `taskId` (or of the task its hash names). Custom
    zoom and vary region answer code 21 and wait for `/mj/submit/modal`."""
    asked = await Asked.of(request, key)
    return await key.run(_action, request.app.state.router, asked)


def _action(key: ApiKey, router: Router, asked: Asked) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.ActionBody)
    pressed = buttons.press(body.customId)
    if pressed is None:
        return _invalid("customId is not a button this server runs")
    if body.taskId:
        pressed = buttons.Press(pressed.task_type, body.taskId, pressed.input, pressed.modal)
    if pressed.modal:
        return _hold_modal(router, key.owner, body, pressed, named)
    return _child(router, key.owner, body, pressed, named)


def _hold_modal(
    router: Router,
    owner: str,
    body: mj.Body,
    press: buttons.Press,
    named: idempotency.Named | None,
) -> JSONResponse:
    """Keep the pressed button until its modal comes, under the id its task will have (the
    one its Idempotency-Key gives, if any: a retry answers that id again, holding nothing new)."""
    parent = _parent(router, owner, press.parent_id)
    if isinstance(parent, JSONResponse):
        return parent
    if named is not None and not idempotency.first_uses(router.redis, [named])[0]:
        raise idempotency.reused()
    task_id = named.task_id if named else new_task_id()
    held = {
        "task_type": press.task_type.value,
        "parent_id": press.parent_id,
        "input": press.input,
        "state": body.state,
        "notifyHook": body.notifyHook,
        "submit_ms": round(time.time() * 1000),
    }
    ttl = router.settings.task_ttl_seconds
    router.redis.set(router.keys.modal(owner, task_id), json.dumps(held), ex=ttl, nx=bool(named))
    return answer(mj.EXISTED, "Waiting for window confirm", task_id, {"status": "MODAL"})


@routes.post(
    "/mj/submit/modal",
    summary="Confirm a custom zoom or vary region",
    openapi_extra=idempotency.OPENAPI,
)
async def modal(request: Request, key: MjCaller) -> JSONResponse:
    """The prompt (custom zoom: with `--zoom`) or mask (vary region: `maskBase64`) that the
    action answered with code 21 waits for; `taskId` is that answer's `result`."""
    asked = await Asked.of(request, key)
    return await key.run(_confirm, request.app.state.router, asked)


def _confirm(key: ApiKey, router: Router, asked: Asked) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.ModalBody)
    owner = key.owner
    if not ID_RE.fullmatch(body.taskId):
        raise NOT_FOUND
    stored = router.redis.get(router.keys.modal(owner, body.taskId))
    if stored is None:
        raise NOT_FOUND
    held = json.loads(text(stored))
    task_type = TaskType(held["task_type"])
    input_: dict[str, Any] = dict(held["input"])
    if task_type is TaskType.INPAINT:
        if not body.maskBase64:
            return _invalid("maskBase64 is required for a vary region")
        input_["mask_base64"] = body.maskBase64
    parent = _parent(router, owner, str(held["parent_id"]))
    if isinstance(parent, JSONResponse):
        return parent
    input_["prompt"] = body.prompt or parent.prompt or ""
    input_.update(buttons.inherited(task_type, parent))
    first = mj.Body(state=held.get("state"), notifyHook=held.get("notifyHook"))
    message = _message(owner, task_type, first, input_, parent.id)
    return submit(router, message, body.taskId, named)  # a task id of its own: the held one


@routes.post(
    "/mj/submit/change",
    summary="Upscale, vary or reroll (the older form)",
    openapi_extra=idempotency.OPENAPI,
)
async def change(request: Request, key: MjCaller) -> JSONResponse:
    """`{action: UPSCALE | VARIATION | REROLL, index, taskId}` (novicezk `dto/
    SubmitChangeDTO.java:15-23`)."""
    asked = await Asked.of(request, key)
    return await key.run(_change_body, request.app.state.router, asked)


def _change_body(key: ApiKey, router: Router, asked: Asked) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.ChangeBody)
    return _change(router, key.owner, body, (body.taskId, body.action, body.index), named)


@routes.post(
    "/mj/submit/simple-change",
    summary="Upscale, vary or reroll: `<taskId> U1`",
    openapi_extra=idempotency.OPENAPI,
)
async def simple_change(request: Request, key: MjCaller) -> JSONResponse:
    """`{content: "<taskId> U1"}`: U1-U4, V1-V4 or R (novicezk `dto/SubmitSimpleChangeDTO.
    java:14-15`)."""
    asked = await Asked.of(request, key)
    return await key.run(_simple_change, request.app.state.router, asked)


def _simple_change(key: ApiKey, router: Router, asked: Asked) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.SimpleChangeBody)
    parsed = mj.simple_change(body.content)
    if parsed is None:
        return _invalid("content must be '<taskId> U1' to U4, V1 to V4, or R")
    return _change(router, key.owner, body, parsed, named)


def _change(
    router: Router,
    owner: str,
    body: mj.Body,
    change: tuple[str, str, int | None],
    named: idempotency.Named | None,
) -> JSONResponse | Submission:
    """`change`: the task id, UPSCALE, VARIATION or REROLL, and the index."""
    task_id, kind, index = change
    if not task_id:
        return _invalid("taskId is required")
    task_type = mj.CHANGES.get(kind)
    if task_type is None:
        return _invalid("action must be UPSCALE, VARIATION or REROLL")
    input_: dict[str, Any] = {}
    if task_type is not TaskType.REROLL:
        if index not in (1, 2, 3, 4):
            return _invalid("index must be 1, 2, 3 or 4")
        input_["index"] = index
    press = buttons.Press(task_type, task_id, input_)
    return _child(router, owner, body, press, named)


@routes.post("/mj/submit/describe", summary="Describe an image", openapi_extra=idempotency.OPENAPI)
async def describe(request: Request, key: MjCaller) -> JSONResponse:
    """Four prompts for the image `base64` (a data URL or bare base64) or `link` (trueai
    `SubmitDescribeDTO.cs`); the path's prefix sets the mode."""
    asked = await Asked.of(request, key)
    return await key.run(_describe_image, request.app.state.router, asked, _mode(request))


def _describe_image(
    key: ApiKey, router: Router, asked: Asked, mode: Mode | None
) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.DescribeBody)
    made = jobs.describe_input(body)
    if isinstance(made, jobs.Refused):
        return _refuse(made)
    input_ = {**made, "process_mode": mode or ""}
    return submit(router, _message(key.owner, TaskType.DESCRIBE, body, input_), named=named)


@routes.post("/mj/submit/blend", summary="Blend 2 to 5 images", openapi_extra=idempotency.OPENAPI)
async def blend(request: Request, key: MjCaller) -> JSONResponse:
    """A grid blending `base64Array` (2 to 5 images: data URLs, bare base64 or URLs) in
    `dimensions` PORTRAIT, SQUARE (the default) or LANDSCAPE (trueai `SubmitBlendDTO.cs`);
    the path's prefix sets the mode."""
    asked = await Asked.of(request, key)
    return await key.run(_blend, request.app.state.router, asked, _mode(request))


def _blend(
    key: ApiKey, router: Router, asked: Asked, mode: Mode | None
) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.BlendBody)
    made = jobs.blend_input(body)
    if isinstance(made, jobs.Refused):
        return _refuse(made)
    input_ = {**made, "process_mode": mode or ""}
    return submit(router, _message(key.owner, TaskType.BLEND, body, input_), named=named)


@routes.post("/mj/submit/shorten", summary="Shorten a prompt", openapi_extra=idempotency.OPENAPI)
async def shorten(request: Request, key: MjCaller) -> JSONResponse:
    """`prompt`'s key words, as prompts (trueai takes an imagine's body,
    `SubmitController.cs:345-376`); the path's prefix or the prompt's flag sets the mode."""
    asked = await Asked.of(request, key)
    return await key.run(_shorten, request.app.state.router, asked, _mode(request))


def _shorten(
    key: ApiKey, router: Router, asked: Asked, mode: Mode | None
) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.ShortenBody)
    input_: dict[str, Any] = {"prompt": (body.prompt or "").strip(), "process_mode": mode or ""}
    return submit(router, _message(key.owner, TaskType.SHORTEN, body, input_), named=named)


@routes.post(
    "/mj/submit/video",
    summary="Make a video from an image, or extend one",
    openapi_extra=idempotency.OPENAPI,
)
async def video(request: Request, key: MjCaller) -> JSONResponse:
    """A video (trueai `SubmitVideoDTO.cs`): `prompt` and the start `image` (a URL or
    base64), optionally `endImage`, `motion` low or high, `loop`, `videoType`
    `vid_1.1_i2v_480` (SD) or `vid_1.1_i2v_720` (HD), `batchSize` 1, 2 or 4; the path's
    prefix or the prompt's flag sets the mode. With `action` `extend`, `taskId` and `index`
    (0-3): that clip of the video `taskId` made longer, on its account."""
    asked = await Asked.of(request, key)
    return await key.run(_video, request.app.state.router, asked, _mode(request))


def _video(
    key: ApiKey, router: Router, asked: Asked, mode: Mode | None
) -> JSONResponse | Submission:
    body, named = asked.read(router, key.owner, mj.VideoBody)
    refused = jobs.video_refusal(body)
    if refused is not None:
        return _refuse(refused)
    prompt = (body.prompt or "").strip()
    if not jobs.extends(body):
        input_ = {**jobs.video_input(body), "prompt": prompt, "process_mode": mode or ""}
        return submit(router, _message(key.owner, TaskType.VIDEO, body, input_), named=named)
    parent = _parent(router, key.owner, (body.taskId or "").strip())
    if isinstance(parent, JSONResponse):
        return parent
    made = jobs.extend_input(body)
    if isinstance(made, jobs.Refused):
        return _refuse(made)
    message = _message(
        key.owner, TaskType.VIDEO_EXTEND, body, {**made, "prompt": prompt}, parent.id
    )
    return submit(router, message, named=named)


@routes.post("/mj/submit/{kind}", summary="Submissions this server does not run")
async def unsupported(kind: str, key: MjCaller) -> JSONResponse:
    """Uploads, face swaps, edits...: refused with code 4 (after the key check)."""
    return await key.run(_unsupported, kind)


def _unsupported(key: ApiKey, kind: str) -> JSONResponse:
    return _invalid(f"/mj/submit/{kind[:40]} is not served here", "unsupported")


@routes.get("/mj/task/{task_id}/fetch", summary="A task")
async def fetch(request: Request, task_id: str, key: MjCaller) -> JSONResponse:
    """The caller's task as a midjourney-proxy task (status MODAL while an action waits
    for its modal); another owner's is unknown (404)."""
    return await key.run(_fetch, request.app.state.router, task_id)


def _fetch(key: ApiKey, router: Router, task_id: str) -> JSONResponse:
    found = _tasks(router, key.owner, [task_id])
    if not found:
        raise NOT_FOUND
    return JSONResponse(found[0])


@routes.post("/mj/task/list-by-condition", summary="Tasks by id")
@routes.post("/mj/task/list-by-ids", include_in_schema=False)  # trueai's alias, :190
async def list_by_condition(request: Request, key: MjCaller) -> JSONResponse:
    """The caller's tasks among `ids` (unknown and other owners' ids are left out, as the
    servers leave out ids they do not have: trueai `TaskController.cs:189-206`)."""
    raw = await key.body()
    return await key.run(_list, request.app.state.router, raw)


def _list(key: ApiKey, router: Router, raw: bytes) -> JSONResponse:
    body = _read(raw, mj.ConditionBody)
    ids = [i.strip() for i in body.ids or []]
    if len(ids) > MAX_IDS:
        raise ApiError(400, ErrorCode.INVALID_TASK, f"ids holds more than {MAX_IDS} ids")
    return JSONResponse(_tasks(router, key.owner, ids))


def _tasks(router: Router, owner: str, ids: list[str]) -> list[dict[str, Any]]:
    """The owner's tasks among `ids` as task JSON: tasks, and actions still waiting for
    their modal (one round trip when every id has a record)."""
    wanted = list(dict.fromkeys(i for i in ids if ID_RE.fullmatch(i)))
    if not wanted:
        return []
    records = router.tasks.get_many([(owner, task_id) for task_id in wanted])
    missing = [task_id for task_id, task in zip(wanted, records, strict=True) if task is None]
    held: dict[str, bytes | str] = {}
    if missing:  # actions waiting for their modal have no record yet: a second round trip
        modals = router.redis.mget([router.keys.modal(owner, t) for t in missing])
        held = {t: m for t, m in zip(missing, modals, strict=True) if m}
    found: list[dict[str, Any]] = []
    for task_id, task in zip(wanted, records, strict=True):
        if task is not None:
            found.append(mj.task_json(task))
        elif task_id in held:
            found.append(mj.modal_json(task_id, json.loads(text(held[task_id]))))
    return found


@routes.post("/mj/task/{task_id}/cancel", summary="Cancel a task")
async def cancel(request: Request, task_id: str, key: MjCaller) -> JSONResponse:
    """Cancel the caller's task: it ends FAILURE (`failReason` cancelled), as trueai fails
    a cancelled task (`TaskController.cs:86-124`); a running one once its job is stopped."""
    return await key.run(_cancel, request.app.state.router, task_id)


def _cancel(key: ApiKey, router: Router, task_id: str) -> JSONResponse:
    if not ID_RE.fullmatch(task_id):
        raise NOT_FOUND
    status, outcome = router.tasks.cancel(key.owner, task_id)
    router.apply(outcome)
    task = router.tasks.get(task_id, key.owner) if status else None
    if task is None:
        raise NOT_FOUND
    return answer(mj.SUCCESS, "Success", task.id, {"status": mj.status(task)})
