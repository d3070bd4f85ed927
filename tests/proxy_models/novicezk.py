"""novicezk/midjourney-proxy v2.6.3 (commit 0be95a9) fronting one Discord account.

Every behaviour cites the source at that commit (paths from the repository root; the Java
sources are under src/main/java/com/github/novicezk/midjourney/, written out each time).
Modelled: submit imagine/change/simple-change/describe/blend, task fetch/list/queue/
list-by-condition, account list/fetch, the api-secret interceptor, the executor's queue,
the timeout schedule, the failure texts of Midjourney's messages, and notify hooks
(`ProxyModel.notify_changes`). Not modelled: translation, reference-image uploads, the
Redis task store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

from tests.proxy_models.common import (
    CAPTCHA_TITLE,
    CHANNEL_ID,
    MJ_EMBEDS,
    ProxyModel,
    Reply,
    Request,
    Task,
    describe_text,
    mj_mode,
    newest,
    submit,
)

TASK_ACTIONS = {"IMAGINE", "UPSCALE", "VARIATION", "REROLL", "DESCRIBE", "BLEND"}
"""novicezk src/main/java/com/github/novicezk/midjourney/enums/TaskAction.java:8-28."""
QUEUE_REJECTED = "队列已满，请稍后尝试"  # noqa: RUF001 (the server's text)
IN_QUEUE = "排队中，前面还有{}个任务"  # noqa: RUF001 (the server's text)
DATA_URL = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,.+", re.S)
DIMENSIONS = {"PORTRAIT": "2:3", "SQUARE": "1:1", "LANDSCAPE": "3:2"}
"""novicezk src/main/java/com/github/novicezk/midjourney/enums/BlendDimensions.java:4-21."""
ROUTES = [
    ("POST", r"/submit/(imagine|change|simple-change|describe|blend)"),
    ("GET", r"/task/([^/]+)/fetch"),
    ("GET", r"/task/(queue|list)"),
    ("POST", r"/task/(list-by-condition)"),
    ("GET", r"/account/([^/]+)/fetch"),
    ("GET", r"/account/(list)"),
]
"""Every mapping, under the context path /mj
(novicezk src/main/resources/config/application.yml:2-4):
novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:58-173,
novicezk src/main/java/com/github/novicezk/midjourney/controller/TaskController.java:37-61,
novicezk src/main/java/com/github/novicezk/midjourney/controller/AccountController.java:25-32."""


def spring_error(status: int, error: str, path: str) -> Reply:
    """Spring Boot 2.6's default error JSON (the project declares no exception handler)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    body = {"timestamp": stamp, "status": status, "error": error, "path": path}
    return Reply(status, body, headers={"Content-Type": "application/json"})


