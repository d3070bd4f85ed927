"""`byoa api` closes a connection whose request head does not arrive within the API
timeout (the first request's or a later one's on a keep-alive connection), so idle
half-sent requests cannot hold the process, while requests in hand are unaffected."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from router.apikeys import ApiKeys
from router.core import Router
from tests.conftest import wait_for
from tests.test_api_process import free_port

TIMEOUT = 1.0
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
"""A request head missing its final blank line."""


@pytest.fixture
def port(spawn: Callable[..., subprocess.Popen[bytes]]) -> int:
    """A ready `byoa api` process's port, its API timeout `TIMEOUT`."""
    port = free_port()
    proc = spawn(
        "api", "--host", "127.0.0.1", "--port", str(port), BYOA_API_TIMEOUT_SECONDS=str(TIMEOUT)
    )

    def ready() -> bool:
        assert proc.poll() is None, "byoa api exited"
        return healthy(port)

    wait_for(ready, 30, "byoa api to be ready")
    return port


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def connect(port: int, opened: list[socket.socket]) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    opened.append(s)
    return s


def read_to_close(s: socket.socket, deadline: float) -> bytes:
    """All the server sends until it closes (a reset counts as closed), which it must do
    by `deadline` (on the monotonic clock)."""
    got = b""
    try:
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
    except ConnectionResetError:
        return got
    except TimeoutError:
        raise AssertionError(f"still open at its deadline, after {got[:100]!r}") from None


def closing_deadline() -> float:
    """When a connection whose deadline starts now must be closed: its timeout, and slack."""
    return time.monotonic() + TIMEOUT + 5


def read_answers(s: socket.socket, count: int) -> bytes:
    """Bytes up to the end of the `count`th `/healthz` answer."""
    got = b""
    while got.count(b"ok\n") < count:
        chunk = s.recv(65536)
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


def test_connections_that_never_finish_a_head_are_closed_and_others_served(
    port: int, sockets: list[socket.socket]
) -> None:
    started = time.monotonic()
    deadline = closing_deadline()
    idle = [connect(port, sockets) for _ in range(50)]
    for s in idle:
        s.sendall(HEAD)
    silent = connect(port, sockets)  # connects and sends nothing at all
    assert healthy(port), "a complete request must be served while the others hang"
    answers = [read_to_close(s, deadline) for s in idle]
    assert read_to_close(silent, deadline) == b""  # nothing asked: closed without an answer
    assert time.monotonic() - started >= TIMEOUT * 0.9  # not before its time
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"connection: close" in answer.lower()
    assert healthy(port)


def trickle(s: socket.socket, data: bytes, deadline: float) -> bytes:
    """Send `data` a byte every 0.2 s until the server closes; what it answered."""
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            s.sendall(bytes([byte]))
            return read_to_close(s, min(deadline, time.monotonic() + 0.2))
        except AssertionError:
            continue  # not closed yet
        except (BrokenPipeError, ConnectionResetError):
            return b""
    raise AssertionError("the connection stayed open while the bytes trickled in")


def test_a_trickled_head_is_closed_at_its_deadline_whatever_it_sends(
    port: int, sockets: list[socket.socket]
) -> None:
    answer = trickle(connect(port, sockets), HEAD * 20, closing_deadline())
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]


def test_the_body_of_a_request_already_answered_cannot_hold_the_connection(
    port: int, sockets: list[socket.socket]
) -> None:
    s = connect(port, sockets)
    s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:  # answered without reading the body
        answer += s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    assert trickle(s, b"x" * 1000, closing_deadline()) == b""  # nothing to answer: closed


def test_a_keep_alive_connection_gets_the_deadline_for_each_later_head(
    port: int, sockets: list[socket.socket]
) -> None:
    idle, partial = connect(port, sockets), connect(port, sockets)
    for s in (idle, partial):
        s.sendall(HEAD + b"\r\n")
        assert read_answers(s, 1).startswith(b"HTTP/1.1 200 ")
    deadline = closing_deadline()
    partial.sendall(HEAD)  # the second request's head, never finished
    assert read_to_close(partial, deadline).startswith(b"HTTP/1.1 408 ")
    assert read_to_close(idle, deadline) == b""  # asked nothing more: closed, no answer


def test_pipelined_and_slow_bodied_requests_are_not_cut_short(
    port: int, sockets: list[socket.socket], router: Router
) -> None:
    key = ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    s = connect(port, sockets)
    s.sendall((HEAD + b"\r\n") * 3)  # three requests in one write
    assert read_answers(s, 3).count(b"HTTP/1.1 200 ") == 3
    # a head in time, then a request that the application answers once its body is read:
    # the head's deadline no longer applies; the body's own (`router.api.body`) does
    slow = connect(port, sockets)
    slow.sendall(
        b"POST /api/v1/task HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"x-api-key: " + key.encode() + b"\r\nContent-Length: 2\r\n\r\n{"
    )
    answer = read_to_close(slow, closing_deadline())
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout" in answer  # the body's 408, in the task API's envelope
