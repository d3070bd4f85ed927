"""A driver for accounts served by a midjourney-proxy server (one proxy URL per account).

Two servers speak this API, with the same paths and field names and different rules:
trueai-org/midjourney-proxy and novicezk/midjourney-proxy. Each account's server is set by
the operator (`backend_server`), else by the `mjproxy.server` setting, else found by asking
it once (`GET /mj/home` answers anonymously on trueai only). Its answers are then read by
that server's profile (`workers.drivers.mjproxy_servers`, every rule with its source line):
which refusals and failures are passing, which mean the account ran out of fast time or must
leave rotation, how a child's mode is chosen, what a fetched task says of the mode it ran in.

Every job type the router knows has its route on trueai: imagine, describe, shorten, blend
and video (`/submit/<type>`), a video's extend (`/submit/video` with `action: extend`, as
new-api relays it too), and every button of a parent (`/submit/action`). novicezk has
imagine, describe, blend and `/submit/change` (upscale, variation, reroll); anything else
fails `driver_error` before anything is sent.

The mode: a relax job whose mode no prompt carries to Midjourney (a button press, a
novicezk blend) runs in the account's own Midjourney mode. It is sent only where that costs
no fast time (U1-U4, a video's clip upscale, a describe: trueai counts none) or where the
account is set to relax here (`AccountRef.setting`: flipped by the router, or set by an
operator, who sets Midjourney's /relax too); a job whose prompt trueai writes with a mode of
its own choosing only where trueai would choose relax. Else it fails `mode_unsupported`,
never sent: it would spend fast hours.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr
from redis import Redis

from router.costs import INHERITED, batch_size, is_hd
from router.driver import (
    AccountNeedsAttention,
    AccountRef,
    AccountRefused,
    BackendAccount,
    CancelUnsupported,
    Driver,
    DriverError,
    DriverJob,
    DriverResult,
    ModeUnsupported,
    OutOfFastHours,
    RetryableFailure,
    SubmitOutcomeUnknown,
    TransientError,
    UnknownJob,
)
from router.keys import Keys
from router.models import Mode, Setting, TaskType
from router.modes import prompt_flags, strip_flags, with_flag
from router.scripts import text
from router.settings import Settings
from workers.drivers.mjproxy_http import Backend, NotTaken, request
from workers.drivers.mjproxy_jobs import (
    CHANGE_ACTIONS,
    TRUEAI_FAST_FLOOR,
    Handle,
    Reach,
    button_prefix,
    free,
    image_index,
    prompts,
    reach,
    said_mode,
)
from workers.drivers.mjproxy_servers import Meaning, Server, ServerFinder

log = logging.getLogger(__name__)

RUNNING = frozenset({"NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL", ""})
"""MODAL: an inpaint or zoom waiting for its modal, which `submit` sends straight away."""
ENDED = frozenset({"SUCCESS", "FAILURE", "CANCEL"})
TASK_TYPES = frozenset(t.value for t in TaskType)
SERVER_MODES = {"FAST": Mode.FAST, "RELAX": Mode.RELAX, "TURBO": Mode.TURBO}
"""trueai's `mode` values (string enums: src/Midjourney.API/Program.cs:215-223;
src/Midjourney.Base/Models/Enums.cs:406-411)."""
FAST_MS_PER_JOB = 60_000
"""trueai counts fast time as jobs of 60 s (`FastDrawDuration` outside 15-60 falls back to
60: src/Midjourney.Services/DiscordWebSocketService.cs:1433-1441)."""
MAX_FAST_JOBS = 10**9
"""More fast jobs than any account holds: a larger count is read as this many."""
STRAY_FLAG = re.compile(r"--(fast|relax|turbo)", re.I)
"""Mode text a proxy reads anywhere in a prompt: trueai adds FAST to the modes it tries if
the prompt holds `--fast` in any case, else `--relax` or `--turbo` (SubmitController.cs:
1277-1292), and runs the first that qualifies."""
VIDEO_TYPES = {False: "vid_1.1_i2v_480", True: "vid_1.1_i2v_720"}
"""trueai's `videoType` for SD and HD (src/Midjourney.Base/Dto/SubmitVideoDTO.cs:74-80)."""
VIDEO_JOBS = frozenset({"video", "animate", "video_extend", "video_upscale"})
"""Jobs whose result is video clips."""
MAX_LIST_BODY = 64 << 20
"""Largest task list read when looking a job up (novicezk lists 30 days of tasks)."""
MAX_NOTIFY_HOOK = 2000
"""The callback URL (`DriverJob.notify_url`) goes in the submit body as `notifyHook`, which
both servers take on every submit DTO and store on the task, overriding their global hook
(a blank one falls back to it): trueai src/Midjourney.Base/Dto/BaseSubmitDTO.cs:36-39, read
for imagine and action by `NewTask` (src/Midjourney.API/Controllers/SubmitController.cs:151,
508, 1246-1247; a modal goes on with the task its action made, :700-773), which refuses one
longer than this (:1044-1048); novicezk dto/BaseSubmitDTO.java:14-15, read for imagine and
change (controller/SubmitController.java:65, 131, 198-204), no limit.

Both POST the task as JSON to it after storing each change (trueai src/Midjourney.Services/
DiscordService.cs:2754-2765: while it runs, every 3 s :2603-2623, and at its end :2746;
novicezk loadbalancer/DiscordInstanceImpl.java:173-176: SUBMITTED :150, each progress and
the end :151-154, failures :144, :161, a timeout :96), skipping a status and progress that
did not move on (trueai src/Midjourney.Services/NotifyService.cs:106-124; novicezk service/
NotifyServiceImpl.java:59-68). Once, without retry; a failure is only logged (trueai
NotifyService.cs:77-95, 132-137, HttpClient's default 100 s timeout: src/Midjourney.API/
Program.cs:240; novicezk NotifyServiceImpl.java:45-53, 70-80, RestTemplate without
timeouts). So a callback is a hint that the job moved; the poll that follows reads it."""
CLOCK_SLACK_MS = 60_000
"""How far the proxy's clock may be off ours when its list is read back to a time."""
STORING_MS = 90_000
"""How long after a submit request went out a proxy may still be taking it before its task
is stored and listed. novicezk translates the prompt first (controller/SubmitController.java:
68), with GPT after a 10 s connect, 30 s write and 30 s read timeout (service/translate/
GPTTranslateServiceImpl.java:42-44), and stores the task only then (loadbalancer/
DiscordInstanceImpl.java:111); it goes on after the client gave up. So a job missing from the
list is absent only once the attempt's submit requests are this much older than the list."""


