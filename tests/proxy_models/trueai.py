"""trueai-org/midjourney-proxy v11.10.3 (commit ed32197) fronting one Discord account.

Citations: paths from the repository root; in a docstring a bare `:N` or file name refers
to the last full path it names. Modelled: imagine, describe, shorten, blend, video (new and
extend), action, modal, remix (off unless `remix`), task fetch/list/list-by-condition,
cancel, home. Not modelled: edits, retexture, uploads as such (a base64 image becomes a
Discord link), describe's own queue, the buttons of a describe or shorten, YouChuan/official
accounts, daily limits, info sync. Notify hooks: `ProxyModel.notify_changes`.
"""

from __future__ import annotations

import base64
import binascii
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
    batch_of,
    button,
    describe_buttons,
    describe_text,
    extend_buttons,
    fast_units,
    grid_buttons,
    keywords,
    mj_mode,
    now_ms,
    shorten_text,
    submit,
    upscale_buttons,
    video_buttons,
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
REMIXED = ("PAN", "VARIATION", "VIDEO")
"""Actions that open Midjourney's remix modal when the account has Remix on, besides
rerolls (trueai src/Midjourney.Services/TaskService.cs:1965-2012)."""
NO_REMIX = "未开启 REMIX，无法使用视频扩展功能"  # noqa: RUF001 (the server's text)
HD_VIDEO = "vid_1.1_i2v_720"
"""trueai src/Midjourney.Base/Dto/SubmitVideoDTO.cs:74-80; TaskInfo.cs:628."""
DIMENSIONS = {"PORTRAIT": "2:3", "SQUARE": "1:1", "LANDSCAPE": "3:2"}
"""trueai src/Midjourney.Services/TaskService.cs:1141-1160."""
USER_ID = "1200000000000000002"
"""The Discord user Midjourney mentions in its messages."""
SUFFIXES = {"FAST": "fast", "RELAX": "relaxed", "TURBO": "turbo"}
MESSAGE_KINDS = {
    "VARIATION": "Variations by ", "PAN": "Pan Left by ", "ZOOM": "Zoom Out by ",
    "UPSCALE_HD": "Upscaled (Subtle) by ",
}  # fmt: skip
"""Midjourney's message content per action: `**<prompt>** - <kind><@user> (<mode>)`; a U's
`**<prompt>** - Image #<n> <@user>`, without a mode (trueai's samples: src/Midjourney.Base/
Utils/MjMessageParser.cs:26-117)."""
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


def flag_mode(prompt: str) -> str | None:
    """The mode a finished task's final prompt names: `--fast` in any case first, then
    `--relax`, then `--turbo` (trueai src/Midjourney.Base/Models/TaskInfo.cs:698-717)."""
    lower = prompt.lower()
    return next((m.upper() for m in ("fast", "relax", "turbo") if f"--{m}" in lower), None)


