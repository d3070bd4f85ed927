"""A midjourney-proxy double: a real HTTP server on 127.0.0.1 speaking the proxies' API.

Endpoints and answers follow novicezk/midjourney-proxy and trueai-org/midjourney-proxy:
`POST /mj/submit/imagine|action|change|modal` answer `{code, description, result,
properties}`; `GET /mj/task/{id}/fetch` answers the task (an empty body for an unknown id,
as Spring renders a null task); `GET /mj/task/list`; `POST /mj/task/{id}/cancel`; a wrong
`mj-api-secret` gets 401. Keywords in a prompt script what the proxy and the account do
with the job (`slow`: the proxy takes it late; `late`: it answers late; see also below).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAILURES = {
    "banned": "[Blocked] Your account has been blocked from accessing Midjourney",
    "captcha": "[Action needed to continue] Please verify you're human",
    "modnotice": "Pending mod message",
    "cnexhausted": "账号用量已经用完",
    "oops": "[Invalid parameter] Unrecognized parameter(s): `--foo`",
}
"""Prompt keyword -> the `failReason` the job ends with."""
OUT_OF_FAST = "[Credits exhausted] You have run out of fast hours"
"""Keyword `outoffast`: fast and turbo jobs fail with it; relax jobs run."""
LONG_MS = 600_000
"""Keyword `long`: the job runs ten minutes (for cancels)."""


def grid_buttons(job: str) -> list[dict[str, Any]]:
    """The buttons under a grid of four: U1-U4, reroll, V1-V4."""
    ups = [f"MJ::JOB::upsample::{i}::{job}" for i in range(1, 5)]
    variations = [f"MJ::JOB::variation::{i}::{job}" for i in range(1, 5)]
    ids = [*ups, f"MJ::JOB::reroll::0::{job}::SOLO", *variations]
    return [
        {"customId": c, "label": c.split("::")[2], "emoji": "", "style": 2, "type": 2} for c in ids
    ]


def upscale_buttons(job: str) -> list[dict[str, Any]]:
    """The buttons under an upscaled image: vary, zoom, pan, vary region."""
    ids = [
        f"MJ::JOB::low_variation::1::{job}::SOLO",
        f"MJ::JOB::high_variation::1::{job}::SOLO",
        f"MJ::Outpaint::50::1::{job}::SOLO",
        f"MJ::Outpaint::75::1::{job}::SOLO",
        f"MJ::CustomZoom::{job}",
        *(f"MJ::JOB::pan_{d}::1::{job}::SOLO" for d in ("left", "right", "up", "down")),
        f"MJ::Inpaint::1::{job}::SOLO",
    ]
    return [{"customId": c, "label": "", "emoji": "", "style": 2, "type": 2} for c in ids]


@dataclass
class StubProxy:
    """The proxy in front of one Midjourney account; `requests` records what clients sent."""

    secret: str | None = "stub-secret"
    run_ms: int = 50
    buttons: bool = True
    """False: a proxy without buttons (children go through `/mj/submit/change`)."""
    slow_seconds: float = 2.0
    list_failures: int = 0
    """The next this many `GET /mj/task/list` answer HTTP 503 (a proxy that cannot tell now)."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent(self, path: str) -> list[Any]:
        """Bodies of the requests to `path` so far."""
        with self._lock:
            return [body for _, p, body in self.requests if p == path]

    # The account's side.
    def _new_task(self, action: str, prompt: str, state: str | None, **extra: Any) -> str:
        now = int(time.time() * 1000)
        task_id = f"{now}{next(self._ids):03d}"
        flag = re.search(r"--(fast|turbo|relax)\b", prompt)
        mode = flag.group(1) if flag else "fast"
        run_ms = LONG_MS if "long" in prompt else self.run_ms
        reason = next((r for k, r in FAILURES.items() if k in prompt), None)
        if "outoffast" in prompt and mode != "relax":
            reason = OUT_OF_FAST
        self.tasks[task_id] = {
            "id": task_id,
            "action": action,
            "status": "SUBMITTED",
            "prompt": prompt,
            "promptEn": prompt,
            "description": f"/{action.lower()} {prompt}",
            "state": state,
            "submitTime": now,
            "startTime": now,
            "finishTime": None,
            "progress": "0%",
            "imageUrl": None,
            "failReason": None,
            "buttons": [],
            "properties": {},
            "_ends": now + run_ms,
            "_fail": reason,
            **extra,
        }
        return task_id

    def _view(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task as fetched now: it runs until its end time, then succeeds or fails."""
        now = int(time.time() * 1000)
        if task["status"] in ("SUBMITTED", "IN_PROGRESS") and now >= task["_ends"]:
            task["finishTime"] = task["_ends"]
            if task["_fail"]:
                task.update(status="FAILURE", failReason=task["_fail"])
            else:
                job = f"{task['id']}-hash"
                upscaled = task["action"] == "UPSCALE"
                task.update(status="SUCCESS", progress="100%")
                task["imageUrl"] = f"https://cdn.invalid/{task['id']}.png"
                if self.buttons:
                    task["buttons"] = upscale_buttons(job) if upscaled else grid_buttons(job)
        elif task["status"] == "SUBMITTED":
            task.update(status="IN_PROGRESS", progress="50%")
        return {k: v for k, v in task.items() if not k.startswith("_")}

    def _submit(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt, state = str(body.get("prompt") or ""), body.get("state")
        if path.endswith("/imagine"):
            if "queuefull" in prompt:
                return 200, {"code": 23, "description": "队列已满"}
            if "badprompt" in prompt:
                return 200, {
                    "code": 24,
                    "description": "可能包含敏感词",
                    "properties": {"promptEn": prompt, "bannedWord": "badprompt"},
                }
            if "servererror" in prompt:
                return 500, {}
            task_id = self._new_task("IMAGINE", prompt, state)
            return 200, {"code": 1, "description": "提交成功", "result": task_id}
        if path.endswith("/modal"):
            task = self.tasks.get(str(body.get("taskId")))
            if task is not None and not prompt:  # trueai: the parent's prompt stands in
                prompt = str(self.tasks.get(task["_parent"], {}).get("prompt") or "")
            if task is None or task["status"] != "MODAL" or not prompt:
                return 200, {"code": 4, "description": "参数错误"}
            task.update(status="SUBMITTED", prompt=prompt, promptEn=prompt)
            task["properties"]["maskBase64"] = body.get("maskBase64")
            return 200, {"code": 1, "description": "提交成功", "result": task["id"]}
        parent = self.tasks.get(str(body.get("taskId")))
        if parent is None:
            return 404, {"code": 3, "description": "关联任务不存在或已失效"}
        if self._view(parent)["status"] != "SUCCESS":
            return 200, {"code": 4, "description": "关联任务状态错误"}
        custom_id = ""
        if path.endswith("/change"):
            action = str(body.get("action"))
        else:
            custom_id = str(body.get("customId"))
            if custom_id not in {b["customId"] for b in parent["buttons"]}:
                return 200, {"code": 4, "description": "参数错误"}
            action = "UPSCALE" if "::upsample::" in custom_id else "ACTION"
        task_id = self._new_task(action, parent["prompt"], state, _parent=parent["id"])
        task = self.tasks[task_id]
        if custom_id.startswith(("MJ::Inpaint::", "MJ::CustomZoom::")):
            task["status"] = "MODAL"
            return 200, {
                "code": 21,
                "description": "Waiting for window confirm",
                "result": task_id,
                "properties": {"finalPrompt": parent["prompt"], "remix": True},
            }
        return 200, {"code": 1, "description": "提交成功", "result": task_id}

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, body))
            match = re.fullmatch(r"/mj/task/([^/]+)/(fetch|cancel)", path)
            if method == "GET" and match and match.group(2) == "fetch":
                task = self.tasks.get(match.group(1))
                return 200, None if task is None else self._view(task)
            if method == "POST" and match and match.group(2) == "cancel":
                task = self.tasks.get(match.group(1))
                if task is not None and task["status"] not in ("SUCCESS", "FAILURE"):
                    task.update(status="FAILURE", failReason="取消任务")
                    task["finishTime"] = int(time.time() * 1000)
                return 200, None
            if method == "GET" and path == "/mj/task/list" and self.list_failures > 0:
                self.list_failures -= 1
                return 503, None
            if method == "GET" and path == "/mj/task/list":
                latest = sorted(self.tasks.values(), key=lambda t: t["submitTime"], reverse=True)
                return 200, [self._view(t) for t in latest[:100]]
            submit = re.fullmatch(r"(/mj-(?:fast|relax|turbo))?/mj/submit/(\w+)", path)
            kinds = (
                {"imagine", "action", "modal", "change"} if self.buttons else {"imagine", "change"}
            )
            if method == "POST" and submit and submit.group(2) in kinds:
                return self._submit(path, body if isinstance(body, dict) else {})
            return 404, None

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if self.secret is not None and request.headers.get("mj-api-secret") != self.secret:
            status, answer = 401, None
        else:
            size = int(request.headers.get("Content-Length") or 0)
            raw = request.rfile.read(size) if size else b""
            body = json.loads(raw) if raw else None
            prompt = str(body.get("prompt")) if isinstance(body, dict) else ""
            if "slow" in prompt:
                time.sleep(self.slow_seconds)  # slow to take the job
            status, answer = self._route(method, request.path, body)
            if "late" in prompt:
                time.sleep(self.slow_seconds)  # the job is taken; the answer comes late
        data = b"" if answer is None else json.dumps(answer).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)
