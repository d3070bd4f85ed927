"""What both proxy models share: an HTTP server on 127.0.0.1 fronting ONE Midjourney
account, and a clock-driven job engine (a FIFO queue, `core_size` slots, Midjourney's side
of each job, scripted as the package docstring says). Server behaviours cite their source;
in a docstring, a bare `:N` or file name refers to the last full path it names.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

Task = dict[str, Any]
"""A stored task: its JSON fields, plus the model's own under names starting with `_`."""

LONG_MS = 600_000
CHANNEL_ID = "1100000000000000001"
"""The account's Discord channel id, which both proxies use as the instance id."""
TRANSPORT_KEYWORDS = frozenset({"slow", "late", "long", "servererror", "queuefull", "race9"})
"""`slow`: the proxy takes the request `slow_seconds` late; `late`: it answers that late
after handling it; `servererror`: HTTP 500; `queuefull`: the account's queue is full;
`race9`: trueai loses its enqueue race, novicezk's executor throws (code 9)."""
MJ_KEYWORDS = frozenset(
    {"outoffast", "cnexhausted", "banned", "modnotice", "captcha", "oops", "mjqueuefull"}
    | {"stuck", "badprompt"}
)
"""What Midjourney does with the job (`ProxyModel.mj_outcome`); `badprompt` is a word on
the proxy's banned-word list."""
MJ_EMBEDS: dict[str, tuple[str, str]] = {
    "credits": ("Credits exhausted", "You are out of fast hours. Please /subscribe or /relax."),
    "banned": ("Blocked", "You have been blocked from accessing Midjourney."),
    "modnotice": ("Pending mod message", "Please review the moderation notice."),
    "oops": ("Invalid parameter", "Unrecognized parameter(s): `--foo`"),
    "mjqueuefull": ("Queue full", "You have too many jobs queued; wait for one to finish."),
}
"""Midjourney's red embeds by outcome, (title, description): the titles trueai matches
(trueai src/Midjourney.Services/DiscordWebSocketService.cs:1519-1532,1595-1599); the
descriptions are placeholders (Midjourney's wording is in no source here)."""
CAPTCHA_TITLE = "Action required to continue"
"""Midjourney's captcha modal (trueai src/Midjourney.Services/DiscordWebSocketService.cs:837)."""
FREE_ACTIONS = frozenset({"UPSCALE", "DESCRIBE"})
"""Jobs that cost no fast time: U1-U4 and video upscales (both action UPSCALE) and a
describe (trueai counts neither: src/Midjourney.Services/DiscordService.cs:2664-2671)."""
BATCH = re.compile(r"--bs\s+(\d+)", re.I)
HOOK_TIMEOUT_SECONDS = 10.0
"""How long the model's notify POST waits (trueai: HttpClient's default 100 s; novicezk:
none); shorter here so that a test never hangs on it."""
FLAG = re.compile(r"--(fast|relax|turbo)\b", re.I)


def now_ms() -> int:
    return int(time.time() * 1000)


def newest(task: Task) -> tuple[int, int]:
    """Sort key, newest first: submitTime, then id (creation order), descending."""
    return -int(task["submitTime"]), -int(task["id"])


def keywords(prompt: str) -> frozenset[str]:
    """The scripting keywords in a prompt, as whole words."""
    words = TRANSPORT_KEYWORDS | MJ_KEYWORDS
    return frozenset(w for w in words if re.search(rf"\b{w}\b", prompt))


def mj_mode(prompt: str, setting: str) -> str:
    """The mode Midjourney runs a prompt in: its last flag's, else the account setting's."""
    flags = FLAG.findall(prompt)
    return flags[-1].upper() if flags else setting.upper()


def with_mode_flag(prompt: str, mode: str) -> str:
    """`prompt` without speed flags, with `mode`'s (Midjourney's echo of a button job)."""
    return f"{' '.join(FLAG.sub('', prompt).split())} --{mode.lower()}".strip()


def batch_of(prompt: str) -> int:
    """A video job's clips: `--bs N` (1 to 4) in its prompt, else 4
    (trueai src/Midjourney.Base/Models/TaskInfo.cs:850-880)."""
    found = BATCH.search(prompt)
    return int(found.group(1)) if found and 1 <= int(found.group(1)) <= 4 else 4


