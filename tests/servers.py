"""Processes for tests: private redis-servers (AOF, auth, TLS, ACL), and killing trees."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from redis import Redis

from tests.conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own on a free port; `url` is how clients reach it."""

    def __init__(self, workdir: Path, args: list[str], url: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = args
        self.url = url.format(port=self.port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        cmd += [a.format(port=self.port) for a in self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        client = Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except Exception:
                return False

        wait_for(up, timeout=20, what="redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a spawned process and its descendants (rq's work horse has its own group)."""
    pids, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


SECRET = "whsec-CANARY-5b7e1f"
"""The webhook secret of the tests' receivers (a canary: it must show nowhere else)."""


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Endpoint:
    """A webhook receiver on 127.0.0.1 that records every POST. Per path, `answers` are
    given in turn (the last one repeats; 200 by default); POSTs to `/hang...` are held
    unanswered until `release` is set."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.answers: dict[str, list[int]] = {}
        self.held = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, *args: Any) -> None:
                pass  # a killed worker's connection

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["content-length"])))
        with self.lock:
            self.hits.append(Hit(h.path, {k.lower(): v for k, v in h.headers.items()}, body))
            plan = self.answers.get(h.path, [200])
            status = plan.pop(0) if len(plan) > 1 else plan[0]
            hold = h.path.startswith("/hang") and not self.release.is_set()
            self.held += hold
        if hold:
            self.release.wait(60)
            with self.lock:
                self.held -= 1
        h.send_response(status)
        h.send_header("content-length", "0")
        h.end_headers()

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def hook(self, path: str, **more: Any) -> dict[str, Any]:
        return {"endpoint": self.url + path, "secret": SECRET, **more}
