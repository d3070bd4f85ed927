"""The router's HTTP port under idle, trickling and busy clients (real sockets, real
Redis): idle sockets cost no thread and never keep /healthz from answering, a request
that trickles is cut off at its deadline, a busy thread pool refuses in time, and a port
another process holds, or a process out of file descriptors, is handled, not ignored."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from redis import Redis

from router.apikeys import ApiKeys
from router.callbacks import Callbacks
from router.core import Router
from router.http import serve
from router.polls import Entry
from tests.conftest import wait_for


class Served(Protocol):
    """A served HTTP port, as `serve` returns it."""

    server_port: int

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


Serve = Callable[..., Served]


@pytest.fixture
def port(router: Router) -> Iterator[Serve]:
    """Serve `router`'s HTTP port on a free loopback port, with these settings changed."""
    servers: list[Served] = []

    def start(redis: Redis | None = None, **changes: object) -> Served:
        local = {"metrics_port": 0, "metrics_host": "127.0.0.1", **changes}
        settings = router.settings.model_copy(update=local)
        server = serve(Router(settings, redis if redis is not None else router.redis))
        assert server is not None
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) the connection, without waiting."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)
        while chunk := sock.recv(4096):  # a 408 may come before the close
            del chunk
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send `data` a byte every `every` seconds (a slow client: the cadence is the test's
    subject, not a wait for anything) until the server answers or closes; the seconds that
    took and what came back. Fails after `limit` seconds."""
    start = time.monotonic()
    received = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            with contextlib.suppress(OSError):
                received = sock.recv(4096)
            break
        assert time.monotonic() - start < limit, "the server held a trickling connection"
    return time.monotonic() - start, received


def test_idle_and_half_sent_sockets_past_the_cap_cost_no_thread_nor_the_probe(
    port: Serve,
) -> None:
    server = port(metrics_max_connections=16, metrics_threads=2, metrics_timeout_seconds=60)
    assert get(server.server_port, "/readyz")[0] == 200  # one worker thread started
    threads = threading.active_count()
    socks = [connect(server.server_port) for _ in range(150)]
    try:
        for s in socks[::2]:  # half of them start a request head and stop
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        assert get(server.server_port, "/healthz", timeout=2) == (200, "ok\n")
        assert time.monotonic() - start < 2
        assert threading.active_count() <= threads + 2  # the pool's threads at most
        # the cap holds: all but the 16 newest waiting connections are dropped
        wait_for(
            lambda: sum(closed_by_server(s) for s in socks) >= len(socks) - 16,
            timeout=10,
            what="the connections past the cap to be dropped",
        )
        assert get(server.server_port, "/metrics", timeout=2)[0] == 200
    finally:
        for s in socks:
            s.close()


def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(
    port: Serve,
) -> None:
    server = port(metrics_timeout_seconds=1.0)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"y" * 200
    with connect(server.server_port) as sock:
        took, answer = trickle(sock, head, every=0.1, limit=10)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 < took < 3
    assert get(server.server_port, "/healthz") == (200, "ok\n")


def test_a_callback_body_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(
    port: Serve, router: Router
) -> None:
    server = port(metrics_timeout_seconds=1.0)
    signer = Callbacks(router.redis, router.keys, router.polls)
    path = signer.url("", Entry("alice", "t1", 1))
    with connect(server.server_port) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n".encode())
        took, answer = trickle(sock, b"{" * 200, every=0.1, limit=10)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 < took < 3


class Blackhole:
    """A TCP server that accepts and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        """Close everything: a client waiting on it gets its connection error."""
        self.listener.close()
        for s in self.accepted:
            s.close()


def test_with_every_thread_waiting_on_redis_healthz_answers_and_the_rest_are_refused_in_time(
    port: Serve,
) -> None:
    hole = Blackhole()
    try:
        server = port(
            Redis(port=hole.port, socket_connect_timeout=30),
            metrics_threads=1,
            metrics_timeout_seconds=1.0,
        )
        held: list[tuple[int, str]] = []
        first = threading.Thread(
            target=lambda: held.append(get(server.server_port, "/readyz", timeout=30))
        )
        first.start()  # takes the one thread, and hangs on Redis
        wait_for(lambda: hole.accepted, timeout=10, what="the readiness check to reach Redis")
        start = time.monotonic()
        assert get(server.server_port, "/readyz")[0] == 503  # no thread within a second
        assert 0.9 < time.monotonic() - start < 3
        start = time.monotonic()
        assert get(server.server_port, "/healthz", timeout=1) == (200, "ok\n")
        assert time.monotonic() - start < 1
    finally:
        hole.close()
    first.join(30)
    assert held and held[0][0] == 503  # its Redis went away