def fast_units(action: str, mode: str, prompt: str) -> int:
    """Fast jobs a finished job costs, as trueai counts them and Midjourney charges them in
    these models: none at relax nor for `FREE_ACTIONS`; a video batch twice its clips;
    turbo twice (trueai src/Midjourney.Services/DiscordService.cs:2664-2712)."""
    if mode == "RELAX" or action in FREE_ACTIONS:
        return 0
    units = 2 if mode == "TURBO" else 1
    return units * batch_of(prompt) * 2 if action == "VIDEO" else units


def button(custom_id: str, label: str = "", emoji: str = "") -> dict[str, Any]:
    """One of Midjourney's buttons as both servers relay it (trueai src/Midjourney.Services/
    DiscordWebSocketService.cs:2545-2557)."""
    return {"customId": custom_id, "emoji": emoji, "label": label, "style": 2, "type": 2}


def mj_version(prompt: str) -> str:
    """The model version a prompt asks for, as trueai names it ("v 7", "v 6.1", "niji 6"):
    `--v`/`--version`, else `--niji`, else Midjourney's default, V7 (an assumption)."""
    found = re.search(r"--(v|version|niji)\s+(\d+(?:\.\d+)?)", prompt, re.I)
    if found is None:
        return "v 7"
    kind = "niji" if found.group(1).lower() == "niji" else "v"
    number = found.group(2).removesuffix(".0")
    return f"{kind} {number}"


def upscale_hd_kinds(version: str) -> tuple[str, str] | None:
    """The two upscale buttons under an upscaled image of `version`, as trueai builds them
    for its own accounts (the picture it has of Midjourney's): V7 and Niji 7 `v7_2x_subtle`
    and `v7_2x_creative`, V6.1 `v6r1_...`, V6 and Niji 6 `v6_...`, V5 and Niji 5 `v5_2x`
    and `v5_4x`; none for V8 and V1-V4; `v<N>_...` else
    (trueai src/Midjourney.Base/Models/CustomComponentModel.cs:131-227)."""
    number = version.split(" ")[-1]
    if version.startswith(("v 8", "v 4", "v 3", "v 2", "v 1", "niji 4", "niji 3")):
        return None
    if version.startswith(("v 7", "niji 7")):
        number = "7"
    elif version.startswith("v 6.1"):
        number = "6r1"
    elif version.startswith(("v 6", "niji 6")):
        number = "6"
    elif version.startswith(("v 5", "niji 5")):
        return ("v5_2x", "v5_4x")
    return (f"v{number}_2x_subtle", f"v{number}_2x_creative")


def animate_buttons(job: str) -> list[dict[str, Any]]:
    """Animate (High/Low motion) under an upscaled image
    (trueai src/Midjourney.Base/Models/CustomComponentModel.cs:67-89)."""
    return [
        button(f"MJ::JOB::animate_high::1::{job}::SOLO", "Animate (High motion)"),
        button(f"MJ::JOB::animate_low::1::{job}::SOLO", "Animate (Low motion)"),
    ]


def video_buttons(job: str, clips: int) -> list[dict[str, Any]]:
    """Under a video batch: a video upscale per clip, `MJ::JOB::video_virtual_upscale::<i>::
    <job>` "U<i>", then reroll, as trueai builds them for its own accounts (trueai src/
    Midjourney.Base/Models/TaskInfo.cs:1110-1133); Midjourney's own list is not in the source."""
    ups = [
        button(f"MJ::JOB::video_virtual_upscale::{i}::{job}", f"U{i}") for i in range(1, clips + 1)
    ]
    return [*ups, button(f"MJ::JOB::reroll::0::{job}::SOLO", emoji="🔄")]


def extend_buttons(job: str, clip: int) -> list[dict[str, Any]]:
    """Under an upscaled clip: Extend (High/Low motion), `MJ::JOB::animate_high_extend::<i>::
    <job>` (trueai src/Midjourney.Base/Models/TaskInfo.cs:1139-1164; the index as in the
    Discord example at src/Midjourney.Services/DiscordWebSocketService.cs:3618)."""
    return [
        button(f"MJ::JOB::animate_{m}_extend::{clip}::{job}", f"Extend ({m.title()} motion)", "🎞️")
        for m in ("high", "low")
    ]