class NovicezkModel(ProxyModel):
    """The proxy and its one account. State tests read and set: `enabled` (the account's
    `enable`), `core_size`, `queue_size`, `banned_words` (the server's list), and
    Midjourney's `mj_fast_jobs` and `mj_setting`.

    novicezk sends no mode and reports none: an imagine's flags reach Midjourney unchanged
    (novicezk src/main/java/com/github/novicezk/midjourney/service/TaskServiceImpl.java:55),
    and a change is a button press on the parent's message. That Midjourney runs a button
    job (or a blend or describe) in the account's current setting, `mj_setting`, is an
    assumption about Midjourney, not something in the proxy's source."""

    server = "novicezk"
    STATUS_ORDER: ClassVar[dict[str, int]] = {
        "NOT_START": 0, "SUBMITTED": 1, "IN_PROGRESS": 3, "FAILURE": 4, "SUCCESS": 4,
    }  # fmt: skip
    """novicezk src/main/java/com/github/novicezk/midjourney/enums/TaskStatus.java:6-33."""
    NOTIFIES_EQUAL = True

    def __init__(
        self,
        secret: str | None = "stub-secret",
        run_ms: int = 50,
        slow_seconds: float = 2.0,
        list_failures: int = 0,
        fast_jobs: int = 1000,
    ) -> None:
        super().__init__(secret, run_ms, slow_seconds, list_failures, fast_jobs)
        self.banned_words = ["badprompt"]

    def gate(self, req: Request) -> Reply | None:
        """Header `mj-api-secret`, checked only when a secret is set and only on /submit/**,
        /task/** and /account/**; wrong or missing: 401, no body
        (novicezk src/main/java/spring/config/WebMvcConfig.java:26-30,
        novicezk src/main/java/com/github/novicezk/midjourney/support/ApiAuthorizeInterceptor.java:19-30,
        novicezk src/main/java/com/github/novicezk/midjourney/Constants.java:19)."""  # noqa: E501
        guarded = re.match(r"/mj/(submit|task|account)(/|$)", req.path)
        if self.secret and guarded and req.headers.get("mj-api-secret") != self.secret:
            return Reply(401)
        return None

    def route(self, req: Request) -> Reply:
        """`ROUTES`; anything else inside /mj is Spring's 404 (405 for a wrong method), and
        outside it the container's 404. A body that is not JSON: 400."""
        if not req.path.startswith("/mj/"):
            return Reply(404)
        sub = req.path[len("/mj") :]
        matched = [(m, re.fullmatch(p, sub)) for m, p in ROUTES if re.fullmatch(p, sub)]
        found = next((g for m, g in matched if m == req.method), None)
        if found is None:
            wrong = "Method Not Allowed" if matched else "Not Found"
            return spring_error(405 if matched else 404, wrong, req.path)
        name = found.group(1)
        if req.method == "POST" and (req.malformed or not isinstance(req.body, dict)):
            return spring_error(400, "Bad Request", req.path)
        if "servererror" in req.kw:  # an uncaught exception, e.g. from the GPT translation
            # (novicezk src/main/java/com/github/novicezk/midjourney/service/translate/
            # GPTTranslateServiceImpl.java:72): Spring's 500
            return spring_error(500, "Internal Server Error", req.path)
        if sub.startswith("/submit/"):
            handler = {"imagine": self.imagine, "change": self.change, "describe": self.describe}
            handler.update({"simple-change": self.simple_change, "blend": self.blend})
            return handler[name](req)
        if sub.startswith("/account/"):
            account = self.account()
            if name == "list":
                return Reply(200, [account])
            return Reply(200, account) if name == CHANNEL_ID else Reply(200)
        if name == "list-by-condition":
            return Reply(200, self.by_ids(req.body.get("ids")))
        if name == "queue":
            return Reply(200, [self.view(t) for t in self.queue()])
        if name == "list":  # every stored task, newest first (novicezk
            # src/main/java/com/github/novicezk/midjourney/controller/TaskController.java:52-58)
            return self.listing(None)
        # A null task is HTTP 200 with an empty body (novicezk
        # src/main/java/com/github/novicezk/midjourney/controller/TaskController.java:36-42).
        task = self.tasks.get(name)
        return Reply(200) if task is None else Reply(200, self.view(task))

    def queue(self) -> list[Task]:
        """Waiting and running tasks of alive accounts, oldest first
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/TaskController.java:44-50,
        novicezk src/main/java/com/github/novicezk/midjourney/loadbalancer/DiscordLoadBalancer.java:55-61)."""  # noqa: E501
        live = [self.tasks[i] for i in [*self._active, *self._waiting] if i in self.tasks]
        return sorted(live, key=newest, reverse=True) if self.enabled else []

    def by_ids(self, ids: Any) -> list[dict[str, Any]]:
        """`ids` null: []; queue tasks first, then the rest from the store, unknown ids
        left out (there in HashSet order, here in request order)
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/TaskController.java:60-81)."""  # noqa: E501
        if not isinstance(ids, list):
            return []
        wanted = list(dict.fromkeys(map(str, ids)))
        live = [t["id"] for t in self.queue() if t["id"] in wanted]
        rest = [i for i in wanted if i not in live]
        return [self.view(self.tasks[i]) for i in [*live, *rest] if i in self.tasks]

    def account(self) -> dict[str, Any]:
        """`DiscordAccount` as served, token and all
        (novicezk src/main/java/com/github/novicezk/midjourney/domain/DiscordAccount.java:15-32)."""
        return {"id": CHANNEL_ID, "properties": {}, "guildId": "1100000000000000000",
                "channelId": CHANNEL_ID, "userToken": "stub-discord-token",
                "userAgent": "Mozilla/5.0", "enable": self.enabled, "coreSize": self.core_size,
                "queueSize": self.queue_size, "timeoutMinutes": self.timeout_minutes}  # fmt: skip

    # Submissions.
    def imagine(self, req: Request) -> Reply:
        """A blank prompt: 4; a banned word (whole word, any case): 24 with promptEn and
        the word as written; a bad data URL: 4
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:58-88,
        novicezk src/main/java/com/github/novicezk/midjourney/util/BannedPromptUtils.java:32-40)."""  # noqa: E501
        prompt = req.body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return submit(4, "prompt不能为空")
        prompt = prompt.strip()
        for word in self.banned_words:
            if re.search(rf"\b{word}\b", prompt.lower()):
                at = prompt.lower().index(word)
                banned = prompt[at : at + len(word)]
                return submit(24, "可能包含敏感词", promptEn=prompt, bannedWord=banned)
        images = [*(req.body.get("base64Array") or []), *filter(None, [req.body.get("base64")])]
        if not all(DATA_URL.fullmatch(str(i)) for i in images):
            return submit(4, "base64格式错误")
        task = self.record("IMAGINE", prompt, req.body.get("state"), req.body.get("notifyHook"))
        task["description"] = f"/imagine {prompt}"
        return self.queued(task)

    def change(self, req: Request) -> Reply:
        """An action that is no TaskAction, or an index that is no integer, fails JSON
        binding: 400. Then: taskId blank: 4; a null action: 500 (`Set.of(...)
        .contains(null)` throws); not U/V/R: 4; no parent: 3; parent not SUCCESS: 4; parent
        an UPSCALE or DESCRIBE: 4; a null index for U/V: 500 (unboxed to an int)
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:106-150).
        The child runs on the parent's account, which must be alive
        (novicezk src/main/java/com/github/novicezk/midjourney/service/TaskServiceImpl.java:59-87).
        """  # noqa: E501
        body = req.body
        action, index = body.get("action"), body.get("index")
        bad_action = action is not None and action not in TASK_ACTIONS
        if bad_action or (index is not None and not isinstance(index, int)):
            return spring_error(400, "Bad Request", req.path)
        if not body.get("taskId"):
            return submit(4, "taskId不能为空")
        if action is None:
            return spring_error(500, "Internal Server Error", req.path)
        if action not in ("UPSCALE", "VARIATION", "REROLL"):
            return submit(4, "action参数错误")
        parent = self.tasks.get(str(body["taskId"]))
        if parent is None:
            return submit(3, "关联任务不存在或已失效")
        if parent["status"] != "SUCCESS":
            return submit(4, "关联任务状态错误")
        if parent["action"] not in ("IMAGINE", "VARIATION", "REROLL", "BLEND"):
            return submit(4, "关联任务不允许执行变化")
        if index is None and action != "REROLL":
            return spring_error(500, "Internal Server Error", req.path)
        if not self.enabled:
            return submit(3, f"账号不可用: {CHANNEL_ID}")
        task = self.record(action, parent["prompt"], body.get("state"), body.get("notifyHook"))
        task["promptEn"] = parent["promptEn"]
        final = parent["properties"].get("finalPrompt")
        task["properties"].update(finalPrompt=final, referencedMessageId=parent["id"])
        suffix = "R" if action == "REROLL" else f"{action[0]}{index}"
        task["description"] = f"/up {parent['id']} {suffix}"
        return self.queued(task)

    def simple_change(self, req: Request) -> Reply:
        """`content` "<id> U2": split on single spaces into exactly two, the token lower
        cased, U/V with the index in its second character (1-4), or "r"; else 4. An empty
        token throws (charAt(0)): 500. Then `change`, with the state and notifyHook
        (novicezk src/main/java/com/github/novicezk/midjourney/util/ConvertUtils.java:63-91,
        novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:91-104).
        """  # noqa: E501
        words = str(req.body.get("content") or "").split(" ")
        if len(words) != 2:
            return submit(4, "content参数错误")
        if not words[1]:
            return spring_error(500, "Internal Server Error", req.path)
        token, body = words[1].lower(), {"taskId": words[0], "state": req.body.get("state")}
        body["notifyHook"] = req.body.get("notifyHook")
        if token == "r":
            body["action"] = "REROLL"
        elif token[0] in "uv" and token[1:2] in ("1", "2", "3", "4"):
            body.update(action="UPSCALE" if token[0] == "u" else "VARIATION", index=int(token[1]))
        else:
            return submit(4, "content参数错误")
        return self.change(Request(req.method, req.path, req.headers, body))

    def describe(self, req: Request) -> Reply:
        """Blank base64: 4; not a data URL: 4
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:152-170)."""  # noqa: E501
        image = req.body.get("base64")
        if not image:
            return submit(4, "base64不能为空")
        if not DATA_URL.fullmatch(str(image)):
            return submit(4, "base64格式错误")
        task = self.record("DESCRIBE", None, req.body.get("state"), req.body.get("notifyHook"))
        task["description"] = f"/describe {task['id']}.png"
        return self.queued(task)

    def blend(self, req: Request) -> Reply:
        """A `dimensions` that is no BlendDimensions fails JSON binding: 400. Then 2 to 5
        images, else 4; an explicit null `dimensions`: 4; a bad data URL: 4
        (novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:172-196).
        Midjourney gets the images and the dimensions' `--ar`, no mode flag
        (novicezk src/main/java/com/github/novicezk/midjourney/service/DiscordServiceImpl.java:97-119)."""  # noqa: E501
        images, dims = req.body.get("base64Array"), req.body.get("dimensions", "SQUARE")
        if dims is not None and dims not in DIMENSIONS:
            return spring_error(400, "Bad Request", req.path)
        if not isinstance(images, list) or not 2 <= len(images) <= 5:
            return submit(4, "base64List参数错误")
        if dims is None:
            return submit(4, "dimensions参数错误")
        if not all(DATA_URL.fullmatch(str(i)) for i in images):
            return submit(4, "base64格式错误")
        task = self.record("BLEND", None, req.body.get("state"), req.body.get("notifyHook"))
        task["description"] = f"/blend {task['id']} {len(images)}"
        links = " ".join(
            f"https://cdn.discordapp.invalid/{task['id']}/{n}.png" for n in range(len(images))
        )
        task["_blend"] = f"{links} --ar {DIMENSIONS[dims]}"
        return self.queued(task)

    def queued(self, task: Task) -> Reply:
        """No alive account: 3
        (novicezk src/main/java/com/github/novicezk/midjourney/service/TaskServiceImpl.java:29-32).
        The executor (`coreSize` threads, a queue of `queueSize`) refuses a task when all
        threads are busy and the queue is full: 23, result null, the task deleted; another
        exception (`race9`): 9, the task kept NOT_START; else 1 with nothing queued ahead
        (busy threads not counted), 22 otherwise
        (novicezk src/main/java/com/github/novicezk/midjourney/loadbalancer/DiscordInstanceImpl.java:110-135,
        novicezk src/main/java/com/github/novicezk/midjourney/util/ThreadPoolUtils.java:31-38)."""  # noqa: E501
        props = {"discordInstanceId": CHANNEL_ID}
        if not self.enabled:
            return submit(3, "无可用的账号实例")
        full = self.slots_used() >= self.core_size and len(self._waiting) >= self.queue_size
        if "queuefull" in task["_kw"] or full:
            return submit(23, QUEUE_REJECTED, **props)
        if "race9" in task["_kw"]:
            self.tasks[task["id"]] = task
            return submit(9, "提交失败，系统异常", **props)  # noqa: RUF001 (the server's text)
        ahead = self.enqueue(task)
        if ahead == 0:
            return submit(1, "提交成功", task["id"], **props)
        return submit(22, IN_QUEUE.format(ahead), task["id"], numberOfQueues=ahead, **props)

    # Running.
    def record(self, action: str, prompt: str | None, state: Any, hook: Any = None) -> Task:
        """The JSON fields are exactly the Task and DomainObject getters': no mode, no
        buttons (novicezk src/main/java/com/github/novicezk/midjourney/support/Task.java:13-48,
        novicezk src/main/java/com/github/novicezk/midjourney/domain/DomainObject.java:15-21)."""
        return super().record(action, prompt, state, hook)

    def mj_job(self, task: Task) -> tuple[str, str]:
        """An imagine's prompt as written; a blend's images and `--ar`, a describe's image
        and a change's button carry no flag: they run in the account's setting, and a
        change is echoed with its parent's prompt (the package docstring)."""
        if task["action"] == "IMAGINE":
            prompt = str(task["promptEn"])
            return mj_mode(prompt, self.mj_setting), prompt
        mode = self.mj_setting.upper()
        if task["action"] in ("BLEND", "DESCRIBE"):
            return mode, str(task.get("_blend") or "")
        return mode, str(task["properties"].get("finalPrompt") or task["promptEn"] or "")

    def mj_result(self, task: Task, outcome: str, t: int) -> None:
        """Success: SUCCESS, "100%"
        (novicezk src/main/java/com/github/novicezk/midjourney/support/Task.java:56-60);
        the captcha modal: "[title] <iframe path>"
        (novicezk src/main/java/com/github/novicezk/midjourney/wss/handle/CaptchaEmbeddedHandler.java:22-34);
        a red embed: "[title] description"
        (novicezk src/main/java/com/github/novicezk/midjourney/wss/handle/ErrorMessageHandler.java:56-72).
        A describe: its embed's description as prompt, promptEn and finalPrompt, and its
        image (novicezk src/main/java/com/github/novicezk/midjourney/wss/handle/DescribeSuccessHandler.java:49-70).
        No account is disabled for any of these."""  # noqa: E501
        if outcome == "success":
            self.succeed(task, t)
            if task["action"] == "DESCRIBE":
                text = describe_text(task["id"])
                task.update(prompt=text, promptEn=text)
                task["properties"]["finalPrompt"] = text
        elif outcome == "captcha":
            self.finish(task, t, f"[{CAPTCHA_TITLE}] /captcha/embedded/{task['id']}/")
        elif outcome in MJ_EMBEDS:
            title, desc = MJ_EMBEDS[outcome]
            self.finish(task, t, f"[{title}] {desc}")

    def timed_out(self, task: Task, t: int) -> None:
        """Fails "任务超时": checked every 30 s there, at the deadline here; only alive
        accounts' tasks (`timeouts_on`)
        (novicezk src/main/java/com/github/novicezk/midjourney/support/TaskTimeoutSchedule.java:20-35)."""  # noqa: E501
        self.finish(task, t, "任务超时")

    def timeouts_on(self) -> bool:
        return self.enabled