def test_a_taken_port_stops_byoa_run_with_a_message(env: dict[str, str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:  # another process's port
        taken = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "router", "--log-level", "WARNING", "run"],
            env={
                **env,
                "BYOA_METRICS_ENABLED": "true",
                "BYOA_METRICS_HOST": "127.0.0.1",
                "BYOA_METRICS_PORT": str(taken),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert (
        f"error: metrics_port_unavailable: cannot serve /metrics, /healthz and /readyz on "
        f"127.0.0.1:{taken}" in done.stderr
    )
    assert "Traceback" not in done.stderr


FD_LIMIT = 128
CPU_WINDOW = 2.0
RUN_WITH_FD_LIMIT = (
    "import resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
    "sys.argv[0] = 'byoa'; runpy.run_module('router', run_name='__main__')"
)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_out_of_file_descriptors_the_router_answers_probes_and_does_not_spin(
    env: dict[str, str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    router = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_FD_LIMIT, "--log-level", "ERROR", "run"],
        env={
            **env,
            "BYOA_METRICS_ENABLED": "true",
            "BYOA_METRICS_HOST": "127.0.0.1",
            "BYOA_METRICS_PORT": str(free),
            "BYOA_METRICS_THREADS": "4",
            "BYOA_METRICS_TIMEOUT_SECONDS": "60",  # none of the idle sockets times out
        },
        stderr=subprocess.DEVNULL,  # asyncio says, once a second, that accept ran out
    )
    socks: list[socket.socket] = []
    try:

        def healthy() -> bool:
            try:
                return get(free, "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(healthy, timeout=30, what="the router's HTTP port")
        assert get(free, "/readyz")[0] == 200
        threads = thread_count(router.pid)
        socks = [connect(free) for _ in range(400)]  # three times the descriptors it has
        for _ in range(5):  # each probe answers in its deadline, behind 400 sockets
            start = time.monotonic()
            assert get(free, "/healthz", timeout=1) == (200, "ok\n")
            assert time.monotonic() - start < 1
        cpu = cpu_seconds(router.pid)
        time.sleep(CPU_WINDOW)  # not a wait for anything: the span CPU is measured over
        used = cpu_seconds(router.pid) - cpu
        assert used < 0.25 * CPU_WINDOW, f"{used:.2f} CPU seconds in {CPU_WINDOW} s"
        assert thread_count(router.pid) <= threads + 4
        assert get(free, "/readyz")[0] == 200  # Redis still has its descriptors
        assert router.poll() is None
    finally:
        for s in socks:
            s.close()
        router.terminate()
        router.wait(15)


def test_byoa_api_out_of_file_descriptors_answers_probes_and_requests(
    env: dict[str, str], router: Router
) -> None:
    """`byoa api` holds its connections to a quarter of its descriptors too: 400 idle
    sockets against a limit of 128 leave /healthz and an authenticated request answered."""
    key = ApiKeys(router.redis, router.scripts).create("alice", "t")[1].get_secret_value()
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    api = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_FD_LIMIT, "--log-level", "ERROR", "api",
         "--host", "127.0.0.1", "--port", str(free)],
        env={**env, "BYOA_API_TIMEOUT_SECONDS": "60"},  # none of the idle sockets times out
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    socks: list[socket.socket] = []
    try:

        def healthy() -> bool:
            try:
                return get(free, "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(healthy, timeout=30, what="byoa api")
        socks = [connect(free) for _ in range(400)]  # three times the descriptors it has
        for _ in range(5):
            assert get(free, "/healthz", timeout=2)[0] == 200
            conn = http.client.HTTPConnection("127.0.0.1", free, timeout=2)
            conn.request("GET", "/api/v1/task/none", headers={"x-api-key": key})
            assert conn.getresponse().status == 404  # the key checked, the task looked up
            conn.close()
        assert api.poll() is None
    finally:
        for s in socks:
            s.close()
        api.terminate()
        api.wait(15)