def describe_buttons() -> list[dict[str, Any]]:
    """Under a describe: imagine prompt 1 to 4, and describe again
    (trueai src/Midjourney.Base/Models/TaskInfo.cs:1171-1254)."""
    keycaps = [button(f"MJ::Job::PicReader::{i}", emoji=f"{i}\ufe0f\u20e3") for i in range(1, 5)]
    return [*keycaps, button("MJ::Picread::Retry", emoji="🔄")]


def describe_text(seed: str) -> str:
    """Midjourney's describe embed: four prompts, each after a keycap (placeholder prompts;
    the format is Midjourney's, as its PicReader buttons number them)."""
    return "\n\n".join(
        f"{i}\ufe0f\u20e3 a described image {seed}, view {i} --ar 1:1" for i in range(1, 5)
    )


def shorten_text(prompt: str) -> str:
    """Midjourney's shorten embed: the prompt's important tokens, then five shortened
    prompts after keycaps (placeholders: the prompt's first words)."""
    words = FLAG.sub("", prompt).split() or ["prompt"]
    shorter = [" ".join(words[: max(1, len(words) - i)]) for i in range(5)]
    numbered = "\n\n".join(f"{i}\ufe0f\u20e3 {p}" for i, p in enumerate(shorter, 1))
    return f"**Important tokens**\n{', '.join(words)}\n\n**Shortened prompts**\n{numbered}"


def grid_buttons(job: str) -> list[dict[str, Any]]:
    """Midjourney's buttons under a grid of four: U1-U4, reroll, V1-V4."""
    ups = [(f"MJ::JOB::upsample::{i}::{job}", f"U{i}", "") for i in range(1, 5)]
    vs = [(f"MJ::JOB::variation::{i}::{job}", f"V{i}", "") for i in range(1, 5)]
    rows = [*ups, (f"MJ::JOB::reroll::0::{job}::SOLO", "", "🔄"), *vs]
    return [{"customId": c, "emoji": e, "label": lbl, "style": 2, "type": 2} for c, lbl, e in rows]


def upscale_buttons(job: str, prompt: str = "", hd: bool = True) -> list[dict[str, Any]]:
    """Midjourney's buttons under an upscaled image: the upscales its version has (`hd`:
    none under an image upscaled so already, trueai src/Midjourney.Base/Models/TaskInfo.cs:
    1070-1105), vary, zoom, pan, vary region, animate."""
    kinds = upscale_hd_kinds(mj_version(prompt)) if hd else None
    v5 = kinds is not None and kinds[0].startswith("v5_")
    labels = ("2x", "4x") if v5 else ("Subtle", "Creative")
    ups = [
        button(f"MJ::JOB::upsample_{k}::1::{job}::SOLO", f"Upscale ({label})")
        for k, label in zip(kinds or (), labels, strict=False)
    ]
    rows = [
        (f"MJ::JOB::low_variation::1::{job}::SOLO", "Vary (Subtle)"),
        (f"MJ::JOB::high_variation::1::{job}::SOLO", "Vary (Strong)"),
        (f"MJ::Outpaint::50::1::{job}::SOLO", "Zoom Out 2x"),
        (f"MJ::Outpaint::75::1::{job}::SOLO", "Zoom Out 1.5x"),
        (f"MJ::CustomZoom::{job}", "Custom Zoom"),
        *((f"MJ::JOB::pan_{d}::1::{job}::SOLO", "") for d in ("left", "right", "up", "down")),
        (f"MJ::Inpaint::1::{job}::SOLO", "Vary (Region)"),
    ]
    return [*ups, *(button(c, lbl) for c, lbl in rows), *animate_buttons(job)]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    """Names lower-cased."""
    body: Any
    malformed: bool = False
    kw: frozenset[str] = frozenset()


@dataclass
class Reply:
    status: int
    body: Any = None
    """JSON, or None for an empty body."""
    text: str | None = None
    """A plain text body instead."""
    headers: dict[str, str] = field(default_factory=dict)


def submit(code: int, description: str, result: str | None = None, **props: Any) -> Reply:
    """Both servers' submit answer, HTTP 200 `{code, description, result, properties}`
    (trueai src/Midjourney.Base/Models/SubmitResultVO.cs:39-58,127-128, novicezk
    src/main/java/com/github/novicezk/midjourney/result/SubmitResultVO.java:14-61)."""
    body = {"code": code, "description": description, "result": result, "properties": props}
    return Reply(200, body)


