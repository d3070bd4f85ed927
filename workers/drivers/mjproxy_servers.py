"""How each midjourney-proxy server answers, and what its answers mean: one profile per
server and version, each rule with the source line it follows.

`trueai`: trueai-org/midjourney-proxy v11.10.3 (commit ed32197), paths from the repository
root. `novicezk`: novicezk/midjourney-proxy v2.6.3 (commit 0be95a9), Java paths under
`src/main/java/com/github/novicezk/midjourney/`. Where a server does not say something (the
mode a job ran in, an account's fast time), its profile says so and the driver keeps the
conservative reading: a failure it cannot place retries the task and blames no account.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router.driver import TransientError
from workers.drivers.mjproxy_http import Backend, request

log = logging.getLogger(__name__)

SERVER_CACHE_SECONDS = 600.0
"""How long a worker trusts what a backend said it is (an operator may swap the server)."""


class Meaning(StrEnum):
    """What a refused submission or a failed job says about the task and the account."""

    OUT_OF_FAST = "out_of_fast"
    """The account has no fast time: it flips to relax and the task is placed again."""
    ATTENTION = "attention"
    """Banned, moderated, unsubscribed: the account leaves rotation."""
    RETRY = "retry"
    """Passing (a queue, a timeout, an instance restarting): the task is tried again."""
    PERMANENT = "permanent"
    """The job's own fault (its prompt, its parent): the task fails."""


@dataclass(frozen=True)
class Server:
    """One server's answers, read by its own rules."""

    name: str
    mode_routes: bool
    """New tasks take their mode from a `/mj-<mode>` route prefix."""
    buttons: bool
    """Children press the parent's buttons (`/submit/action`), else `/submit/change`."""
    new_types: frozenset[str]
    """The task types without a parent it has a route for (`/submit/<type>`)."""
    reports_mode: bool
    """A fetched task's `mode` is the mode the job really ran in."""
    home: bool
    """`GET /mj/home` answers anonymously with `data.fastAvailableCount`: fast jobs left
    over the proxy's enabled accounts, capped by each one's daily limit, and absent (0) for
    an account whose count has not been read since midnight (NotifyService.cs:180-216;
    src/Midjourney.Base/Utils/CounterHelper.cs:114-115). So 0 does not say an account ran
    out, and the router never flips an account on it: it records it, and alerts on drift."""
    lists_latest: int | None
    """`GET /mj/task/list` answers only this many latest tasks (None: all it stores)."""
    queue_list: bool
    """`GET /mj/task/queue` lists the tasks not finished yet (a short list)."""
    keeps_tasks: bool
    """Its store outlives a restart, and a task is in it before the request is answered:
    a list shorter than `lists_latest` is then the whole store."""
    submit_rules: tuple[tuple[int, str, Meaning], ...]
    """(code, text the description starts with ("": any), meaning) for refused submits."""
    failure_rules: tuple[tuple[str, Meaning], ...]
    """(regular expression, meaning) for a failed job's `failReason`, first match wins."""

    def refused(self, code: object, text: str) -> Meaning:
        """What a submission answered with `code` and `text` (not accepted) means."""
        for rule_code, start, meaning in self.submit_rules:
            if code == rule_code and text.startswith(start):
                return meaning
        return Meaning.PERMANENT

    def failed(self, reason: str) -> Meaning:
        """What a job that ended FAILURE with `reason` means; unknown texts are retried."""
        for pattern, meaning in self.failure_rules:
            if re.search(pattern, reason, re.I):
                return meaning
        return Meaning.RETRY


# Midjourney's own texts, relayed by both servers (trueai as `<title>, <description>` or the
# title alone, novicezk as `[<title>] <description>`). trueai matches these titles at
# src/Midjourney.Services/DiscordWebSocketService.cs:1519-1545 (errors, "Credits exhausted")
# and 1595-1628 (the titles that disable an account); novicezk relays every red embed
# (wss/handle/ErrorMessageHandler.java:59-72) and a captcha (wss/handle/
# CaptchaEmbeddedHandler.java:23-33).
MIDJOURNEY: tuple[tuple[str, Meaning], ...] = (
    (
        r"credits exhausted|out of fast hours|fast hours? (are )?(used up|exhausted)",
        Meaning.OUT_OF_FAST,
    ),
    (
        r"^\[?(blocked|pending mod message|plan cancell?ed|subscription (required|paused))\b"
        r"|/captcha/|verify you'?re human|action needed to continue",
        Meaning.ATTENTION,
    ),
    (
        r"^\[?(invalid (parameter|prompt|link)|banned prompt|request cancelled due to output"
        r" filters|image denied)",
        Meaning.PERMANENT,
    ),
    (r"^\[?queue full|^\[?job queued", Meaning.RETRY),
)