def data_url(value: Any, n: int) -> str | None:
    """`DataUrl.Parse` (trueai src/Midjourney.Base/Dto/DataUrl.cs:83-125): blank, None; an
    `http` link as it is; else base64, with or without a `data:<type>;base64,` prefix,
    which must decode (ValueError). An uploaded image becomes a Discord link (upload not
    modelled: src/Midjourney.Services/TaskService.cs:605-667)."""
    if not isinstance(value, str) or not value.strip():
        return None
    if value.lower().startswith("http"):
        return value
    found = re.fullmatch(r"data:(.+?);base64,(.+)", value, re.S)
    try:
        base64.b64decode(found.group(2) if found else value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("base64格式错误") from None
    return f"https://cdn.discordapp.invalid/attachments/{CHANNEL_ID}/{n}.png"


class TrueAiModel(ProxyModel):
    """The proxy and its account. State to read and set: `fast_available` (the proxy's
    Redis estimate), `allow_modes` ([] = all), `fast_exhausted`, `enabled`,
    `disabled_reason`, `locked` (captcha), `auto_relax`, `core_size`, `queue_size`,
    `mj_fast_jobs`, `mj_setting`, `rate_limit` (next N requests: 429), `blacklisted` (403);
    for video: `enable_video` (the setting), `remix` and `remix_auto_submit` (the account's
    Remix and trueai's RemixAutoSubmit), `relax_video` and `hd_video` (IsRelaxVideo and
    IsHdVideo: Pro or Mega), `fill_official_cdn` (EnableFillOfficialCdn, off by default:
    trueai src/Midjourney.Base/Models/Setting.cs:45).
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
        self.enable_video, self.remix, self.remix_auto_submit = True, False, False
        self.relax_video, self.hd_video, self.fill_official_cdn = True, True, False
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
        handler = {"imagine": self.imagine, "action": self.action, "modal": self.modal}
        handler.update(describe=self.describe, shorten=self.shorten, blend=self.blend)
        handler["video"] = self.video
        route = path.removeprefix("/mj/submit/")
        if post and path.startswith("/mj/submit/") and route in handler:
            return handler[route](req, prefix)
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
        modes = self.listed_modes(prefix, prompt)
        mode = next((m for m in modes or DEFAULT_MODES if self.qualifies(m, req.kw)), None)
        if mode is None:
            return submit(3, NO_ACCOUNT)
        if "race9" in req.kw:
            return submit(9, QUEUE_FULL, **INSTANCE)
        task = self.record("IMAGINE", prompt, state, hook)
        task.update(description=f"/imagine {prompt}", mode=mode)
        task["requestMode"] = modes[0] if modes else None
        return self.queued(task)

    @staticmethod
    def listed_modes(prefix: str | None, prompt: str | None) -> list[str]:
        """`NewTaskDoFilter`: the prefix's mode, then the prompt's first flag in the order
        `--fast` (any case), `--relax`, `--turbo`; the task's mode is the first listed
        (trueai src/Midjourney.API/Controllers/SubmitController.cs:1262-1307)."""
        modes = [prefix] if prefix else []
        prompt = prompt or ""
        flag = next((m for m in ("--fast", "--relax", "--turbo") if m in prompt), None)
        flag = "--fast" if "--fast" in prompt.lower() else flag
        if flag and flag[2:].upper() not in modes:
            modes.append(flag[2:].upper())
        return modes

    @staticmethod
    def unbound(body: dict[str, Any], fields: dict[str, type | tuple[type, ...]]) -> Reply | None:
        """A field of the wrong JSON type fails binding: 200, Result.Fail (trueai src/
        Midjourney.API/Program.cs:215-237), with the fallback text here. System.Text.Json
        turns no number into a string nor a string into a number or bool; null binds."""
        for name, kind in fields.items():
            value = body.get(name)
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if value is None:
                continue
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                return Reply(200, envelope(False, "参数异常"))
        return None

    def new_task(self, action: str, req: Request, prompt: str | None = None) -> Task | Reply:
        """`NewTask` for the routes that do not catch its LogicException: a state over 255
        or a notifyHook over 2000 characters is the -1 envelope (trueai src/Midjourney.API/
        Controllers/SubmitController.cs:1031-1048; Filters/CustomLogicExceptionFilterAttribute.
        cs:39-51)."""
        state, hook = req.body.get("state"), req.body.get("notifyHook")
        if isinstance(state, str) and len(state) > 255:
            return Reply(200, envelope(False, STATE_TOO_LONG))
        if isinstance(hook, str) and len(hook) > 2000:
            return Reply(200, envelope(False, HOOK_TOO_LONG))
        return self.record(action, prompt, state, hook)

    def describe(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:280-335: neither base64
        nor link, 4 (:283-287); a link not `^https?://.+`, 4 (:289-293); base64 that does
        not parse, 4 (:305-312); `NewTask`; the prefix's mode (:1262-1307); no account, 3
        (trueai src/Midjourney.Services/TaskService.cs:860-868); the image's link is the
        task's imageUrl (:929-970). Nothing of it is a prompt: Midjourney runs it in the
        account's setting."""
        if bad := self.unbound(req.body, {"base64": str, "link": str, "botType": str}):
            return bad
        image, link = req.body.get("base64"), req.body.get("link")
        if not (isinstance(image, str) and image.strip()) and not (
            isinstance(link, str) and link.strip()
        ):
            return submit(4, "base64或link不能为空")
        if isinstance(link, str) and link.strip() and not re.match(r"https?://.+", link):
            return submit(4, "链接格式错误")
        try:
            url = data_url(image, 0) if isinstance(image, str) and image.strip() else link
        except ValueError as e:
            return submit(4, str(e))
        task = self.new_task("DESCRIBE", req)
        if isinstance(task, Reply):
            return task
        if not self.alive():
            return submit(3, NO_ACCOUNT)
        modes = self.listed_modes(prefix, None)
        task.update(description="/describe", imageUrl=url, mode=modes[0] if modes else None)
        task["requestMode"] = task["mode"]
        return self.queued(task)

    def shorten(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:345-376: no prompt
        check; `NewTask`; modes as imagine's (:1262-1307); none qualifies, 3 (trueai src/
        Midjourney.Services/TaskService.cs:984-1010). `GetPrompt` gives the prompt its mode
        (trueai src/Midjourney.Services/DiscordService.cs:2413-2436)."""
        if bad := self.unbound(req.body, {"prompt": str, "botType": str, "base64Array": list}):
            return bad
        prompt = req.body.get("prompt")
        task = self.new_task("SHORTEN", req, prompt)
        if isinstance(task, Reply):
            return task
        modes = self.listed_modes(prefix, prompt)
        mode = next((m for m in modes or DEFAULT_MODES if self.qualifies(m, req.kw)), None)
        if mode is None:
            return submit(3, NO_ACCOUNT)
        task.update(description=f"/shorten {prompt}", mode=mode)
        task["requestMode"] = modes[0] if modes else None
        return self.queued(task)

    def blend(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:383-425: fewer than 2 or
        more than 5 images, 4 (:386-390); an explicit null `dimensions`, 4 (:399-402); an
        image that does not parse, 4 (:404-414); `NewTask`; the prefix's mode only (no
        prompt); none qualifies, 3. The prompt Midjourney gets: the images' links and the
        dimensions' `--ar` (trueai src/Midjourney.Services/TaskService.cs:1019-1161), then
        `GetPrompt`'s mode flag."""
        fields = {"base64Array": list, "dimensions": str, "botType": str}
        if bad := self.unbound(req.body, fields):
            return bad
        images, dims = req.body.get("base64Array"), req.body.get("dimensions", "SQUARE")
        if isinstance(dims, str) and dims.upper() not in DIMENSIONS:
            return Reply(200, envelope(False, "参数异常"))  # not a BlendDimensions
        if not isinstance(images, list) or not 2 <= len(images) <= 5:
            return submit(4, "图片参数错误，2~5张图片")  # noqa: RUF001 (the server's text)
        if dims is None:
            return submit(4, "dimensions参数错误")
        if not all(isinstance(i, str) for i in images):
            return Reply(200, envelope(False, "参数异常"))  # not a List<string>
        try:  # blank ones are skipped (trueai src/Midjourney.Base/Dto/DataUrl.cs:132-149)
            links = [data_url(i, n) for n, i in enumerate(images) if i.strip()]
        except ValueError as e:
            return submit(4, str(e))
        task = self.new_task("BLEND", req)
        if isinstance(task, Reply):
            return task
        modes = self.listed_modes(prefix, None)
        mode = next((m for m in modes or DEFAULT_MODES if self.qualifies(m, req.kw)), None)
        if mode is None:
            return submit(3, NO_ACCOUNT)
        prompt = f"{' '.join(str(u) for u in links)} --ar {DIMENSIONS[dims.upper()]}"
        task.update(prompt=prompt, promptEn=prompt, mode=mode)
        task["requestMode"] = modes[0] if modes else None
        task["description"] = f"/blend {task['id']} {len(links)}"
        return self.queued(task)

    def allow_video(self, mode: str) -> bool:
        """`IsAllowGenerateVideo` on a Discord account: relax needs IsRelaxVideo; fast and
        turbo more than 8 and 16 fast jobs, or IsRelaxVideo
        (trueai src/Midjourney.Services/DiscordService.cs:334-385)."""
        if mode == "RELAX":
            return self.relax_video
        return self.fast_available > (16 if mode == "TURBO" else 8) or self.relax_video

    def video(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:922-1024 and src/
        Midjourney.Services/TaskService.cs:429-850, in order: video off, 4; a blank prompt,
        4 (even for an extend); an image that does not parse, 4; `NewTask`; with a taskId,
        `action` not exactly "extend", 4; no such task, HTTP 404 code 3; not SUCCESS, 4;
        "extend" without a taskId, 3 (TaskService.cs:439-444). The account: an extend's
        parent's, FAST, TURBO, RELAX in turn with video allowed (:446-450, 1256-1493),
        whose mode becomes the task's; a new video's likewise (:456-464), the task keeping
        the prefix's mode if one was given (:492-495). None, 3; Remix off, 9 (:469-484); HD
        without IsHdVideo, 3 (:486-490). The prompt built (:684-727); an extend is queued as
        the upscale of its clip, `video_virtual_upscale::<index+1>` on the parent's message
        (:775-830), then pressed and answered as an extend with that prompt, which
        `GetPrompt` gives the task's mode (src/Midjourney.Services/DiscordWebSocketService.
        cs:4084-4225)."""
        fields = {"prompt": str, "motion": str, "image": str, "endImage": str, "loop": bool}
        fields |= {"action": str, "index": int, "taskId": str, "videoType": str, "batchSize": int}
        if bad := self.unbound(req.body, fields):
            return bad
        body = req.body
        if not self.enable_video:
            return submit(4, "视频功能未启用")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return submit(4, "Prompt 不能为空")
        try:
            start, end = data_url(body.get("image"), 0), data_url(body.get("endImage"), 1)
        except ValueError as e:
            return submit(4, str(e))
        task = self.new_task("VIDEO", req, prompt)
        if isinstance(task, Reply):
            return task
        target, action = body.get("taskId"), body.get("action")
        parent = None
        if isinstance(target, str) and target.strip():
            if action != "extend":
                return submit(4, "任务类型错误")
            parent = self.tasks.get(target)
            if parent is None:
                return Reply(404, submit(3, "关联任务不存在或已失效").body)
            if parent["status"] != "SUCCESS":
                return submit(4, "关联任务状态错误")
        extend = isinstance(action, str) and action.lower() == "extend"
        if extend and parent is None:
            return submit(3, "目标任务不存在")
        hd = body.get("videoType", "vid_1.1_i2v_480") == HD_VIDEO
        found = next(
            (m for m in DEFAULT_MODES if self.qualifies(m, req.kw) and self.allow_video(m)), None
        )
        if found is None or (hd and not self.hd_video and not extend):  # DiscordAccountService.
            return submit(3, NO_ACCOUNT)  # cs:182-185 filters a new video's accounts
        if not self.remix:
            return submit(9, NO_REMIX)
        if hd and not self.hd_video:
            return submit(3, NO_ACCOUNT)
        built = f"{start} {prompt}" if start and start not in prompt else prompt
        built += "" if "--video" in built.lower() else " --video 1"
        if body.get("loop") and "--end" not in built.lower():
            built += " --end loop"
        if end and "--end" not in built.lower():
            built += f" --end {end}"
        motion = body.get("motion", "low")
        if motion and "--motion" not in built.lower():
            built += f" --motion {motion}"
        size = body.get("batchSize", 4)
        if size in (1, 2) and "--bs" not in built.lower():
            built += f" --bs {size}"
        task.update(prompt=built, promptEn=built, requestMode=prefix)
        task["mode"] = found if extend or not prefix else prefix
        if not extend:
            task["description"] = f"/video {built}"
            return self.queued(task)
        assert parent is not None
        index = body.get("index")
        clip = "" if index is None else index + 1
        hash_ = parent["properties"].get("messageHash") or parent.get("jobId")
        custom_id = f"MJ::JOB::video_virtual_upscale::{clip}::{hash_}"
        task.update(action="UPSCALE", description="/video extend", parentId=parent["id"])
        task.update(videoType=body.get("videoType", "vid_1.1_i2v_480"), _extend=True)
        task["properties"]["custom_id"] = custom_id
        return self.queued(task)

    def action(self, req: Request, prefix: str | None) -> Reply:
        """trueai src/Midjourney.API/Controllers/SubmitController.cs:434-693: blank ids, 4
        (:437-440); no parent, HTTP 404 code 3 (:498-501); parent not SUCCESS, 4 (:503-506);
        a long state's or notifyHook's LogicException is not caught (:508): the -1 envelope
        (trueai src/Midjourney.API/Filters/CustomLogicExceptionFilterAttribute.cs:39-51);
        the action from the customId (:516-688), a U's index as `action_index` (:518-556);
        the prefix only as requestMode (:1060). trueai src/Midjourney.Services/
        TaskService.cs: the parent's prompt, promptEn its unflagged finalPrompt (:1528-1538);
        zoom and vary region wait: 21, MODAL (:1697-1719); with Remix on, a pan, variation,
        video or reroll opens the remix modal: submitted at once with the parent's promptEn
        when RemixAutoSubmit is on, else 21, MODAL (:1965-2012)."""
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
        if action == "UPSCALE":
            index = [*custom_id.split("::"), "", ""][3]
            task["properties"]["action_index"] = int(index) if index.isdigit() else 0
            task["_video_parent"] = parent["action"] == "VIDEO" or parent.get("_video_parent")
        remixed = self.remix and (action in REMIXED or custom_id.startswith("MJ::JOB::reroll::"))
        if remixed and self.remix_auto_submit:
            self.tasks[task["id"]] = task
            auto = {"taskId": task["id"], "prompt": parent["promptEn"], "state": state}
            return self.modal(Request("POST", req.path, req.headers, auto), prefix)
        if not custom_id.startswith(MODAL_PREFIXES) and not remixed:
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
        """The parent's account, whatever the path prefix: FAST, TURBO, RELAX in turn, for a
        video only where video is allowed; an upscale only needs the account alive and is
        FAST; none: 3
        (trueai src/Midjourney.Services/TaskService.cs:1256-1264,1341-1373,1473-1493)."""
        if action == "UPSCALE":
            return "FAST" if self.alive() else None
        video = action == "VIDEO"
        allowed = (m for m in DEFAULT_MODES if self.qualifies(m, kw))
        return next((m for m in allowed if not video or self.allow_video(m)), None)

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
        task.update(prompt=prompt, promptEn=prompt, _kw=keywords(prompt), _modal=True)
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
                "mode": None, "requestMode": None, "jobId": None, "imageUrls": None,
                "videoUrl": None, "videoUrls": None, "videoType": None}  # fmt: skip
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
        """`GetPrompt` on imagine, shorten, blend, video, modal and remix prompts (trueai
        src/Midjourney.Services/DiscordService.cs:3254-3317, via :2882,3084,3563): the
        task's mode flag for the prompt's (:3282-3286), disallowed flags cut (:3288-3311),
        `--relax` when exhausted with auto relax (:3313-3317). A button job and a describe
        send no prompt (:2024-2027, :2362-2410): they run in the account's setting, and
        Midjourney echoes a button job with its parent's prompt (the package docstring).
        An extend is a video from here on (DiscordWebSocketService.cs:4134-4137)."""
        custom_id = task["properties"].get("custom_id")
        if task.get("_extend"):
            task["action"] = "VIDEO"
        if task["action"] == "DESCRIBE":
            return self.mj_setting.upper(), ""
        if custom_id and not task.get("_modal") and not task.get("_extend"):
            parent = self.tasks.get(str(task["parentId"])) or {"properties": {}}
            echo = parent["properties"].get("finalPrompt") or parent.get("promptEn") or ""
            return self.mj_setting.upper(), str(echo)
        prompt = " ".join(re.sub(r"-{3,}", " ", str(task["promptEn"] or "")).split())
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
            self.success(task, t)
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

    def success(self, task: Task, t: int) -> None:
        """A job's result (trueai src/Midjourney.Services/DiscordWebSocketService.cs): a
        describe's embed image and description, its four prompts, as finalPrompt and
        promptEn (:2615-2652); a shorten's description as description and finalPrompt
        (:2705-2716); a video's first attachment as imageUrl and its job id (:3847-3866),
        and with EnableFillOfficialCdn its clips' CDN links as videoUrl, videoUrls and
        imageUrls (trueai src/Midjourney.Base/Models/TaskInfo.cs:745-808). The message's
        buttons (DiscordWebSocketService.cs:2545-2557), and Midjourney's message as
        `messageContent` (:2923, 3867). The mode: Midjourney's "(fast)",
        "(relaxed)" or "(turbo)" (:2573-2590), which "Image #N" (a U) lacks
        (src/Midjourney.Base/Utils/MjMessageParser.cs:91-102), then any flag in the final
        prompt (TaskInfo.cs:698-727), else as chosen, else FAST. The estimate is lowered by
        `fast_units` of the mode so found (trueai src/Midjourney.Services/DiscordService.cs:
        2664-2712)."""
        action, image, job = task["action"], task.get("imageUrl"), f"{task['id']}-hash"
        self.succeed(task, t)
        final = task["_mj_prompt"]
        if action == "DESCRIBE":
            final = describe_text(task["id"])
            task.update(imageUrl=image, promptEn=final, buttons=describe_buttons())
        elif action == "SHORTEN":
            final = shorten_text(str(task["prompt"] or ""))
            analyzers = [button(f"MJ::Job::PromptAnalyzer::{i}") for i in range(1, 6)]
            task.update(description=final, buttons=analyzers)
        elif action == "VIDEO":
            task.update(jobId=job, buttons=video_buttons(job, batch_of(final)))
            if self.fill_official_cdn:
                clips = [
                    {"url": f"https://cdn.midjourney.com/video/{job}/0_{i}.mp4",
                     "thumbnail": f"https://cdn.midjourney.com/{job}/0_{i}_640_N.webp"}
                    for i in range(batch_of(str(task["promptEn"] or final)))
                ]  # fmt: skip
                task.update(videoUrl=task["imageUrl"], videoUrls=clips, imageUrls=clips)
        elif action == "UPSCALE" and task.get("_video_parent"):
            index = int(task["properties"].get("action_index") or 1)
            task.update(jobId=job, buttons=extend_buttons(job, index))
        elif action in ("UPSCALE", "UPSCALE_HD"):
            task["buttons"] = upscale_buttons(job, final, hd=action == "UPSCALE")
        else:
            task["buttons"] = grid_buttons(job)
        task["properties"]["finalPrompt"] = final
        suffix = None if action in ("UPSCALE", "DESCRIBE", "SHORTEN") else task["_mj_mode"]
        if action == "UPSCALE":
            index = task["properties"].get("action_index") or 1
            content = f"**{final}** - Image #{index} <@{USER_ID}>"
        else:
            ran = SUFFIXES[task["_mj_mode"]]
            content = f"**{final}** - {MESSAGE_KINDS.get(action, '')}<@{USER_ID}> ({ran})"
        if action not in ("DESCRIBE", "SHORTEN"):  # their results are embeds
            task["properties"]["messageContent"] = content  # DiscordWebSocketService.cs:2923
        mode = flag_mode(final) or suffix or task["mode"] or "FAST"
        task.update(description=task["description"] or "Submit success", failReason="")
        task.update(state=task["state"] or "", mode=mode)
        self.fast_available -= fast_units(action, mode, str(task["promptEn"] or final))

    def disable(self, t: int, reason: str) -> None:
        """`Enable = false`, then `Dispose()`: each running task fails "强制取消"
        (trueai src/Midjourney.Services/DiscordService.cs:2825-2861); queued ones stay."""
        self.enabled, self.disabled_reason = False, reason
        for tid in list(self._active):
            self.finish(self.tasks[tid], t, "强制取消")

    def timed_out(self, task: Task, t: int) -> None:
        """trueai src/Midjourney.Services/DiscordService.cs:2593-2620 (TimeoutMinutes)."""
        self.finish(task, t, f"执行超时 {self.timeout_minutes} 分钟")