class ProxyModel:
    """One proxy server in front of one Midjourney account. Subclasses answer requests
    (`gate`: what refuses a request before any controller; `route`), say how the job
    reaches Midjourney (`mj_job`: its mode and prompt) and what the proxy makes of
    Midjourney's answer (`mj_result`) and of its own timeout (`timed_out`)."""

    def __init__(
        self, secret: str | None, run_ms: int, slow_seconds: float, list_failures: int,
        fast_jobs: int,
    ) -> None:  # fmt: skip
        self.secret, self.run_ms, self.slow_seconds = secret, run_ms, slow_seconds
        self.list_failures = list_failures
        """The test double's knob: the next this many `GET /mj/task/list` answer 503."""
        self.timeout_ms = run_ms * 4
        self.mj_fast_jobs = fast_jobs
        """Midjourney's truth: fast jobs the account can still run (turbo costs two)."""
        self.mj_setting = "fast"
        """The account's Midjourney mode setting (/fast, /relax): button jobs run in it."""
        self.enabled, self.core_size, self.queue_size, self.timeout_minutes = True, 3, 10, 5
        self.tasks: dict[str, Task] = {}
        self.requests: list[tuple[str, str, Any]] = []
        """(method, path, body) of every request that passed the server's authorisation."""
        self.notify_hook: str | None = None
        """The server's global notify hook, used by tasks submitted without one (trueai
        `Setting.NotifyHook`, novicezk `mj.notify-hook`)."""
        self.notified: list[tuple[str, str, int | str]] = []
        """(task id, "<status>:<progress>", answer: HTTP status or the error's class) of
        every notify POST made."""
        self._hooks: queue.Queue[tuple[str, str, str, bytes] | None] = queue.Queue()
        self._lock = threading.RLock()
        self._waiting: list[str] = []
        self._active: dict[str, bool] = {}
        """Tasks the proxy runs (dequeued, not ended), and whether each holds a slot."""
        self._mj_running: set[str] = set()
        self._clock, self._seq, self._stop = now_ms(), itertools.count(), threading.Event()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                model._handle(self, "GET")

            def do_POST(self) -> None:
                model._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._threads = [
            threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True),
            threading.Thread(target=self._tick, daemon=True),
            threading.Thread(target=self._post_hooks, daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._hooks.put(None)
        self.httpd.shutdown()
        self.httpd.server_close()

    def sent(self, path: str) -> list[Any]:
        """Bodies of the requests to `path` so far (a `/mj/submit/...` path also matches it
        under a `/mj-<mode>` route prefix)."""
        with self._lock:
            return [body for _, p, body in self.requests if re.sub(r"^/mj-\w+/", "/", p) == path]

    # Subclass hooks.
    def gate(self, req: Request) -> Reply | None: ...
    def mj_result(self, task: Task, outcome: str, t: int) -> None: ...
    def timed_out(self, task: Task, t: int) -> None: ...

    def route(self, req: Request) -> Reply:
        raise NotImplementedError

    def mj_job(self, task: Task) -> tuple[str, str]:
        raise NotImplementedError

    def consuming(self) -> bool:
        """Whether the proxy takes jobs from the queue now."""
        return True

    def timeouts_on(self) -> bool:
        return True

    def dequeue(self, task: Task, t: int) -> None:
        self.start(task, t, slot=True)

    # Tasks.
    def new_id(self) -> str:
        """13-digit ms and 3 digits (trueai src/Midjourney.API/Controllers/
        SubmitController.cs:1054, novicezk src/main/java/com/github/novicezk/midjourney/
        controller/SubmitController.java:200): random there, counted here, so that ids sort
        in creation order."""
        while (tid := f"{now_ms()}{next(self._seq) % 1000:03d}") in self.tasks:
            pass
        return tid

    def record(self, action: str, prompt: str | None, state: Any, hook: Any = None) -> Task:
        """A new task as both servers store it at submit: NOT_START, `state` echoed, the
        nonce, hook and instance in `properties`; subclasses add their own fields
        (trueai src/Midjourney.API/Controllers/SubmitController.cs:1052-1064,1246-1253,
        novicezk src/main/java/com/github/novicezk/midjourney/controller/SubmitController.java:
        198-207). The request's `notifyHook`, if not blank, else the global `notify_hook`
        (trueai SubmitController.cs:1246-1247, novicezk SubmitController.java:203-204)."""
        nonce = str(now_ms() * 1000)
        given = hook if isinstance(hook, str) and hook.strip() else self.notify_hook
        props = {"discordInstanceId": CHANNEL_ID, "notifyHook": given}
        return {
            "id": self.new_id(), "action": action, "status": "NOT_START", "prompt": prompt,
            "promptEn": prompt, "description": None, "state": state, "submitTime": self._clock,
            "startTime": None, "finishTime": None, "imageUrl": None, "progress": None,
            "failReason": None, "properties": {"nonce": nonce, **props},
            "_kw": keywords(prompt or ""),
        }  # fmt: skip

    def view(self, task: Task) -> dict[str, Any]:
        """The task's JSON (a copy, without the model's own fields)."""
        return dict(json.loads(json.dumps({k: v for k, v in task.items() if k[0] != "_"})))

    def listing(self, limit: int | None) -> Reply:
        """`GET /mj/task/list`: stored tasks, newest first, at most `limit` (after the
        `list_failures` knob)."""
        if self.list_failures > 0:
            self.list_failures -= 1
            return Reply(503)
        return Reply(200, [self.view(t) for t in sorted(self.tasks.values(), key=newest)][:limit])

    def _new_task(self, action: str, prompt: str, state: Any, **extra: Any) -> str:
        """Test fixture: a task stored and started at once, outside the queue and slots."""
        with self._lock:
            task = {**self.record(action, prompt, state), **extra}
            self.tasks[task["id"]] = task
            self.start(task, self._clock, slot=False)
            return str(task["id"])

    # The engine.
    def enqueue(self, task: Task) -> int:
        """Stores and queues `task`; the tasks waiting ahead of it, not those running
        (trueai src/Midjourney.Services/DiscordService.cs:1627, novicezk src/main/java/com/
        github/novicezk/midjourney/loadbalancer/DiscordInstanceImpl.java:114). Queued tasks
        are taken in order while fewer than `core_size` run: trueai's concurrency lock
        (trueai src/Midjourney.Services/DiscordService.cs:1442-1518), novicezk's thread
        pool (novicezk src/main/java/com/github/novicezk/midjourney/util/ThreadPoolUtils.java:
        31-38)."""
        ahead = len(self._waiting)
        self.tasks[task["id"]] = task
        self._waiting.append(task["id"])
        self._fill(self._clock)
        return ahead

    def slots_used(self) -> int:
        return sum(self._active.values())

    def _fill(self, t: int) -> None:
        while self.consuming() and self._waiting and self.slots_used() < self.core_size:
            task = self.tasks.get(self._waiting.pop(0))
            if task is not None:
                self.dequeue(task, t)

    def start(self, task: Task, t: int, slot: bool) -> None:
        """The proxy sends the job, which Midjourney takes at `t`: SUBMITTED, startTime,
        "0%" (trueai src/Midjourney.Services/DiscordService.cs:2036-2041, novicezk src/main/
        java/com/github/novicezk/midjourney/loadbalancer/DiscordInstanceImpl.java:141-149).
        `_deadline` is the proxy's job timeout, compressed (see the module docstring)."""
        task.update(status="SUBMITTED", startTime=t, progress="0%")
        mode, prompt = self.mj_job(task)
        task.update(_mj_mode=mode, _mj_prompt=prompt)
        outcome, long = self.mj_outcome(task, mode), "long" in task["_kw"]
        task["_outcome"] = outcome
        task["_ends"] = None if outcome == "stuck" else t + (LONG_MS if long else self.run_ms)
        task["_progress_at"] = t + self.run_ms // 2
        task["_deadline"] = None if long else t + self.timeout_ms
        self._active[task["id"]] = slot
        if task["_ends"] is not None:
            self._mj_running.add(task["id"])

    def mj_outcome(self, task: Task, mode: str) -> str:
        """Midjourney's answer to the job, scripted by keyword (see the module docstring)."""
        kw = task["_kw"]
        scripted = ("stuck", "captcha", "banned", "modnotice", "oops", "mjqueuefull")
        if found := next((k for k in scripted if k in kw), None):
            return found
        cost = fast_units(task["action"], mode, task["_mj_prompt"])
        short = kw & {"outoffast", "cnexhausted"} or self.mj_fast_jobs < cost
        paid = mode != "RELAX" and task["action"] not in FREE_ACTIONS
        return "credits" if paid and short else "success"

    def finish(self, task: Task, t: int, reason: str | None = None) -> None:
        """The proxy ends the task, freeing its slot: SUCCESS, "100%", or FAILURE with
        `reason` and progress "" (trueai src/Midjourney.Base/Models/TaskInfo.cs:743-746,
        986-991, novicezk src/main/java/com/github/novicezk/midjourney/support/Task.java:
        56-67)."""
        if reason is None:
            task.update(status="SUCCESS", progress="100%", finishTime=t)
        else:
            task.update(status="FAILURE", progress="", finishTime=t, failReason=reason)
        self._active.pop(task["id"], None)
        task.pop("_fail_at", None)

    def succeed(self, task: Task, t: int) -> None:
        """Midjourney's result reaches the proxy (its image, or a video's first clip, and
        its prompt)."""
        self.finish(task, t)
        video = task["action"] == "VIDEO" or task.get("_video_parent")
        task["imageUrl"] = f"https://cdn.invalid/{task['id']}.{'mp4' if video else 'png'}"
        task["properties"].update(finalPrompt=task["_mj_prompt"], messageHash=f"{task['id']}-hash")

    def advance(self) -> None:
        """Brings the account up to now, handling each due event in time order; one a test
        moved into the past (`_ends` = 0: Midjourney finishes the job) happens now."""
        with self._lock:
            now = now_ms()
            self._fill(self._clock)
            while (event := self._next_event(now)) is not None:
                when, kind, task = event
                self._clock = when if when >= self._clock else now
                self._on_event(kind, task, self._clock)
                self._fill(self._clock)
            self._clock = max(self._clock, now)
            self._fill(self._clock)
            self.notify_changes()

    def _next_event(self, now: int) -> tuple[int, str, Task] | None:
        best: tuple[int, int, str, Task] | None = None
        for tid in [*self._active, *self._mj_running]:
            task = self.tasks.get(tid)
            if task is None:
                continue
            due = [(task["_ends"], 0, "mj_end")] if tid in self._mj_running else []
            if tid in self._active:
                shows = task["status"] == "SUBMITTED"
                due.append((task["_progress_at"] if shows else None, 1, "progress"))
                due.append((task["_fail_at"][0] if "_fail_at" in task else None, 2, "fail_at"))
                due.append((task["_deadline"] if self.timeouts_on() else None, 3, "timeout"))
            for when, rank, kind in due:
                if when is not None and when <= now and (best is None or (when, rank) < best[:2]):
                    best = (when, rank, kind, task)
        return None if best is None else (best[0], best[2], best[3])

    def _on_event(self, kind: str, task: Task, t: int) -> None:
        tid = task["id"]
        if kind == "progress":
            # Midjourney's progress message: IN_PROGRESS and its text (trueai
            # src/Midjourney.Services/DiscordWebSocketService.cs:3011-3012, novicezk src/main/
            # java/com/github/novicezk/midjourney/wss/handle/StartAndProgressHandler.java:47-65)
            task.update(status="IN_PROGRESS", progress="50%")
        elif kind == "fail_at":  # (when it shows, reason, finishTime)
            _, reason, finished = task["_fail_at"]
            self.finish(task, finished, reason)
        elif kind == "timeout":
            self.timed_out(task, t)
        else:  # Midjourney ends the job, whether or not the proxy still follows it
            self._mj_running.discard(tid)
            if task["_outcome"] == "success":
                cost = fast_units(task["action"], task["_mj_mode"], task["_mj_prompt"])
                self.mj_fast_jobs -= cost
            if tid in self._active and "_fail_at" not in task:
                self.mj_result(task, task["_outcome"], t)

    def _tick(self) -> None:
        while not self._stop.wait(0.01):
            self.advance()

    # Notify hooks.
    STATUS_ORDER: ClassVar[dict[str, int]] = {}
    """Each status's place in the order notifications follow (subclasses: the server's)."""
    NOTIFIES_EQUAL = False
    """Whether a change whose order equals the last one notified is POSTed too."""

    def _order(self, status_progress: str) -> float:
        """`ConvertOrder`: the status's order, plus an IN_PROGRESS task's progress / 100
        (trueai src/Midjourney.Services/NotifyService.cs:158-174, novicezk src/main/java/com/
        github/novicezk/midjourney/service/NotifyServiceImpl.java:92-104)."""
        status, _, progress = status_progress.partition(":")
        order = float(self.STATUS_ORDER.get(status, 0))
        if status == "IN_PROGRESS" and progress.endswith("%"):
            order += float(progress[:-1]) / 100
        return order

    def notify_changes(self) -> None:
        """POSTs each task's change of status or progress to its hook, once, in order,
        after it is stored (both servers save, then notify: trueai src/Midjourney.Services/
        DiscordService.cs:2754-2765, novicezk src/main/java/com/github/novicezk/midjourney/
        loadbalancer/DiscordInstanceImpl.java:173-176). A change whose order is behind the
        last one sent is dropped (trueai NotifyService.cs:106-124 also drops an equal one,
        novicezk NotifyServiceImpl.java:59-68 does not). The body is the task's JSON as
        its fetch shows it (trueai NotifyService.cs:40-44,79, novicezk NotifyServiceImpl.
        java:46). Each is sent once, its failure only recorded (trueai NotifyService.cs:
        77-95,132-137, novicezk NotifyServiceImpl.java:45-53,70-73), from one thread here
        (from a pool there: NotifyService.cs:80, NotifyServiceImpl.java:33).
        Not modelled: trueai looks for changes every 3 s while a job runs
        (DiscordService.cs:2603-2623); here every change is seen as it happens."""
        with self._lock:
            for task in self.tasks.values():
                hook = task["properties"].get("notifyHook")
                now = f"{task['status']}:{task['progress'] or ''}"
                if not isinstance(hook, str) or not hook.strip() or task.get("_seen") == now:
                    continue
                task["_seen"] = now
                last = task.get("_notified")
                if last is not None:
                    behind = self._order(now) - self._order(last)
                    if behind < 0 or (behind == 0 and not self.NOTIFIES_EQUAL):
                        continue
                task["_notified"] = now
                body = json.dumps(self.view(task), ensure_ascii=False).encode()
                self._hooks.put((task["id"], now, hook, body))

    def _post_hooks(self) -> None:
        while (item := self._hooks.get()) is not None:
            task_id, now, hook, body = item
            headers = {"Content-Type": "application/json; charset=utf-8"}
            call = urllib.request.Request(hook, body, headers, method="POST")
            answer: int | str
            try:
                with urllib.request.urlopen(call, timeout=HOOK_TIMEOUT_SECONDS) as r:
                    answer = r.status
            except urllib.error.HTTPError as e:
                with e:
                    answer = e.code
            except (OSError, ValueError) as e:  # unreachable, or not a URL
                answer = type(e).__name__
            with self._lock:
                self.notified.append((task_id, now, answer))

    # HTTP.
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        size = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(size) if size else b""
        try:
            body, malformed = (json.loads(raw) if raw.strip() else None), False
        except ValueError:
            body, malformed = raw.decode(errors="replace"), True
        prompt = body.get("prompt") if isinstance(body, dict) else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        kw = keywords(prompt) if isinstance(prompt, str) else frozenset()
        req = Request(method, urlsplit(request.path).path, headers, body, malformed, kw)
        reply = self.gate(req)
        if reply is None:
            with self._lock:
                self.requests.append((method, req.path, body))
            if "slow" in req.kw:
                time.sleep(self.slow_seconds)  # slow to take the job
            with self._lock:
                self.advance()
                reply = self.route(req)
                self.notify_changes()
            if "late" in req.kw:
                time.sleep(self.slow_seconds)  # the job is taken; the answer comes late
        headers = dict(reply.headers)
        if reply.text is not None:
            data = reply.text.encode()
        else:
            data = (
                b"" if reply.body is None else json.dumps(reply.body, ensure_ascii=False).encode()
            )
            if data:
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
        try:
            request.send_response(reply.status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)
