"""A replicated Redis for tests: a primary, its replicas and three sentinels, each a
process of the test's own on a free 127.0.0.1 port with a private directory and no
persistence (`--save ""`: a server killed and started again comes back empty and copies
its primary)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from redis import Redis

from tests.conftest import wait_for
from tests.servers import free_port

MASTER = "byoa"
"""The name the sentinels know the primary by."""


def _up(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_timeout=1).ping())
    except Exception:
        return False


class DataServer:
    """One redis-server of the set (the primary or a replica)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, replica_of: int | None = None) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--dir", str(self.workdir), "--save", "", "--appendonly", "no"]
        cmd += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            cmd += ["--replicaof", "127.0.0.1", str(replica_of)]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _up(self.port), 20, f"redis-server on {self.port}")

    @property
    def client(self) -> Redis:
        return Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """kill -9: whatever it had not yet sent its replicas is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: it neither answers nor reads its replication link until `resume`."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class SentinelSet:
    """A primary with `replicas` replicas, watched by three sentinels (quorum 2) that
    call the primary down after `down_after_ms` without an answer."""

    def __init__(self, workdir: Path, replicas: int = 1, down_after_ms: int = 1000) -> None:
        self.workdir = workdir
        self.servers = [DataServer(workdir / f"redis{i}") for i in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after_ms = down_after_ms
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        first, *rest = self.servers
        first.start()
        for server in rest:
            server.start(replica_of=first.port)
        wait_for(lambda: self.replicas_online(first) == len(rest), 20, "the replicas to sync")
        wait_for(lambda: self.acknowledged(first, len(rest)), 20, "the replicas to acknowledge")
        for i, port in enumerate(self.sentinel_ports):
            folder = self.workdir / f"sentinel{i}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {first.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} 4000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            log = (folder / "sentinel.log").open("ab")
            self.sentinels.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
                )
            )
        wait_for(self._sentinels_agree, 30, "the sentinels to see each other and the replicas")

    def _sentinels_agree(self) -> bool:
        try:
            for port in self.sentinel_ports:
                state = Redis(port=port, socket_timeout=1).sentinel_master(MASTER)
                if int(state["num-other-sentinels"]) < 2:
                    return False
                if int(state["num-slaves"]) < len(self.servers) - 1:
                    return False
            return True
        except Exception:
            return False

    @staticmethod
    def acknowledged(server: DataServer, replicas: int) -> bool:
        """Whether `replicas` replicas acknowledge a write on `server` at once (WAIT). A
        replica just synced gets the stream only after its first acknowledgement, which it
        sends on its once-a-second timer."""
        try:
            pipe = server.client.pipeline(transaction=False)
            pipe.publish("sync", "")
            pipe.wait(replicas, 100)
            return int(pipe.execute()[-1]) >= replicas
        except Exception:
            return False

    @staticmethod
    def replicas_online(server: DataServer) -> int:
        try:
            info = server.client.info("replication")
        except Exception:
            return 0
        return sum(
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels name it now (None: they cannot tell)."""
        for port in self.sentinel_ports:
            try:
                _, found = Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    MASTER
                )
                return int(found)
            except Exception:
                continue
        return None

    def primary(self) -> DataServer:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def replicas(self) -> list[DataServer]:
        port = self.primary_port()
        return [s for s in self.servers if s.port != port]

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def sentinel_set(workdir: Path, replicas: int = 1) -> Iterator[SentinelSet]:
    """A started SentinelSet, stopped at the end."""
    group = SentinelSet(workdir, replicas)
    try:
        group.start()
        yield group
    finally:
        group.stop()