TRUEAI = Server(
    name="trueai",
    # src/Midjourney.API/Controllers/SubmitController.cs:36-40 mounts the submit routes under
    # mj-fast, mj-turbo and mj-relax; SimpleAuthMiddleware.cs:54-69 reads the prefix and
    # SubmitController.cs:1262-1307 puts it first among the modes tried.
    mode_routes=True,
    buttons=True,  # SubmitController.cs:434 (action), :700 (modal); no change route
    # SubmitController.cs:131 (imagine), :280 (describe), :345 (shorten), :383 (blend),
    # :922 (video; an extend too, `video_extend`, a child).
    new_types=frozenset({"imagine", "describe", "shorten", "blend", "video"}),
    # Set from Midjourney's "(fast|relaxed|turbo)" (DiscordWebSocketService.cs:2573-2590).
    # An action or modal tries FAST, TURBO, RELAX in turn whatever the prefix (src/
    # Midjourney.Services/TaskService.cs:1256-1264, 1343-1365), so a child can run in
    # another mode than asked: this says which.
    reports_mode=True,
    # src/Midjourney.API/Controllers/HomeController.cs:36-39 ([AllowAnonymous]), 220-224;
    # src/Midjourney.Services/NotifyService.cs:180-216 (sum over enabled accounts).
    home=True,
    lists_latest=100,  # src/Midjourney.API/Controllers/TaskController.cs:177-182
    queue_list=False,
    # Its database, written before the job is queued (src/Midjourney.Services/
    # DiscordService.cs:1634-1636, "save to the database first, then queue").
    keeps_tasks=True,
    submit_rules=(
        # No account qualifies, for any reason: a mode not allowed, too few fast jobs left,
        # a full queue, a daily cap, a captcha lock (TaskService.cs:72-80; DiscordService.cs:
        # 481-520, 590-739). Nothing a client can read tells these apart (see `home`), so
        # it is retried and the account blamed no more than a transient failure.
        (3, "无可用的账号实例", Meaning.RETRY),
        # imagine's catch-all for an unexpected exception (SubmitController.cs:200-205).
        (4, "提交Imagine任务异常", Meaning.RETRY),
        # A video on an account whose Remix is off: the account's own setting, not a
        # passing state, so never retried nor counted against the account
        # (src/Midjourney.Services/TaskService.cs:469-484).
        (9, "未开启 REMIX", Meaning.PERMANENT),
        # Queue full after a race, or a system error (DiscordService.cs:1551-1676).
        (9, "", Meaning.RETRY),
        # The proxy user's own limits and a missing Redis (SubmitController.cs:1031-1242).
        (4, "服务暂不可用", Meaning.RETRY),
        (4, "并发数已达上限", Meaning.RETRY),
        (4, "队列数已达上限", Meaning.RETRY),
        (4, "用户今日绘图次数已达上限", Meaning.RETRY),
        (4, "访客今日绘图次数已达上限", Meaning.RETRY),
        (4, "账号已被临时封锁", Meaning.RETRY),
        # A request check thrown outside imagine: HTTP 200 {code: -1, message}
        # (src/Midjourney.API/Filters/CustomLogicExceptionFilterAttribute.cs:39-51).
        (-1, "State参数过长", Meaning.PERMANENT),
        (-1, "NotifyHook参数过长", Meaning.PERMANENT),
        (-1, "", Meaning.RETRY),
    ),
    failure_rules=(
        # Only ever set on Midjourney's "Credits exhausted" (DiscordWebSocketService.cs:
        # 1532-1545); the account is marked exhausted (DiscordAccount.cs:1081-1113).
        (r"^任务失败，请重试", Meaning.OUT_OF_FAST),  # noqa: RUF001 (the server's text)
        # The account's instance was disposed: exhausted without auto-relax
        # (DiscordWebSocketService.cs:1555-1589), moderated (:1616-1628), or refused by
        # Discord (DiscordService.cs:4016-4035, 2848-2858): which, no client can tell.
        (r"^强制取消", Meaning.RETRY),
        # DiscordService.cs:4016-4035
        (r"^请求失败，禁用账号", Meaning.ATTENTION),  # noqa: RUF001 (the server's text)
        (r"^可能包含敏感词", Meaning.PERMANENT),  # DiscordService.cs:1896-1923
        (r"^(取消任务|删除任务)", Meaning.PERMANENT),  # TaskController.cs:105,110
        # Passing: the instance was down (DiscordService.cs:1876-1881), queued too long
        # (:1927-1936), ran too long (:2593-2620), an exception (:2651-2658), a dead
        # instance's queue (src/Midjourney.API/DiscordAccountInitializer.cs:692-733),
        # Discord rate limits (DiscordService.cs:4012-4014).
        (
            r"^(实例不可用|任务提交超时|执行超时|服务异常，请稍后重试|任务超时|TooManyRequests)",  # noqa: RUF001
            Meaning.RETRY,
        ),
        *MIDJOURNEY,
    ),
)