class MjProxyDriver(Driver):
    """Runs jobs through each account's midjourney-proxy (`backend_url`, secret =
    credentials). Handles name owner, account, mode, task type and proxy task id; the URL
    and secret are read from Redis, so any worker polls any job."""

    calls_back = True  # both servers POST each job change to its notifyHook

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.opts = settings.mjproxy
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self._cache: dict[tuple[str, str], tuple[float, Backend]] = {}
        self.servers = ServerFinder(self.opts.request_timeout_seconds)
        self._threads = ThreadPoolExecutor(settings.poll_threads, thread_name_prefix="byoa-mjp")
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
        backend = Backend(account.backend_url, account.credentials, account.backend_server)
        return self._remember(account.owner, account.id, backend)

    def _backend(self, owner: str, account_id: str) -> Backend:
        with self._lock:
            hit = self._cache.get((owner, account_id))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.account(owner, account_id), "backend_url", "backend_server")
        pipe.get(self.keys.credentials(owner, account_id))
        (url, server), secret = pipe.execute()
        if not url:
            raise DriverError(f"account {account_id} is gone or has no backend_url")
        backend = Backend(
            text(url), SecretStr(text(secret)) if secret else None, text(server) if server else None
        )
        return self._remember(owner, account_id, backend)

    def _request(self, backend: Backend, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return request(backend, method, path, timeout=self.opts.request_timeout_seconds, **kw)

    @staticmethod
    def _error(meaning: Meaning, said: str, *, ran: bool) -> DriverError:
        """The driver error a server's refusal (`ran` False) or a job's failure means."""
        if meaning is Meaning.OUT_OF_FAST:
            return OutOfFastHours(said)
        if meaning is Meaning.ATTENTION:
            return AccountNeedsAttention(said)
        if meaning is Meaning.RETRY:
            return RetryableFailure(said) if ran else TransientError(said)
        return DriverError(said)

    def server(self, backend: Backend) -> Server:
        """The backend's server, as declared or as it answers (see `ServerFinder`)."""
        return self.servers.of(backend, self.opts.server)

    def account_state(self, account: AccountRef) -> BackendAccount | None:
        """trueai's `fastAvailableCount` as fast time (jobs of 60 s); never "exhausted":
        its 0 also stands for a disabled account, a daily cap, or a count not read since
        midnight (see `Server.home`). novicezk tells nothing: None."""
        backend = self._from_ref(account)
        if not self.server(backend).home:
            return None
        count = self.servers.fast_jobs(backend)
        return BackendAccount(
            fast_ms=min(max(count, 0), MAX_FAST_JOBS) * FAST_MS_PER_JOB,
            source="GET /mj/home fastAvailableCount",
        )

    # Submission.
    def submit(self, account: AccountRef, job: DriverJob) -> str:
        started_ms = int(time.time() * 1000)
        if job.prompt is not None and prompt_flags(job.prompt) != [job.mode]:
            raise DriverError(f"prompt must carry exactly one mode flag, --{job.mode}")
        if job.prompt is not None and (stray := STRAY_FLAG.search(strip_flags(job.prompt))):
            raise DriverError(
                f"the prompt holds {stray.group(0)!r} inside other text, which a proxy would "
                "read as a mode flag"
            )
        backend = self._from_ref(account)
        server = self.server(backend)
        if job.parent_result is None:
            path, body = self._new_request(server, job)
        else:
            path, body = self._child_request(account, server, job)
        self._check_mode(backend, server, account, job, path, body)
        body["state"] = job.key
        if job.notify_url and len(job.notify_url) <= MAX_NOTIFY_HOOK:
            body["notifyHook"] = job.notify_url  # see MAX_NOTIFY_HOOK
        prefix = f"/mj-{job.mode}/mj" if server.mode_routes else "/mj"
        answer = self._send(backend, prefix + path, body, account, job, started_ms)
        if isinstance(answer, str):
            return answer
        task_id, reply = self._accepted(answer, backend, server, job)
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
            task_id = self._accepted(sent, backend, server, job)[0]
        handle = Handle(account.owner, account.id, job.mode, job.task_type, task_id, _hd(job))
        log.info("submitted %s to account %s as proxy task %s", job.task_id, account.id, task_id)
        return str(handle)

    def _check_mode(
        self,
        backend: Backend,
        server: Server,
        account: AccountRef,
        job: DriverJob,
        path: str,
        body: dict[str, Any],
    ) -> None:
        """Refuse a relax job that could run fast (see the module docstring), before it is
        sent. Its mode reaches Midjourney in its prompt (`Reach.FLAG`: sent); or not at all,
        so it runs in the account's own Midjourney mode (a button press carries no prompt:
        trueai src/Midjourney.Services/DiscordService.cs:2965-3005; novicezk service/
        DiscordServiceImpl.java:59-119; neither lets a client read or set that mode): sent
        only if it costs no fast time or the account is set to relax; or in a prompt trueai
        writes with the mode it picks, FAST first (`Reach.CHOSEN`): sent only if the
        account is set to relax and trueai's fast count (`GET /mj/home`, as `Server.home`
        says: over its enabled accounts) leaves it no FAST, as after "Credits exhausted"
        with EnableAutoSetRelax (src/Midjourney.Base/Models/DiscordAccount.cs:1081-1113).
        A fast or turbo job that runs in another mode is charged as what ran where the
        server tells it (trueai), else as sent."""
        if job.mode is not Mode.RELAX or free(job.task_type, path, body):
            return
        how = reach(path, body, server.buttons)
        if how is Reach.FLAG:
            return
        if account.setting is not Setting.RELAX:
            raise ModeUnsupported(
                f"a relax {job.task_type} on a {server.name} proxy runs in the account's own "
                "Midjourney mode, which no request can set, and the account is set to fast: "
                "it would spend fast hours. It runs relax on an account set to relax (in "
                "Midjourney and here)"
            )
        if account.flipped and not server.home:  # no backend word on its Midjourney mode
            raise ModeUnsupported(
                f"a relax {job.task_type} on a {server.name} proxy runs in the account's own "
                "Midjourney mode, and the router set the account to relax by its own count of "
                "fast hours, which this proxy cannot tell Midjourney: it may still be fast. It "
                "runs relax once an operator sets the account to relax (in Midjourney too)"
            )
        if how is Reach.CHOSEN or account.flipped:
            count = self.servers.fast_jobs(backend)
            if count > TRUEAI_FAST_FLOOR:
                raise ModeUnsupported(
                    f"a relax {job.task_type} gets the mode trueai picks, fast first, and the "
                    f"proxy counts {count} fast jobs left: it would run fast. It runs relax "
                    "once trueai allows the account relax only (after its fast time ran out)"
                )

    def _new_request(self, server: Server, job: DriverJob) -> tuple[str, dict[str, Any]]:
        """The route and body of a task without a parent, in the field names each server
        binds: trueai src/Midjourney.Base/Dto/SubmitDescribeDTO.cs:32-60 (`base64` or
        `link`), SubmitBlendDTO.cs:32-56, SubmitImagineDTO.cs:32-61 (shorten),
        SubmitVideoDTO.cs:31-87; novicezk dto/SubmitDescribeDTO.java:11-15, dto/
        SubmitBlendDTO.java:14-21, which take data URLs only (controller/SubmitController.
        java:152-196). A server without the route refuses it here, never sent."""
        kind, given = job.task_type, job.input
        if kind not in server.new_types:
            raise DriverError(f"a {server.name} proxy has no route for {kind}: it cannot run it")
        if kind == "imagine":
            if not job.prompt:
                raise DriverError(f"{kind} needs a prompt")
            return "/submit/imagine", {"prompt": job.prompt}
        if kind == "shorten":
            return "/submit/shorten", {"prompt": job.prompt}
        if kind == "describe":
            image = str(given.get("image") or given.get("base64") or "")
            if server.buttons and re.match(r"https?://", image, re.I):
                return "/submit/describe", {"link": image}
            return "/submit/describe", {"base64": _image(image, server)}
        if kind == "blend":
            images = [_image(str(i), server) for i in given.get("images") or []]
            dims = str(given.get("dimensions") or "SQUARE").upper()
            return "/submit/blend", {"base64Array": images, "dimensions": dims}
        body = {"prompt": job.prompt, "image": given.get("image")}
        if given.get("end_image"):
            body["endImage"] = given["end_image"]
        return "/submit/video", {**body, **_video_params(job)}

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
        sent, or refused before any controller) and definite refusals in the answer are
        TransientError, which the worker may retry."""
        try:
            return self._request(backend, "POST", path, body=body)
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
        if stray := STRAY_FLAG.search(base):
            raise DriverError(
                f"the prompt holds {stray.group(0)!r} inside other text, which a proxy would "
                "read as a mode flag"
            )
        return with_flag(base, job.mode)

    def _child_request(
        self, account: AccountRef, server: Server, job: DriverJob
    ) -> tuple[str, dict[str, Any]]:
        """What a child task sends: the parent's proxy task id and the button's customId
        (trueai: `/submit/action`), or the change (novicezk: `/submit/change`, with
        `action` UPSCALE, VARIATION or REROLL and `index`; dto/SubmitChangeDTO.java:15-23)."""
        parent = job.parent_result or {}
        if parent.get("account_id") not in (None, account.id):
            raise DriverError(f"parent job is on account {parent.get('account_id')}")
        parent_id = str(parent.get("proxy_task_id") or "")
        if not parent_id:
            raise DriverError("the parent's result names no proxy task")
        if server.buttons and job.task_type == TaskType.VIDEO_EXTEND:
            # trueai's extend: its own two steps on the parent's clip, `index` 0-3 (src/
            # Midjourney.Base/Dto/SubmitVideoDTO.cs:58-72; TaskService.cs:775-830).
            extend: dict[str, Any] = {"action": "extend", "taskId": parent_id}
            extend.update(prompt=self._modal_prompt(job), index=image_index(job.input) - 1)
            return "/submit/video", {**extend, **_video_params(job)}
        if server.buttons:
            buttons = [
                str(b.get("customId", ""))
                for b in parent.get("buttons") or []
                if isinstance(b, dict)
            ]
            prefix = button_prefix(job.task_type, job.input, str(parent.get("prompt") or ""))
            custom_id = job.input.get("custom_id")
            if custom_id is not None and not (
                isinstance(custom_id, str) and custom_id.startswith(prefix) and custom_id in buttons
            ):  # a button of the parent's for this task's type, or none: never another kind
                raise DriverError(
                    f"input.custom_id must be one of the parent's {prefix}... buttons"
                )
            if custom_id is None:
                custom_id = next((b for b in buttons if b.startswith(prefix)), None)
                kind = re.fullmatch(r"MJ::JOB::upsample_v\w+_2x_(subtle|creative)::", prefix)
                if custom_id is None and kind:  # the upscale of another version than read
                    same = re.compile(rf"MJ::JOB::upsample_v\w+_2x_{kind.group(1)}::")
                    custom_id = next((b for b in buttons if same.match(b)), None)
                if custom_id is None:
                    raise DriverError(f"the parent job has no {prefix}... button")
            return "/submit/action", {"taskId": parent_id, "customId": custom_id}
        action = CHANGE_ACTIONS.get(job.task_type)
        if action is None:
            raise DriverError(
                f"a {server.name} proxy cannot run {job.task_type}: it has no buttons, only "
                "/submit/change (upscale, variation, reroll)"
            )
        change: dict[str, Any] = {"taskId": parent_id, "action": action}
        if action != "REROLL":
            change["index"] = image_index(job.input)
        return "/submit/change", change

    def _accepted(
        self, answer: tuple[int, Any], backend: Backend, server: Server, job: DriverJob
    ) -> tuple[str, dict[str, Any]]:
        """The proxy task id of an accepted submission (codes 1, 22 and 21, a modal to
        confirm: trueai src/Midjourney.Services/DiscordService.cs:1655-1664, TaskService.cs:
        1697-1719; novicezk loadbalancer/DiscordInstanceImpl.java:127-133), else the error
        the refusal means by the server's rules. trueai answers a request check outside
        imagine with `{code: -1, message}` (CustomLogicExceptionFilterAttribute.cs:39-51)."""
        status, reply = answer
        if isinstance(reply, dict) and isinstance(odd := reply.get("code"), str | float):
            with contextlib.suppress(ValueError, OverflowError):  # "1" or 1.0: the number 1
                if not isinstance(odd, bool) and float(odd).is_integer():
                    reply = {**reply, "code": int(float(odd))}
        if not isinstance(reply, dict) or "code" not in reply:
            if status == 404:
                raise DriverError("backend has no such endpoint; check backend_url")
            raise DriverError(f"backend answered HTTP {status} without a submit result")
        code, result = reply.get("code"), reply.get("result")
        if type(code) is int and code in (1, 21, 22) and isinstance(result, str | int) and result:
            return str(result), reply
        said = str(reply.get("description") or reply.get("message") or "")
        described = f"{said} (code {code})".strip()
        if code == 24:  # novicezk's banned word (controller/SubmitController.java:69-74)
            word = (reply.get("properties") or {}).get("bannedWord")
            described = f"banned prompt{f' ({word})' if word else ''}: {described}"
        raise self._error(server.refused(code, said), described, ran=False)

    # Following a job.
    def _fetch(self, backend: Backend, handle: Handle) -> dict[str, Any]:
        """The proxy's task; a refused secret is AccountRefused: the job may run on. An
        unknown id answers 204 on trueai (TaskController.cs:75-79, a null result) and an
        empty 200 on novicezk (controller/TaskController.java:41)."""
        path = f"/mj/task/{quote(handle.task_id)}/fetch"
        status, task = self._request(backend, "GET", path, refused=AccountRefused)
        if status == 204 or (status == 200 and task is None):
            raise UnknownJob(f"the backend has no task {handle.task_id}")
        if status != 200 or not isinstance(task, dict):  # says nothing of the job: ask again
            raise TransientError(f"fetching task {handle.task_id}: HTTP {status}, no task")
        return task

    def poll(self, handle: str) -> DriverResult | None:
        h = Handle.parse(handle)
        backend = self._backend(h.owner, h.account_id)
        return self._read(self._fetch(backend, h), h, backend)

    def poll_many(self, handles: Sequence[str]) -> dict[str, DriverResult | DriverError | None]:
        """One `POST /mj/task/list-by-condition {ids}` per account's proxy for all its jobs
        (both servers: trueai src/Midjourney.API/Controllers/TaskController.cs:189-207;
        novicezk controller/TaskController.java:61-80; unknown ids are left out of the
        answer, and so here: those jobs are polled alone)."""
        by_account: dict[tuple[str, str], list[Handle]] = {}
        for handle in handles:
            with contextlib.suppress(UnknownJob):
                h = Handle.parse(handle)
                by_account.setdefault((h.owner, h.account_id), []).append(h)
        known: dict[str, DriverResult | DriverError | None] = {}
        for answers in self._threads.map(self._poll_account, by_account.values()):
            known.update(answers)
        return known

    def _poll_account(self, group: list[Handle]) -> dict[str, DriverResult | DriverError | None]:
        """One account's jobs in one request (accounts are asked at once, in threads). A
        failed request is each job's answer (asked again at the next round, not alone
        now); a job the answer leaves out is fetched alone."""
        known: dict[str, DriverResult | DriverError | None] = {}
        try:
            backend = self._backend(group[0].owner, group[0].account_id)
            listed = self._listed(backend, [h.task_id for h in group])
        except DriverError as e:
            return {str(h): e for h in group}
        if listed is None:  # no such endpoint: each job is fetched alone
            return {}
        for h in group:
            if (task := listed.get(h.task_id)) is not None:
                try:
                    known[str(h)] = self._read(task, h, backend)
                except DriverError as e:
                    known[str(h)] = e
        return known

    def _listed(self, backend: Backend, ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """The proxy's tasks of these ids (those it knows), by id; None if it has no such
        endpoint (404)."""
        path, body = "/mj/task/list-by-condition", {"ids": ids}
        status, tasks = self._request(backend, "POST", path, body=body, refused=AccountRefused)
        if status == 404:
            return None
        if status != 200 or not isinstance(tasks, list):
            raise TransientError(f"POST {path} answered HTTP {status} without a task list")
        return {str(t.get("id")): t for t in tasks if isinstance(t, dict)}

    def _read(self, task: dict[str, Any], h: Handle, backend: Backend) -> DriverResult | None:
        """What a fetched task says of its job: a result, None while it runs, or the
        driver error its failure means."""
        status = str(task.get("status") or "")
        if status == "SUCCESS":
            ran = self._ran_mode(task)
            return DriverResult(self._gpu_ms(task, h, ran=ran), self._output(task, h, ran), ran)
        if status == "FAILURE":
            reason = str(task.get("failReason") or "the backend failed the job")
            raise self._error(self.server(backend).failed(reason), reason, ran=True)
        if status == "CANCEL":
            raise DriverError(f"task {h.task_id} was cancelled on the backend")
        if status not in RUNNING:
            log.warning("proxy task %s has unknown status %r; polling on", h.task_id, status)
        return None

    @staticmethod
    def _ran_mode(task: dict[str, Any]) -> Mode | None:
        """The mode the job ran in, where the server reports it. trueai keeps Midjourney's
        message as `properties.messageContent` (DiscordWebSocketService.cs:2923, 3867),
        whose "(fast)", "(relaxed)" or "(turbo)" says it (src/Midjourney.Base/Utils/
        MjMessageParser.cs:18-117); a U1-U4's says none: as sent. Its own `mode` is that
        word overridden by any flag in the prompt Midjourney echoed (src/Midjourney.Base/
        Models/TaskInfo.cs:698-727), for a button job its parent's prompt: read only where
        no message is kept (a describe, a shorten). novicezk's tasks have neither
        (support/Task.java:20-48). Read without asking which server it is, so a finished
        job is settled even when that cannot be told."""
        props = task.get("properties")
        content = props.get("messageContent") if isinstance(props, dict) else None
        if isinstance(content, str) and content.strip():
            return said_mode(content)
        mode = task.get("mode")
        return SERVER_MODES.get(mode) if isinstance(mode, str) else None

    def _gpu_ms(
        self, task: dict[str, Any], h: Handle, until_ms: int | None = None, ran: Mode | None = None
    ) -> int:
        """Proxies report no GPU time: the run (startTime to finishTime, ms) times the mode's
        `gpu_per_wall`; without times, the router's estimate for the task type (0 if the
        job is being cancelled before it started)."""
        start, end = _ms(task.get("startTime")), _ms(task.get("finishTime")) or until_ms
        if start is not None and end is not None and end >= start > 0:
            mode = ran or h.mode  # a run cannot outlast the run timeout the poller enforces
            wall = min(end - start, self.settings.run_timeout_seconds[mode] * 1000)
            return round(wall * self.opts.gpu_per_wall[mode])
        if until_ms is not None or h.task_type not in TASK_TYPES:
            return 0
        return self.settings.estimate_ms(TaskType(h.task_type))

    def _output(self, task: dict[str, Any], h: Handle, ran: Mode | None) -> dict[str, Any]:
        """The result stored on the task: what its children need (proxy id, buttons, the
        prompt), and what the job made as the simulator shapes it (`_made`)."""
        listed = task.get("buttons")
        buttons = [
            {k: b.get(k) for k in ("customId", "label", "emoji")}
            for b in (listed if isinstance(listed, list) else [])
            if isinstance(b, dict) and b.get("customId")
        ]
        output: dict[str, Any] = {
            "image_url": task.get("imageUrl"),
            "proxy_task_id": str(task.get("id") or h.task_id),
            "buttons": buttons,
            "prompt": task.get("promptEn") or task.get("prompt"),
            "account_id": h.account_id,
            "mode": ran or h.mode,
            "job_ref": f"{h.account_id}:{h.task_id}",
        }
        return {**output, **_made(task, h)}

    def cancel(self, handle: str) -> int:
        """Neither server can stop a job, so this fetches it: once it reports an end,
        returns its run (estimated as in `_gpu_ms`); while it runs, raises
        CancelUnsupported. novicezk has no cancel (its mappings: controller/
        SubmitController.java:58-173, TaskController.java:37-61). trueai's answers 400 to
        any non-admin token and, for an admin, marks the task FAILURE "取消任务" while
        sending Midjourney nothing (src/Midjourney.API/Controllers/TaskController.cs:86-125):
        the job runs on, spending the account's time, and could no longer be followed.
        Fetch errors pass on (AccountRefused, TransientError: ask again; UnknownJob)."""
        h = Handle.parse(handle)
        backend = self._backend(h.owner, h.account_id)
        task = self._fetch(backend, h)
        now_ms = int(time.time() * 1000)
        if str(task.get("status") or "") in ENDED:
            return self._gpu_ms(task, h, until_ms=now_ms)
        raise CancelUnsupported(
            f"a {self.server(backend).name} proxy cannot stop task {h.task_id}; it runs on",
            self._gpu_ms(task, h, now_ms),
        )

    def lookup(self, account: AccountRef, key: str, started_ms: int | None = None) -> str | None:
        """Finds the job whose `state` is `key` (both servers store and echo it: trueai
        SubmitController.cs:1056, novicezk dto/BaseSubmitDTO.java:11-15). Neither can be
        asked by `state`: list-by-condition takes task ids only (trueai TaskController.cs:
        189-207, novicezk controller/TaskController.java:61-80). So: novicezk's unfinished
        tasks (`GET /mj/task/queue`), then every task it stores (`GET /mj/task/list`, 30
        days); trueai's latest 100 (`GET /mj/task/list`, TaskController.cs:177-182).

        None only when the proxy answered a list that would hold the job had it taken it
        (a whole list, or a latest-N list reaching back to before the attempt started) and
        the attempt's submissions are old enough to be stored (`submit_window_ms`).
        Otherwise (lookups off, an error, a list too large or too recent, too soon) it
        cannot tell: raises."""
        if not key:
            raise DriverError("a job submitted without a key cannot be looked up")
        if not self.opts.lookup_via_list:
            raise DriverError("this proxy's jobs are not looked up (lookup_via_list is off)")
        backend = self._from_ref(account)
        server = self.server(backend)
        paths = ["/mj/task/queue"] if server.queue_list else []
        for path in [*paths, "/mj/task/list"]:
            status, tasks = self._request(backend, "GET", path, max_body=MAX_LIST_BODY)
            if status >= 400 or not isinstance(tasks, list):
                raise TransientError(f"cannot tell: GET {path} answered HTTP {status}")
            for task in tasks:
                if isinstance(task, dict) and task.get("state") == key and task.get("id"):
                    return self._found(account, backend, task)
        now_ms = int(time.time() * 1000)
        if started_ms is None or now_ms - started_ms < self.submit_window_ms():
            raise TransientError("cannot tell yet: the proxy may still be storing the job")
        times = [_ms(t.get("submitTime")) for t in tasks if isinstance(t, dict)]
        oldest = min((t for t in times if t is not None), default=None)
        if oldest is not None and oldest < started_ms - CLOCK_SLACK_MS:
            return None  # the list reaches back to before the attempt: it would be there
        latest = server.lists_latest
        if server.keeps_tasks and latest is not None and len(tasks) < latest:
            return None  # the whole store, which the job would be in had it been taken
        # Else (the latest N only; or a store a restart may have emptied: novicezk's) the
        # job's absence from the list does not show it was never taken.
        raise TransientError(f"cannot tell: the proxy lists {len(tasks)} tasks, none older")

    def _found(self, account: AccountRef, backend: Backend, task: dict[str, Any]) -> str:
        """The handle of a job found in a list (its mode as reported, else its flag)."""
        mode = self._ran_mode(task)
        if mode is None:
            flags = prompt_flags(str(task.get("prompt") or ""))
            mode = flags[-1] if flags else Mode.FAST  # a child carries its parent's flag
        action = str(task.get("action") or "imagine").lower()
        task_type = action if action in TASK_TYPES else TaskType.IMAGINE.value
        hd = task.get("videoType") == VIDEO_TYPES[True]
        return str(Handle(account.owner, account.id, mode, task_type, str(task["id"]), hd))

    def submit_window_ms(self) -> int:
        """How long after an attempt starts a job it submitted may still be unlisted: its
        worker's submit requests (each retry, and an inpaint's modal, may wait out the
        request timeout after backoffs) plus STORING_MS for the proxy to store the last."""
        s = self.settings
        backoffs = s.transient_backoff_seconds * float(2**s.transient_retries - 1)
        requests = 2 * (s.transient_retries + 1) * self.opts.request_timeout_seconds
        return round((backoffs + requests) * 1000) + STORING_MS

    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        """Nothing to send: neither server offers a client a mode switch (trueai sends
        Midjourney /relax itself, on "Credits exhausted" with EnableAutoSetRelax:
        DiscordWebSocketService.cs:1958-2006). Every prompt carries the flag of the mode it
        runs in, and a job without one is sent relax only on an account set to relax
        (`AccountRef.setting`, read at each submit: `_check_mode`)."""
        log.debug("account %s is now %s; its prompts carry the mode flag", account.id, setting)


def _image(image: str, server: Server) -> str:
    """An image as the server takes it: trueai a link or base64, bare or a data URL (src/
    Midjourney.Base/Dto/DataUrl.cs:83-125); novicezk a data URL only (its DataUrlSerializer:
    controller/SubmitController.java:158-164), bare base64 being PNG as trueai reads it
    (DataUrl.cs:117)."""
    if server.buttons or image.startswith("data:"):
        return image
    if re.match(r"https?://", image, re.I):
        raise DriverError(f"a {server.name} proxy takes images as base64 only, not links")
    return f"data:image/png;base64,{image}"


def _hd(job: DriverJob) -> bool:
    """Whether a video job is HD: its input says, else an extend is as its parent."""
    if job.task_type not in VIDEO_JOBS:
        return False
    asked = is_hd(job.input)
    if asked is None and job.task_type in INHERITED and job.parent_result:
        return bool(job.parent_result.get("hd"))
    return bool(asked)


def _video_params(job: DriverJob) -> dict[str, Any]:
    """A video's or extend's motion, loop, batch size and resolution, in trueai's names
    (src/Midjourney.Base/Dto/SubmitVideoDTO.cs:38-86), where the input gives them."""
    given = job.input
    params: dict[str, Any] = {"motion": str(given.get("motion") or "low").lower()}
    if isinstance(given.get("loop"), bool):
        params["loop"] = given["loop"]
    params["batchSize"] = batch_size("", given)  # what the router estimated, a whole number
    params["videoType"] = VIDEO_TYPES[_hd(job)]
    return params


def _made(task: dict[str, Any], h: Handle) -> dict[str, Any]:
    """What a describe, shorten or video job made, as the simulator shapes it
    (`workers.drivers.simulated._output`): `prompts`, from a describe's finalPrompt (trueai
    src/Midjourney.Services/DiscordWebSocketService.cs:2633-2640; novicezk wss/handle/
    DescribeSuccessHandler.java:60-63) or a shorten's (DiscordWebSocketService.cs:
    2705-2712); a video's `video_urls`, its clips' CDN links where trueai fills them,
    else its `videoUrl` or first attachment (src/Midjourney.Base/Models/TaskInfo.cs:
    745-808; DiscordWebSocketService.cs:3862), and `hd`."""
    props = task.get("properties")
    props = props if isinstance(props, dict) else {}
    if h.task_type in ("describe", "shorten"):
        said = props.get("finalPrompt") or task.get("promptEn") or task.get("description")
        return {"prompts": prompts(str(said or ""))}
    if h.task_type not in VIDEO_JOBS:
        return {}
    listed = task.get("videoUrls")
    urls = [
        str(v["url"])
        for v in (listed if isinstance(listed, list) else [])
        if isinstance(v, dict) and v.get("url")
    ]
    urls = urls or [str(u) for u in (task.get("videoUrl"), task.get("imageUrl")) if u][:1]
    hd = h.hd or task.get("videoType") == VIDEO_TYPES[True]
    return {"video_urls": urls, "hd": bool(hd)}


def _ms(value: object) -> int | None:
    """A time in ms as the servers send it (a whole number), else None: a bool, a string,
    a fraction or a number beyond any date is not one."""
    if type(value) is float and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 < value < 10**15 else None
