"""trueai-org/midjourney-proxy v11.10.3 (commit ed32197) fronting one Discord account.

Citations: paths from the repository root; in a docstring a bare `:N` or file name refers
to the last full path it names. Not modelled: describe, blend, shorten, edits, video,
uploads, remix (off), YouChuan/official accounts, daily limits, info sync. Notify hooks:
`ProxyModel.notify_changes`.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from tests.proxy_models.common import (
    CHANNEL_ID,
    MJ_EMBEDS,
    ProxyModel,
    Reply,
    Request,
    Task,
    grid_buttons,
    keywords,
    mj_mode,
    now_ms,
    submit,
    upscale_buttons,
    with_mode_flag,
)

VERSION = "v11.10.3.0"
"""trueai src/Midjourney.Base/GlobalConfiguration.cs:44 ("v" and the assembly version of
src/Midjourney.API/Midjourney.API.csproj:12)."""
DEFAULT_MODES = ["FAST", "TURBO", "RELAX"]
"""trueai src/Midjourney.Services/DiscordAccountService.cs:143-148,
trueai src/Midjourney.Services/TaskService.cs:1259-1264."""
INSTANCE = {"discordInstanceId": CHANNEL_ID, "discordChannelId": CHANNEL_ID}
"""trueai src/Midjourney.Base/Models/SubmitResultVO.cs:74-84."""
NO_ACCOUNT = "无可用的账号实例"
QUEUE_FULL = "提交失败，队列已满，请稍后重试"  # noqa: RUF001 (the server's text)
DEMO = "演示模式，禁止操作"  # noqa: RUF001 (the server's text)
STATE_TOO_LONG = "State参数过长，最大255字符"  # noqa: RUF001 (the server's text)
HOOK_TOO_LONG = "NotifyHook参数过长，最大2000字符"  # noqa: RUF001 (the server's text)
RETRY = "任务失败，请重试"  # noqa: RUF001 (the server's text)
IN_QUEUE = "排队中，前面还有{}个任务"  # noqa: RUF001 (the server's text)
MODAL_PREFIXES = ("MJ::CustomZoom::", "MJ::Inpaint::")
ACTIONS = [
    ("MJ::JOB::upsample::", "UPSCALE"), ("MJ::JOB::video_virtual_upscale", "UPSCALE"),
    ("MJ::JOB::variation::", "VARIATION"), ("MJ::JOB::reroll::", "REROLL"),
    ("MJ::JOB::high_variation::", "VARIATION"), ("MJ::JOB::low_variation::", "VARIATION"),
    ("MJ::Outpaint::", "ZOOM"), ("MJ::JOB::pan_", "PAN"), ("MJ::JOB::upsample_", "UPSCALE_HD"),
    ("MJ::CustomZoom::", "ZOOM"), ("MJ::Inpaint::", "VARIATION"), ("MJ::JOB::animate_", "VIDEO"),
]  # fmt: skip
"""customId prefix -> action: trueai src/Midjourney.API/Controllers/SubmitController.cs:516-688
(PicReader and describe retries not modelled)."""
REROLLABLE = {"IMAGINE", "VARIATION", "DESCRIBE", "BLEND", "PAN", "ZOOM", "SHORTEN", "VIDEO"}
REROLLABLE |= {"EDIT", "UPSCALE_HD", "RETEXTURE"}
"""trueai src/Midjourney.API/Controllers/SubmitController.cs:577-620 (an UPSCALE: IMAGINE)."""


def envelope(success: bool, message: str, **data: Any) -> dict[str, Any]:
    """`Result`: code 0, or -1 on failure; `timestamp` is DateTime.Now.Ticks as a string
    (trueai src/Midjourney.Base/Models/Result.cs:29-37,71-74,111-115)."""
    ticks = str(621_355_968_000_000_000 + now_ms() * 10_000)
    code = 0 if success else -1
    return {"success": success, "code": code, "message": message, "timestamp": ticks, **data}


def speed(prompt: str, mode: str) -> str:
    """`AppendSpeedMode`: the exact lowercase flags removed, the mode's appended
    (trueai src/Midjourney.Base/Extensions/CommonExtensions.cs:616-628,673-704)."""
    return f"{unflagged(prompt)} --{mode.lower()}"


def unflagged(prompt: str) -> str:
    return prompt.replace("--fast", "").replace("--relax", "").replace("--turbo", "").strip()


class TrueAiModel(ProxyModel):
    """The proxy and its account. State to read and set: `fast_available` (the proxy's
    Redis estimate), `allow_modes` ([] = all), `fast_exhausted`, `enabled`,
    `disabled_reason`, `locked` (captcha), `auto_relax`, `core_size`, `queue_size`,
    `mj_fast_jobs`, `mj_setting`, `rate_limit` (next N requests: 429), `blacklisted` (403).
    `secret` None: guests enabled; `admin_secret`: an admin's token."""

    server = "trueai"
    STATUS_ORDER: ClassVar[dict[str, int]] = {
        "NOT_START": 0, "SUBMITTED": 1, "IN_PROGRESS": 3, "FAILURE": 4, "SUCCESS": 5,
    }  # fmt: skip
    """`GetOrder` (trueai src/Midjourney.Base/Models/Enums.cs:224-237; others 0)."""

    def __init__(
        self, secret: str | None = "stub-secret", run_ms: int = 50, slow_seconds: float = 2.0,
        list_failures: int = 0, fast_jobs: int = 1000, auto_relax: bool = True,
        admin_secret: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(secret, run_ms, slow_seconds, list_failures, fast_jobs)
        self.admin_secret, self.auto_relax = admin_secret, auto_relax
        self.fast_available = fast_jobs
        self.allow_modes: list[str] = []
        self.fast_exhausted, self.locked, self.blacklisted, self.rate_limit = False, False, False, 0
        self.disabled_reason: str | None = None
        self.loop_ms = max(1, run_ms // 2)
        """The 3 s progress loop (trueai src/Midjourney.Services/DiscordService.cs:2605-2622),
        compressed: how long a cancelled running task still shows as running."""

    # Before any controller.
    def user(self, req: Request) -> str | None:
        """`Authorization` if present, else `Mj-Api-Secret`, compared verbatim
        (trueai src/Midjourney.API/WorkContext.cs:46-48,62-72)."""
        token = req.headers.get("authorization", req.headers.get("mj-api-secret", ""))
        if token and token == self.admin_secret:
            return "admin"
        return "user" if token and token == self.secret else None

    def gate(self, req: Request) -> Reply | None:
        """/mj/home is anonymous (trueai src/Midjourney.API/Controllers/HomeController.cs:38).
        No user: 401, text, no Content-Type (trueai src/Midjourney.API/SimpleAuthMiddleware.cs:
        116-121); then, admins excepted, 403 (blacklist) or 429 (rate), no body
        (trueai src/Midjourney.API/RateLimitingMiddleware.cs:62-114)."""
        if req.method == "GET" and req.path == "/mj/home":
            return None
        user = self.user(req)
        if user is None and self.secret is not None:
            return Reply(401, text="Authorization header missing.")
        if user == "admin":
            return None
        if self.blacklisted:
            return Reply(403)
        if self.rate_limit > 0:
            self.rate_limit -= 1
            return Reply(429)
        return None

    def route(self, req: Request) -> Reply:
        """Controllers also under the mode prefixes, which set the request's mode
        (trueai src/Midjourney.API/Controllers/SubmitController.cs:36-40,113-123,
        trueai src/Midjourney.API/SimpleAuthMiddleware.cs:54-69); no other route (change,
        queue): a bare 404. `servererror`: an exception before the controllers (reading the
        user, trueai src/Midjourney.API/WorkContext.cs:71), a bare 500. A body that does not
        bind: 200, Result.Fail (trueai src/Midjourney.API/Program.cs:229-237) with the
        framework's first error (the fallback text here)."""
        if req.method == "GET" and req.path == "/mj/home":
            return self.home()
        found = re.fullmatch(r"(?:/mj-(fast|relax|turbo))?(/mj/.*)", req.path, re.I)
        prefix = found.group(1).upper() if found and found.group(1) else None
        path, post = found.group(2) if found else req.path, req.method == "POST"
        task = re.fullmatch(r"/mj/task/([^/]+)/(fetch|cancel)", path)
        if "servererror" in req.kw:
            return Reply(500)
        binds = not req.malformed and isinstance(req.body, dict)
        if post and path.startswith(("/mj/submit/", "/mj/task/list-by-")) and not binds:
            return Reply(200, envelope(False, "参数异常"))
        if post and path in ("/mj/submit/imagine", "/mj/submit/action", "/mj/submit/modal"):
            handler = {"imagine": self.imagine, "action": self.action, "modal": self.modal}
            return handler[path.rsplit("/", 1)[1]](req, prefix)
        if req.method == "GET" and task and task.group(2) == "fetch":
            # null: a 204 (trueai src/Midjourney.API/Controllers/TaskController.cs:75-79)
            stored = self.tasks.get(task.group(1))
            return Reply(204) if stored is None else Reply(200, self.view(stored))
        if post and task:
            return self.cancel(req, task.group(1))
        if req.method == "GET" and path == "/mj/task/list":
            # The latest 100 (trueai src/Midjourney.API/Controllers/TaskController.cs:177-182).
            return self.listing(100)
        if post and path in ("/mj/task/list-by-condition", "/mj/task/list-by-ids"):
            # {ids} trimmed, unknown ids left out, store order
            # (trueai src/Midjourney.API/Controllers/TaskController.cs:189-207).
            ids = {str(i).strip() for i in req.body.get("ids") or []}
            return Reply(200, [self.view(t) for i, t in self.tasks.items() if i in ids])
        return Reply(404)

    def home(self) -> Reply:
        """trueai src/Midjourney.API/Controllers/HomeController.cs:59-230: the estimate of
        enabled accounts, relax -1 (unlimited) (trueai src/Midjourney.Services/
        NotifyService.cs:180-216,269-293); "操作成功" from trueai src/Midjourney.API/Filters/
        CustomActionFilterAttribute.cs:61-69."""
        data = {
            "isRegister": False, "isGuest": self.secret is None, "isDemoMode": False,
            "version": VERSION, "totalDraw": len(self.tasks),
            "fastAvailableCount": self.fast_available if self.enabled else 0,
            "relaxAvailableCount": -1 if self.enabled else 0, "youChuanRelaxAvailableCount": 0,
        }  # fmt: skip
        return Reply(200, envelope(True, "操作成功", data=data))

    def cancel(self, req: Request, task_id: str) -> Reply:
        """trueai src/Midjourney.API/Controllers/TaskController.cs:86-125: non-admin, 400 (a
        string: JSON if asked for, else text); admin, 200, no body. A running task fails in
        memory, its stale copy saved (:103-107), shown failed after `loop_ms`; a queued or
        MODAL one at once (:108-119). Midjourney is not told: the job runs and is charged."""
        if self.user(req) != "admin":
            if "application/json" in req.headers.get("accept", ""):
                return Reply(400, DEMO)
            return Reply(400, text=DEMO, headers={"Content-Type": "text/plain; charset=utf-8"})
        task = self.tasks.get(task_id)
        if task is not None and task["status"] not in ("SUCCESS", "FAILURE"):
            if task_id in self._active:
                task.setdefault("_fail_at", (self._clock + self.loop_ms, "取消任务", self._clock))
            else:
                self.finish(task, self._clock, "取消任务")
        return Reply(200)

    # Submissions.
    def alive(self) -> bool:
        """trueai src/Midjourney.Services/DiscordService.cs:481-520 (enabled, not locked)."""
        return self.enabled and not self.locked

    def qualifies(self, mode: str, kw: frozenset[str]) -> bool:
        """Alive and enabled (trueai src/Midjourney.Services/DiscordAccountService.cs:
        155-169), then `IsAllowContinue` (trueai src/Midjourney.Services/DiscordService.cs:
        590-739): mode allowed (:600-603); FAST > 6, TURBO > 12 (:628-638); queue not full
        (:657-662); not relax: > 3 and > CoreSize (+ QueueCount, a display field: 0), or >
        jobs running and queued (:711-735)."""
        fast = self.fast_available
        if not self.alive() or (self.allow_modes and mode not in self.allow_modes):
            return False
        if (mode == "FAST" and fast <= 6) or (mode == "TURBO" and fast <= 12):
            return False
        if "queuefull" in kw or 0 < self.queue_size <= len(self._waiting):
            return False
        busy = self.slots_used() + len(self._waiting)
        return mode == "RELAX" or (fast > 3 and (fast > self.core_size or fast > busy))

    def imagine(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:131-206: blank prompt,
        4 (:136-140); state over 255, then notifyHook over 2000, 4 (:1039-1048, :196-199).
        Modes: the prefix's, then `--fast` (any case), `--relax`, `--turbo` (:1262-1307),
        else FAST, TURBO, RELAX; none qualifies: 3, not stored (trueai src/Midjourney.
        Services/TaskService.cs:72-80); the mode is the one that did (:82). `race9`: the
        push loses its race
        (trueai src/Midjourney.Services/DiscordService.cs:1636-1643)."""
        prompt, state, hook = (req.body.get(k) for k in ("prompt", "state", "notifyHook"))
        if not isinstance(prompt, str) or not prompt.strip():
            return submit(4, "prompt不能为空")
        prompt = prompt.strip()
        if isinstance(state, str) and len(state) > 255:
            return submit(4, STATE_TOO_LONG)
        if isinstance(hook, str) and len(hook) > 2000:
            return submit(4, HOOK_TOO_LONG)
        modes = [prefix] if prefix else []
        flag = next((m for m in ("--fast", "--relax", "--turbo") if m in prompt), None)
        flag = "--fast" if "--fast" in prompt.lower() else flag
        if flag and flag[2:].upper() not in modes:
            modes.append(flag[2:].upper())
        mode = next((m for m in modes or DEFAULT_MODES if self.qualifies(m, req.kw)), None)
        if mode is None:
            return submit(3, NO_ACCOUNT)
        if "race9" in req.kw:
            return submit(9, QUEUE_FULL, **INSTANCE)
        task = self.record("IMAGINE", prompt, state, hook)
        task.update(description=f"/imagine {prompt}", mode=mode)
        task["requestMode"] = modes[0] if modes else None
        return self.queued(task)

    def action(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:434-693: blank ids, 4
        (:437-440); no parent, HTTP 404 code 3 (:498-501); parent not SUCCESS, 4 (:503-506);
        a long state's or notifyHook's LogicException is not caught (:508): the -1 envelope
        (trueai src/Midjourney.API/Filters/CustomLogicExceptionFilterAttribute.cs:39-51);
        the action from the customId (:516-688); the prefix only as requestMode (:1060).
        trueai src/Midjourney.Services/TaskService.cs: the parent's prompt, promptEn its
        unflagged finalPrompt (:1528-1538); zoom and vary region wait: 21, MODAL (:1697-1719)."""
        parent_id, custom_id, state, hook = (
            req.body.get(k) for k in ("taskId", "customId", "state", "notifyHook")
        )
        if not parent_id or not custom_id:
            return submit(4, "参数错误")
        parent = self.tasks.get(str(parent_id))
        if parent is None:
            return Reply(404, submit(3, "关联任务不存在或已失效").body)
        if parent["status"] != "SUCCESS":
            return submit(4, "关联任务状态错误")
        if isinstance(state, str) and len(state) > 255:
            return Reply(200, envelope(False, STATE_TOO_LONG))
        if isinstance(hook, str) and len(hook) > 2000:
            return Reply(200, envelope(False, HOOK_TOO_LONG))
        custom_id = str(custom_id)
        action = next((a for p, a in ACTIONS if custom_id.startswith(p)), None)
        if action is None:
            return submit(4, "未知的 Action 类型")
        if action == "REROLL":
            action = "IMAGINE" if parent["action"] == "UPSCALE" else parent["action"]
            if action not in REROLLABLE:
                return submit(4, "该任务不支持重新生成")
        mode = self.choose_for_action(action, parent["_kw"])
        if mode is None:
            return submit(3, NO_ACCOUNT)
        task = self.record(action, parent["prompt"], state, hook)
        final = unflagged(str(parent["properties"].get("finalPrompt") or ""))
        task.update(parentId=parent["id"], promptEn=final or parent["promptEn"])
        task.update(mode=mode, requestMode=prefix)
        task["properties"]["custom_id"] = custom_id
        if not custom_id.startswith(MODAL_PREFIXES):
            return self.queued(task)
        task["status"] = "MODAL"
        if custom_id.startswith("MJ::Inpaint::"):
            task.update(prompt="", promptEn="")
        else:
            # trueai src/Midjourney.API/Controllers/SubmitController.cs:657
            task["description"] = "Waiting for window confirm"
        self.tasks[task["id"]] = task
        props = {"finalPrompt": task["promptEn"], "remix": True}
        return submit(21, "Waiting for window confirm", task["id"], **props)

    def choose_for_action(self, action: str, kw: frozenset[str]) -> str | None:
        """The parent's account, whatever the path prefix: FAST, TURBO, RELAX in turn; an
        upscale only needs the account alive and is FAST; none: 3
        (trueai src/Midjourney.Services/TaskService.cs:1256-1264,1341-1373,1473-1493)."""
        if action == "UPSCALE":
            return "FAST" if self.alive() else None
        return next((m for m in DEFAULT_MODES if self.qualifies(m, kw)), None)

    def modal(self, req: Request, _prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:700-773: blank taskId,
        4; no task, HTTP 404 code 3; blank prompt: the parent's, or its finalPrompt
        (:714-737). Prefix, state, maskBase64 (:752-756) and status unread: past MODAL it
        queues and does nothing (trueai src/Midjourney.Services/DiscordService.cs:1927;
        inferred). Mode chosen again (trueai src/Midjourney.Services/TaskService.cs:2058)."""
        if not req.body.get("taskId"):
            return submit(4, "参数错误")
        task = self.tasks.get(str(req.body["taskId"]))
        if task is None:
            return Reply(404, submit(3, "关联任务不存在或已失效").body)
        parent = self.tasks.get(str(task.get("parentId")))
        prompt = req.body.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()) and parent is not None:
            prompt = parent["prompt"] or parent["properties"].get("finalPrompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            return submit(4, "prompt不能为空")
        task.update(prompt=prompt, promptEn=prompt, _kw=keywords(prompt))
        if parent is None:  # trueai src/Midjourney.Services/TaskService.cs:1233-1237
            return submit(3, "目标任务不存在")
        mode = self.choose_for_action(task["action"], task["_kw"])
        if mode is None:
            return submit(3, NO_ACCOUNT)
        task["mode"] = mode
        return self.queued(task)

    def queued(self, task: Task) -> Reply:
        """`RedisEnqueue` (trueai src/Midjourney.Services/DiscordService.cs:1551-1676): 1 with
        nothing waiting ahead, else 22 with numberOfQueues (:1655-1664); 9 when full
        (:1627-1632). An upscale has its own queue, taken at once without a slot
        (:1566-1580,1169-1172)."""
        if task["action"] == "UPSCALE":
            self.tasks[task["id"]] = task
            self.start(task, self._clock, slot=False)
            ahead = 0
        elif 0 < self.queue_size <= len(self._waiting):
            return submit(9, QUEUE_FULL, **INSTANCE)
        else:
            ahead = self.enqueue(task)
        if ahead == 0:
            return submit(1, "提交成功", task["id"], **INSTANCE)
        return submit(22, IN_QUEUE.format(ahead), task["id"], numberOfQueues=ahead, **INSTANCE)

    # Running.
    def record(self, action: str, prompt: str | None, state: Any, hook: Any = None) -> Task:
        """Fields of trueai src/Midjourney.Base/Models/TaskInfo.cs:112-442 a client reads."""
        task = super().record(action, prompt, state, hook)
        task["properties"].update(botType="MID_JOURNEY", **INSTANCE)
        more = {"parentId": None, "botType": "MID_JOURNEY", "instanceId": CHANNEL_ID,
                "nonce": task["properties"]["nonce"], "buttons": [], "seed": None,
                "mode": None, "requestMode": None}  # fmt: skip
        return {**task, **more}

    def view(self, task: Task) -> dict[str, Any]:
        """camelCase, string enums (trueai src/Midjourney.API/Program.cs:215-223), and
        `isCompleted` (trueai src/Midjourney.Base/Models/TaskInfo.cs:200-204)."""
        done = task["status"] in ("SUCCESS", "FAILURE", "CANCEL")
        return {**super().view(task), "isCompleted": done}

    def consuming(self) -> bool:
        """Not while dead (trueai src/Midjourney.Services/DiscordService.cs:1069-1082)."""
        return self.alive()

    def dequeue(self, task: Task, t: int) -> None:
        """trueai src/Midjourney.Services/DiscordService.cs:1860-2045: a cancelled task is
        skipped (:1865-1870); banned words fail it (:1883-1925); NOT_START and MODAL run
        (:1927). Discord refuses a button the message lacks: failed with the status and the
        payload sent (:2024-2033,4012-4014,4037)."""
        if task["status"] in ("SUCCESS", "FAILURE"):
            return
        if "badprompt" in task["_kw"]:
            self.finish(task, t, "可能包含敏感词")
            return
        if task["status"] not in ("NOT_START", "MODAL"):
            return
        parent = self.tasks.get(str(task["parentId"]))
        custom_id = str(task["properties"].get("custom_id") or "")
        if parent and custom_id and custom_id not in {b["customId"] for b in parent["buttons"]}:
            sent = {"type": 3, "message_id": parent["id"], "data": {"custom_id": custom_id}}
            self.finish(task, t, f"BadRequest: {json.dumps(sent)}"[:1000])
            return
        self.start(task, t, slot=True)

    def mj_job(self, task: Task) -> tuple[str, str]:
        """`GetPrompt` on imagine and modal prompts (trueai src/Midjourney.Services/
        DiscordService.cs:3254-3317, via :2882,3084,3563): the task's mode flag for the
        prompt's (:3282-3286), disallowed flags cut (:3288-3311), `--relax` when exhausted
        with auto relax (:3313-3317). A button job sends no prompt (:2024-2027)."""
        custom_id = task["properties"].get("custom_id")
        prompt = " ".join(re.sub(r"-{3,}", " ", str(task["promptEn"] or "")).split())
        if (custom_id and not custom_id.startswith(MODAL_PREFIXES)) or not prompt:
            mode = self.mj_setting.upper()
            return mode, with_mode_flag(prompt, mode)
        if task["mode"]:
            prompt = speed(prompt, task["mode"])
        for mode in DEFAULT_MODES if self.allow_modes else []:
            if mode not in self.allow_modes:
                prompt = prompt.replace(f"--{mode.lower()}", "")
        if self.fast_exhausted and self.auto_relax:
            prompt = speed(prompt, "RELAX")
        return mj_mode(prompt, self.mj_setting), prompt

    def mj_result(self, task: Task, outcome: str, t: int) -> None:
        """trueai src/Midjourney.Services/DiscordWebSocketService.cs. Success (:2545-2592):
        the message's buttons, blanks filled, mode from "(fast)"/"(relaxed)"/"(turbo)"
        (also the finalPrompt flag: trueai src/Midjourney.Base/Models/TaskInfo.cs:681-727);
        the estimate -1 fast, -2 turbo, not upscales (trueai src/Midjourney.Services/
        DiscordService.cs:2663-2712). "Credits exhausted" (DiscordWebSocketService.cs:
        1532-1593): failed, `MarkFastExhausted` (trueai src/Midjourney.Base/Models/
        DiscordAccount.cs:1081-1113), /relax sent (DiscordWebSocketService.cs:1958-2006) or,
        without auto relax, disabled. "Blocked", "Pending mod message" (:1595-1628): the
        title, disabled (both 5 s later there, at once here). Error titles (:1519-1526,
        1686-1745): "{title}, {desc}". Captcha: locked (:831-863,973), the job times out."""
        title, desc = MJ_EMBEDS.get(outcome, ("", ""))
        if outcome == "success":
            self.succeed(task, t)
            up = task["action"] == "UPSCALE"
            task["buttons"] = (upscale_buttons if up else grid_buttons)(f"{task['id']}-hash")
            task.update(description=task["description"] or "Submit success", failReason="")
            task.update(state=task["state"] or "", mode=task["_mj_mode"])
            if not up and task["mode"] != "RELAX":
                self.fast_available -= 2 if task["mode"] == "TURBO" else 1
        elif outcome == "credits":
            self.finish(task, t, RETRY)
            self.fast_exhausted, self.fast_available, self.core_size = True, 0, 3
            if self.auto_relax:
                self.allow_modes, self.mj_setting = ["RELAX"], "relax"
            else:
                self.disable(t, "账号用量已经用完")
        elif outcome in ("banned", "modnotice"):
            self.finish(task, t, title)
            self.disable(t, f"{title}, {desc}")
        elif outcome in ("oops", "mjqueuefull"):
            task["description"] = f"{title}, {desc}"
            self.finish(task, t, f"{title}, {desc}")
        elif outcome == "captcha":
            self.locked, self.disabled_reason = True, "CF 人工验证..."

    def disable(self, t: int, reason: str) -> None:
        """`Enable = false`, then `Dispose()`: each running task fails "强制取消"
        (trueai src/Midjourney.Services/DiscordService.cs:2825-2861); queued ones stay."""
        self.enabled, self.disabled_reason = False, reason
        for tid in list(self._active):
            self.finish(self.tasks[tid], t, "强制取消")

    def timed_out(self, task: Task, t: int) -> None:
        """trueai src/Midjourney.Services/DiscordService.cs:2593-2620 (TimeoutMinutes)."""
        self.finish(task, t, f"执行超时 {self.timeout_minutes} 分钟")