NOVICEZK = Server(
    name="novicezk",
    mode_routes=False,  # the only context path is /mj (src/main/resources/config/application.yml:4)
    # Children go through change and simple-change only (controller/SubmitController.java:
    # 91, 107); tasks carry no buttons (support/Task.java:20-48).
    buttons=False,
    # controller/SubmitController.java:58 (imagine), :153 (describe), :173 (blend): no
    # shorten or video (README.md:27, 44 lists them for the closed "plus" edition only).
    new_types=frozenset({"imagine", "describe", "blend"}),
    reports_mode=False,  # support/Task.java:20-48 has no mode
    home=False,  # no such endpoint; none tells an account's fast time (README.md:34-35)
    lists_latest=None,  # every stored task, kept 30 days (controller/TaskController.java:52-58)
    queue_list=True,  # controller/TaskController.java:44-50
    # In memory by default, lost on a restart (service/store/InMemoryTaskStoreServiceImpl.
    # java:18-20; docs/config.md:16).
    keeps_tasks=False,
    submit_rules=(
        # loadbalancer/DiscordInstanceImpl.java:118-121 (queue full), 122-126 (exception).
        (23, "", Meaning.RETRY),
        (9, "", Meaning.RETRY),
        # No alive instance (service/TaskServiceImpl.java:29-32), the parent's instance
        # gone (:61-65): novicezk tells nothing of fast time; retried, the account not blamed.
        (3, "无可用的账号实例", Meaning.RETRY),
        (3, "账号不可用", Meaning.RETRY),
    ),
    failure_rules=(
        # A task that did not end within the account's timeout (support/
        # TaskTimeoutSchedule.java:20-34); a warning embed is only logged, so this is also
        # how some of Midjourney's answers end (wss/handle/ErrorMessageHandler.java:57-58).
        (r"^任务超时", Meaning.RETRY),
        # loadbalancer/DiscordInstanceImpl.java:158-161; wss/handle/ErrorMessageHandler.java:
        # 30-39; service/DiscordServiceImpl.java:140-173
        (r"^\[Internal Server Error\]", Meaning.RETRY),
        (r"^Failed", Meaning.RETRY),
        (r"^(上传图片到discord失败|发送图片消息到discord失败)", Meaning.RETRY),
        *MIDJOURNEY,
    ),
)

SERVERS = {s.name: s for s in (TRUEAI, NOVICEZK)}


class ServerFinder:
    """Which server a backend is: as declared (the account's `backend_server`, else the
    setting), else asked and remembered for SERVER_CACHE_SECONDS. trueai answers `GET
    /mj/home` without a token with `{data: {fastAvailableCount, ...}}` (src/Midjourney.API/
    Controllers/HomeController.cs:36-39, 230); novicezk has no such path, so Spring answers
    its 404 error object (`status`, `path`; no controller maps it: controller/*.java). Any
    other answer cannot tell: TransientError, asked again next time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._known: dict[str, tuple[float, Server]] = {}
        self._lock = threading.Lock()

    def of(self, backend: Backend, setting: str) -> Server:
        name = backend.server or (None if setting == "auto" else setting)
        if name is not None:
            return SERVERS[name]
        now = time.monotonic()
        with self._lock:
            known = self._known.get(backend.url)
        if known is not None and known[0] > now:
            return known[1]
        status, answer = self.home(backend)
        data = answer.get("data") if isinstance(answer, dict) else None
        if status == 200 and isinstance(data, dict) and "fastAvailableCount" in data:
            found = TRUEAI
        elif status == 404 and isinstance(answer, dict) and answer.get("status") == 404:
            found = NOVICEZK
        else:
            raise TransientError(f"cannot tell the proxy's server: GET /mj/home answered {status}")
        with self._lock:
            self._known[backend.url] = (now + SERVER_CACHE_SECONDS, found)
        log.info("backend %s is a %s midjourney-proxy", backend.url, found.name)
        return found

    def home(self, backend: Backend) -> tuple[int, Any]:
        """`GET /mj/home`, anonymous: a refusal says nothing of the account's secret."""
        anonymous = Backend(backend.url, None)
        return request(anonymous, "GET", "/mj/home", timeout=self.timeout, refused=TransientError)

    def fast_jobs(self, backend: Backend) -> int:
        """trueai's `fastAvailableCount` (see `Server.home`); TransientError when the
        answer holds no whole number (a bool, a fraction, text)."""
        status, answer = self.home(backend)
        data = answer.get("data") if isinstance(answer, dict) else None
        count = data.get("fastAvailableCount") if isinstance(data, dict) else None
        if status != 200 or type(count) is not int:
            raise TransientError(f"GET /mj/home answered {status} without a fast job count")
        return count
