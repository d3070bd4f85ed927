"""A driver for accounts served by a midjourney-proxy backend (one proxy URL per account).

The HTTP API as the proxies' own sources define it. novicezk/midjourney-proxy: `docs/api.md`
and `ReturnCode.java` (submit answers `{code, description, result, properties}`: 1
submitted, 21 exists, 22 queued, 23 queue full, 24 banned prompt, 3 not found, 4 invalid, 9
failure), `SubmitController.java` (`POST /mj/submit/imagine {prompt, state}`; `POST
/mj/submit/change {taskId, action, index}` on proxies without buttons), `TaskController.java`
(`GET /mj/task/{id}/fetch`, `GET /mj/task/list`), `ApiAuthorizeInterceptor.java` (header
`mj-api-secret`, 401 when wrong). trueai-org/midjourney-proxy: `SubmitController.cs` (`POST
/mj/submit/action {taskId, customId}`; inpaint and custom zoom answer 21 "Waiting for window
confirm", then `POST /mj/submit/modal {taskId, prompt, maskBase64}`; `/mj-fast|relax|turbo`
route prefixes), `TaskController.cs` (`POST /mj/task/{id}/cancel`, 403 without a valid
secret), `TaskInfo.cs` and `Enums.cs` (status NOT_START, SUBMITTED, IN_PROGRESS, FAILURE,
SUCCESS, MODAL, CANCEL; `failReason`, `imageUrl`, `buttons[{customId, label, emoji}]`,
`state`, `startTime`/`finishTime` ms) and its Discord listener (an exhausted account fails
jobs with "账号用量已经用完", a blocked or moderated one with the notice's title).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr
from redis import Redis

from router.keys import Keys
from router.models import Mode, Setting, TaskType
from router.modes import prompt_flags, strip_flags, with_flag
from router.scripts import text
from router.settings import Settings
from workers.drivers.base import (
    AccountNeedsAttention,
    AccountRef,
    AccountRefused,
    CannotCancel,
    Driver,
    DriverError,
    DriverJob,
    DriverResult,
    OutOfFastHours,
    SubmitOutcomeUnknown,
    TransientError,
    UnknownJob,
)

log = logging.getLogger(__name__)

SECRET_HEADER = "mj-api-secret"
HANDLE_PREFIX = "mjp"
MAX_BODY = 4 << 20
"""Largest proxy answer read (a task with its buttons is a few kB)."""

FAST_HOURS = re.compile(r"fast\s+(hours?|time)|credits exhausted|用量已经用完", re.I)
BANNED_PROMPT = re.compile(r"banned\s+(prompt|word)|敏感词", re.I)
"""The prompt's fault, not the account's: the task fails, the account stays in rotation."""
ATTENTION = re.compile(
    r"\bbanned\b|\bblocked\b|captcha|verify\s+you\S?re\s+human|action (needed|required) to"
    r"|pending mod message|\bmoderation\b|(account|user)\s+(is\s+|has been\s+)?(disabled|"
    r"suspended|locked)|subscription (required|paused)|plan cancell?ed|tos not accepted"
    r"|账号不可用|无可用的账号",
    re.I,
)
QUEUE_FULL = re.compile(r"queue\s+(is\s+)?full|队列已满", re.I)
RUNNING = frozenset({"NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL", ""})
"""MODAL: an inpaint or zoom waiting for its modal, which `submit` sends straight away."""
CHANGE_ACTIONS = {"upscale": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}
MODES = frozenset(m.value for m in Mode)
TASK_TYPES = frozenset(t.value for t in TaskType)
SENDABLE_SECRET = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""A secret that can go in a header as it is: printable ASCII, no white space around it."""
LIST_LIMIT = 100
"""trueai-org/midjourney-proxy's `GET /mj/task/list` answers its latest 100 tasks only
(src/Midjourney.API/Controllers/TaskController.cs:177-182, `OrderByDescending(SubmitTime)
.Take(100)`); novicezk's answers every stored task."""
CLOCK_SLACK_MS = 60_000
"""How far the proxy's clock may be off ours when its list is read back to a time."""
STORING_MS = 90_000
"""How long after a submit request went out a proxy may still be taking it before its task
is stored and listed. novicezk/midjourney-proxy translates the prompt first
(src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:68), with GPT
after a 10 s connect, 30 s write and 30 s read timeout (service/translate/
GPTTranslateServiceImpl.java:42-44), and stores the task only then (loadbalancer/
DiscordInstanceImpl.java:111); it goes on after the client gave up. So a job missing from the
list is absent only once the attempt's submit requests are this much older than the list."""
ENDED = frozenset({"SUCCESS", "FAILURE", "CANCEL"})


