"""Processes for tests: private redis-servers (AOF, auth, TLS, ACL), and killing trees."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

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