class NotTaken(TransientError):
    """The proxy surely did not take the request: the connection was refused or the name
    did not resolve (nothing was sent), or a middleware answered before any controller ran
    (429: trueai-org/midjourney-proxy src/Midjourney.API/RateLimitingMiddleware.cs:107-113;
    401/403 are raised as the caller asks, see `_request`)."""


def failure(reason: str, queue_full: type[DriverError] = DriverError) -> DriverError:
    """The driver error a proxy's failure text stands for."""
    if FAST_HOURS.search(reason):
        return OutOfFastHours(reason)
    if BANNED_PROMPT.search(reason):
        return DriverError(reason)
    if ATTENTION.search(reason):
        return AccountNeedsAttention(reason)
    if QUEUE_FULL.search(reason):
        return queue_full(reason)
    return DriverError(reason)


def image_index(params: dict[str, Any]) -> int:
    """Which of the grid's images a child acts on (`input.index`, 1 to 4)."""
    try:
        index = int(params.get("index", 1))
    except (TypeError, ValueError):
        index = 0
    if not 1 <= index <= 4:
        raise DriverError("input.index must be a number from 1 to 4")
    return index


def button_prefix(task_type: str, params: dict[str, Any]) -> str:
    """The start of the customId of the button a child task presses, as the proxies relay
    Midjourney's buttons (e.g. `MJ::JOB::upsample::2::<hash>`, `MJ::Outpaint::50::1::...`)."""
    index = image_index(params)
    strength = {"subtle": "low_", "strong": "high_"}.get(str(params.get("strength", "")), "")
    zoom = {"1.5": "MJ::Outpaint::75::", "custom": "MJ::CustomZoom::"}
    prefixes = {
        "upscale": f"MJ::JOB::upsample::{index}::",
        "variation": f"MJ::JOB::{strength}variation::{'' if strength else f'{index}::'}",
        "reroll": "MJ::JOB::reroll::",
        "pan": f"MJ::JOB::pan_{str(params.get('direction', 'left')).lower()}::",
        "outpaint": zoom.get(str(params.get("zoom", "2")), "MJ::Outpaint::50::"),
        "inpaint": "MJ::Inpaint::",
    }
    if task_type not in prefixes:
        raise DriverError(f"{task_type} is not a child task type")
    return prefixes[task_type]


@dataclass(frozen=True)
class Backend:
    """Where one account's proxy answers, and the secret it wants."""

    url: str
    secret: SecretStr | None = field(repr=False)


@dataclass(frozen=True)
class Handle:
    """What a handle carries: enough for any process to find the job (no secret)."""

    owner: str
    account_id: str
    mode: Mode
    task_type: str
    task_id: str

    def __str__(self) -> str:
        return ":".join(
            (HANDLE_PREFIX, self.owner, self.account_id, self.mode, self.task_type, self.task_id)
        )

    @classmethod
    def parse(cls, handle: str) -> Handle:
        parts = handle.split(":", 5)
        if len(parts) != 6 or parts[0] != HANDLE_PREFIX or parts[3] not in MODES:
            raise UnknownJob(f"{handle!r} is not a midjourney-proxy handle")
        return cls(parts[1], parts[2], Mode(parts[3]), parts[4], parts[5])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the secret header to another URL: refuse it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class MjProxyDriver(Driver):
    """Runs jobs through each account's midjourney-proxy (`backend_url`, secret =
    credentials). Handles name owner, account, mode, task type and proxy task id; the URL
    and secret are read from Redis, so any worker polls any job."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.opts = settings.mjproxy
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._cache: dict[tuple[str, str], tuple[float, Backend]] = {}
        self._lock = threading.Lock()

    # The account's proxy.
    def _remember(self, owner: str, account_id: str, backend: Backend) -> Backend:
        expires = time.monotonic() + self.opts.account_cache_seconds
        with self._lock:
            self._cache[owner, account_id] = (expires, backend)
        return backend

    def _from_ref(self, account: AccountRef) -> Backend:
        if not account.backend_url:
            raise DriverError(f"account {account.id} has no backend_url")
        return self._remember(
            account.owner, account.id, Backend(account.backend_url, account.credentials)
        )

    def _backend(self, owner: str, account_id: str) -> Backend:
        with self._lock:
            hit = self._cache.get((owner, account_id))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.account(owner, account_id), "backend_url")
        pipe.get(self.keys.credentials(owner, account_id))
        url, secret = pipe.execute()
        if not url:
            raise DriverError(f"account {account_id} is gone or has no backend_url")
        backend = Backend(text(url), SecretStr(text(secret)) if secret else None)
        return self._remember(owner, account_id, backend)

    def _request(
        self,
        backend: Backend,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        refused: type[DriverError] = AccountNeedsAttention,
    ) -> tuple[int, Any]:
        """One call to the proxy: (HTTP status, JSON answer or None). Raises TransientError
        (unreachable, timeout, 5xx; NotTaken when surely nothing was sent or taken) or
        `refused` when the secret is refused: AccountNeedsAttention for a submission (the
        account must leave rotation; nothing was created), AccountRefused for a call about
        a submitted job (which may run on whatever this call met).

        401/403 come from the proxies' authorisation, before any controller runs: novicezk's
        `ApiAuthorizeInterceptor.preHandle` answers 401 and stops the request
        (src/main/java/com/github/novicezk/midjourney/support/ApiAuthorizeInterceptor.java:
        19-30); trueai-org's `SimpleAuthMiddleware` answers 401/403 and returns without
        calling the next handler (src/Midjourney.API/SimpleAuthMiddleware.cs:85-122)."""
        headers = {"Accept": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if backend.secret is not None:
            secret = backend.secret.get_secret_value()
            if not SENDABLE_SECRET.fullmatch(secret):  # http.client would quote it refusing it
                raise refused(
                    "the account's secret cannot be sent in a header (it holds a line break, "
                    "a control or non-ASCII character, or white space around it); store it again"
                )
            headers[SECRET_HEADER] = secret
        request = urllib.request.Request(backend.url + path, data, headers, method=method)
        try:
            try:
                with self._opener.open(request, timeout=self.opts.request_timeout_seconds) as r:
                    status, raw = r.status, r.read(MAX_BODY)
            except urllib.error.HTTPError as e:
                with e:
                    status, raw = e.code, e.read(MAX_BODY)
        except (OSError, http.client.HTTPException) as e:  # URLError and timeouts included
            reason = getattr(e, "reason", None)  # named by class: we did not write its text
            name = type(reason if isinstance(reason, BaseException) else e).__name__
            failed = f"{method} {path}: backend unreachable ({name})"
            # urllib wraps what fails while connecting and sending in a URLError, and lets
            # what fails awaiting the answer through as it is: only a refused connection or
            # an unknown name surely sent nothing (a timeout may come after the request).
            unsent = isinstance(e, urllib.error.URLError) and isinstance(
                reason, ConnectionRefusedError | socket.gaierror
            )
        else:
            failed, unsent = "", False
        if failed:  # raised here, so the library's exception is not even its __context__
            raise (NotTaken if unsent else TransientError)(failed)
        if status == 429:
            raise NotTaken(f"{method} {path}: backend answered HTTP {status}")
        if status >= 500:
            raise TransientError(f"{method} {path}: backend answered HTTP {status}")
        if status in (401, 403):
            raise refused(f"the backend refused the account's secret (HTTP {status})")
        if 300 <= status < 400:
            raise DriverError(f"{method} {path}: backend redirects; set backend_url to the target")
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            raise TransientError(f"{method} {path}: backend answered no JSON") from None

    # Submission.
    def submit(self, account: AccountRef, job: DriverJob) -> str:
        started_ms = int(time.time() * 1000)
        if job.prompt is not None and prompt_flags(job.prompt) != [job.mode]:
            raise DriverError(f"prompt must carry exactly one mode flag, --{job.mode}")
        backend = self._from_ref(account)
        if job.parent_result is None:
            if not job.prompt:
                raise DriverError(f"{job.task_type} needs a prompt")
            path, body = "/submit/imagine", {"prompt": job.prompt, "state": job.key}
        else:
            path, body = self._child_request(account, job)
        prefix = f"/mj-{job.mode}/mj" if self.opts.mode_path else "/mj"
        answer = self._send(backend, prefix + path, body, account, job, started_ms)
        if isinstance(answer, str):
            return answer
        task_id, reply = self._accepted(*answer)
        if reply.get("code") == 21 and (reply.get("properties") or {}).get("remix"):
            modal = {
                "taskId": task_id,
                "prompt": self._modal_prompt(job),
                "maskBase64": job.input.get("mask_base64") or "",
                "state": job.key,
            }
            sent = self._send(backend, prefix + "/submit/modal", modal, account, job, started_ms)
            if isinstance(sent, str):
                return sent
            task_id = self._accepted(*sent)[0]
        handle = Handle(account.owner, account.id, job.mode, job.task_type, task_id)
        log.info("submitted %s to account %s as proxy task %s", job.task_id, account.id, task_id)
        return str(handle)

    def _send(
        self,
        backend: Backend,
        path: str,
        body: dict[str, Any],
        account: AccountRef,
        job: DriverJob,
        started_ms: int,
    ) -> tuple[int, Any] | str:
        """POST a submission: the proxy's answer, or the handle of the job found by its key
        after a failure that may have come once the proxy had the request. Such a failure
        (a timeout or reset after sending, a 5xx) is never followed by another submission:
        the job may be on its way into the proxy's store (see STORING_MS), so a lookup now
        cannot say it is absent. It raises SubmitOutcomeUnknown; only NotTaken (nothing
        sent, or refused before any controller) and definite refusals in the answer (code
        23, queue full) are TransientError, which the worker may retry."""
        try:
            return self._request(backend, "POST", path, body)
        except NotTaken:
            raise
        except TransientError as e:
            failed = str(e)
        with contextlib.suppress(DriverError):  # the proxy took it and answered late
            if (found := self.lookup(account, job.key, started_ms)) is not None:
                return found
        raise SubmitOutcomeUnknown(f"{failed}; whether the backend took the job is unknown")

    @staticmethod
    def _modal_prompt(job: DriverJob) -> str:
        """The prompt of an inpaint's or custom zoom's modal: the child's own, else its
        parent's, stripped of every mode flag and given the one of the mode it runs in.

        trueai-org/midjourney-proxy sends the modal's prompt to Midjourney as the job's
        whole prompt: `SubmitController.Modal` stores it as the task's prompt
        (src/Midjourney.API/Controllers/SubmitController.cs:764-765) and the queue hands
        it to the inpaint and zoom calls (src/Midjourney.Services/DiscordService.cs:2133,
        2145); an empty one is replaced by the parent's prompt, flag and all
        (SubmitController.cs:714-731). Its own flag handling appends the route's mode only
        after removing the exact lowercase `--fast`, `--relax`, `--turbo`
        (DiscordService.cs:3283-3286, src/Midjourney.Base/Extensions/CommonExtensions.cs:
        616-627), so `--FAST` or an em dash flag would survive it. Hence: always a prompt,
        always exactly one flag, ours.
        """
        parent = job.parent_result or {}
        base = strip_flags(job.prompt or str(parent.get("prompt") or ""))
        return with_flag(base, job.mode)

    def _child_request(self, account: AccountRef, job: DriverJob) -> tuple[str, dict[str, Any]]:
        """The action a child task sends: the parent's proxy task id and button customId."""
        parent = job.parent_result or {}
        if parent.get("account_id") not in (None, account.id):
            raise DriverError(f"parent job is on account {parent.get('account_id')}")
        parent_mode = parent.get("mode")
        if not self.opts.mode_path and parent_mode not in (None, job.mode.value):
            # An action carries no prompt, so the proxy runs it in the parent's mode: without
            # mode routes it cannot run this child in the mode the router chose.
            raise DriverError(
                f"this proxy cannot run a {job.mode} child of a {parent_mode} job "
                "(set BYOA_MJPROXY__MODE_PATH for proxies with /mj-<mode> routes)"
            )
        parent_id = str(parent.get("proxy_task_id") or "")
        if not parent_id:
            raise DriverError("the parent's result names no proxy task")
        buttons = [
            str(b.get("customId", "")) for b in parent.get("buttons") or [] if isinstance(b, dict)
        ]
        custom_id = job.input.get("custom_id")
        if custom_id is None and buttons:
            prefix = button_prefix(job.task_type, job.input)
            custom_id = next((b for b in buttons if b.startswith(prefix)), None)
            if custom_id is None:
                raise DriverError(f"the parent job has no {prefix}... button")
        if custom_id is not None:
            return "/submit/action", {"taskId": parent_id, "customId": custom_id, "state": job.key}
        action = CHANGE_ACTIONS.get(job.task_type)  # a proxy without buttons
        if action is None:
            raise DriverError(f"this backend cannot run {job.task_type} (it has no buttons)")
        change: dict[str, Any] = {"taskId": parent_id, "action": action, "state": job.key}
        if action != "REROLL":
            change["index"] = image_index(job.input)
        return "/submit/change", change

    def _accepted(self, status: int, reply: Any) -> tuple[str, dict[str, Any]]:
        """The proxy task id of an accepted submission, else the error its code means."""
        if not isinstance(reply, dict) or "code" not in reply:
            if status == 404:
                raise DriverError("backend has no such endpoint; check backend_url")
            raise DriverError(f"backend answered HTTP {status} without a submit result")
        code, result = reply.get("code"), reply.get("result")
        described = f"{reply.get('description') or ''} (code {code})".strip()
        if code in (1, 21, 22) and result not in (None, ""):
            return str(result), reply
        if code == 23:
            raise TransientError(f"backend queue full: {described}")
        if code == 24:
            word = (reply.get("properties") or {}).get("bannedWord")
            raise DriverError(f"banned prompt{f' ({word})' if word else ''}: {described}")
        error = failure(described, queue_full=TransientError)
        if type(error) is DriverError and code == 9:  # the proxy's own failure
            raise TransientError(described)
        raise error

    # Following a job.
    def _fetch(self, backend: Backend, handle: Handle) -> dict[str, Any]:
        """The proxy's task; a refused secret is AccountRefused: the job may run on."""
        path = f"/mj/task/{quote(handle.task_id)}/fetch"
        status, task = self._request(backend, "GET", path, refused=AccountRefused)
        if status in (204, 404) or task is None:  # null: an empty 200 (Spring) or a 204
            raise UnknownJob(f"the backend has no task {handle.task_id}")
        if status >= 400 or not isinstance(task, dict):
            raise DriverError(f"fetching task {handle.task_id}: HTTP {status}")
        return task

    def poll(self, handle: str) -> DriverResult | None:
        h = Handle.parse(handle)
        task = self._fetch(self._backend(h.owner, h.account_id), h)
        status = str(task.get("status") or "")
        if status == "SUCCESS":
            return DriverResult(self._gpu_ms(task, h), self._output(task, h))
        if status == "FAILURE":
            raise failure(str(task.get("failReason") or "the backend failed the job"))
        if status == "CANCEL":
            raise DriverError(f"task {h.task_id} was cancelled on the backend")
        if status not in RUNNING:
            log.warning("proxy task %s has unknown status %r; polling on", h.task_id, status)
        return None

    def _gpu_ms(self, task: dict[str, Any], h: Handle, until_ms: int | None = None) -> int:
        """Proxies report no GPU time: the run (startTime to finishTime, ms) times the mode's
        `gpu_per_wall`; without times, the router's estimate for the task type (0 if the
        job is being cancelled before it started)."""
        start, end = task.get("startTime"), task.get("finishTime") or until_ms
        if isinstance(start, int | float) and isinstance(end, int | float) and end >= start > 0:
            return round((end - start) * self.opts.gpu_per_wall[h.mode])
        if until_ms is not None or h.task_type not in TASK_TYPES:
            return 0
        return self.settings.estimate_ms(TaskType(h.task_type))

    def _output(self, task: dict[str, Any], h: Handle) -> dict[str, Any]:
        """The result stored on the task: what its children need (proxy id, buttons)."""
        buttons = [
            {k: b.get(k) for k in ("customId", "label", "emoji")}
            for b in task.get("buttons") or []
            if isinstance(b, dict) and b.get("customId")
        ]
        return {
            "image_url": task.get("imageUrl"),
            "proxy_task_id": str(task.get("id") or h.task_id),
            "buttons": buttons,
            "prompt": task.get("promptEn") or task.get("prompt"),
            "account_id": h.account_id,
            "mode": h.mode,
            "job_ref": f"{h.account_id}:{h.task_id}",
        }

    def cancel(self, handle: str) -> int:
        """Asks the proxy to cancel where it can, then fetches the job: once it reports an
        end status, returns its run (estimated as in `_gpu_ms`). If it runs on, raises
        CannotCancel: novicezk/midjourney-proxy has no cancel endpoint (its TaskController
        maps fetch, queue, list and list-by-condition only: src/main/java/com/github/
        novicezk/midjourney/controller/TaskController.java:36-81), and trueai-org's answers
        400 to any non-admin caller (src/Midjourney.API/Controllers/TaskController.cs:86-92)
        and, for an admin, fails a running task in memory while saving the stored copy
        unchanged (TaskController.cs:103-106), so the job may show as running a while.
        Fetch errors pass on (AccountRefused, TransientError: ask again; UnknownJob)."""
        h = Handle.parse(handle)
        backend = self._backend(h.owner, h.account_id)
        if self.opts.cancel_endpoint:
            path = f"/mj/task/{quote(h.task_id)}/cancel"
            try:
                self._request(backend, "POST", path, {}, refused=AccountRefused)
            except DriverError as e:
                log.info("cancelling proxy task %s: %s", h.task_id, e)
        task = self._fetch(backend, h)
        now_ms = int(time.time() * 1000)
        if str(task.get("status") or "") in ENDED:
            return self._gpu_ms(task, h, until_ms=now_ms)
        raise CannotCancel(
            f"the backend did not stop task {h.task_id}; it runs on", self._gpu_ms(task, h, now_ms)
        )

    def lookup(self, account: AccountRef, key: str, started_ms: int | None = None) -> str | None:
        """Finds the job whose `state` is `key` among the proxy's tasks (`GET
        /mj/task/list`: every stored task, or the latest LIST_LIMIT). None only when the
        proxy answered a list that would hold the job had it taken it: a short list, or a
        full one reaching back to before the attempt started, and only once the attempt's
        submissions are old enough to be stored (`submit_window_ms`). Otherwise (lookups
        off, no list endpoint, an error or 5xx, a full list too recent, too soon) it cannot
        tell: raises."""
        if not key:
            raise DriverError("a job submitted without a key cannot be looked up")
        if not self.opts.lookup_via_list:
            raise DriverError("this proxy's jobs are not looked up (lookup_via_list is off)")
        status, tasks = self._request(self._from_ref(account), "GET", "/mj/task/list")
        if status >= 400 or not isinstance(tasks, list):
            raise TransientError(f"cannot tell: GET /mj/task/list answered HTTP {status}")
        for task in tasks:
            if isinstance(task, dict) and task.get("state") == key and task.get("id"):
                flags = prompt_flags(str(task.get("prompt") or ""))
                mode = flags[-1] if flags else Mode.FAST  # a child carries its parent's flag
                action = str(task.get("action") or "imagine").lower()
                task_type = action if action in TASK_TYPES else TaskType.IMAGINE.value
                return str(Handle(account.owner, account.id, mode, task_type, str(task["id"])))
        now_ms = int(time.time() * 1000)
        if started_ms is None or now_ms - started_ms < self.submit_window_ms():
            raise TransientError("cannot tell yet: the proxy may still be storing the job")
        if len(tasks) < LIST_LIMIT:
            return None  # the whole list: the proxy never took the job
        times = [t.get("submitTime") for t in tasks if isinstance(t, dict)]
        oldest = min((t for t in times if isinstance(t, int | float)), default=None)
        if started_ms is not None and oldest is not None and oldest < started_ms - CLOCK_SLACK_MS:
            return None  # the list reaches back to before the attempt: it would be there
        raise TransientError(f"cannot tell: the proxy lists its latest {len(tasks)} tasks only")

    def submit_window_ms(self) -> int:
        """How long after an attempt starts a job it submitted may still be unlisted: its
        worker's submit requests (each retry, and an inpaint's modal, may wait out the
        request timeout after backoffs) plus STORING_MS for the proxy to store the last."""
        s = self.settings
        backoffs = s.transient_backoff_seconds * float(2**s.transient_retries - 1)
        requests = 2 * (s.transient_retries + 1) * self.opts.request_timeout_seconds
        return round((backoffs + requests) * 1000) + STORING_MS

    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        """Nothing to do: the proxies offer no mode switch to API clients, and every prompt
        already carries the flag of the mode it runs in (relax on a relax account)."""
        log.debug("account %s is now %s; its prompts carry the mode flag", account.id, setting)
