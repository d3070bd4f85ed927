"""One webhook POST, guarded: the endpoint's name is resolved once, every address it gives
is checked (`router.addresses`: public, or in a network the operator allows), and the
connection goes to a checked address, never through a second lookup (so DNS rebinding
cannot turn a checked name into 127.0.0.1). No redirect is followed. One deadline covers
all of it: resolving, connecting, the TLS handshake, sending, and the whole answer; when
it passes, the socket is shut down under whatever read or write is blocked on it.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from router.addresses import Address, Network, allowed, literal

MAX_ANSWER_BYTES = 65536
"""How much of an endpoint's answer is read (and dropped)."""
REFUSED = "address_not_allowed"
"""A POST's error when its endpoint resolves to no address a webhook may reach (one the
operator does not allow, or none at all): nothing was sent, and trying again would not
help. One error for both, so a tenant cannot tell an internal name from a missing one."""
NO_SUCH_NAME = frozenset(
    getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY") if hasattr(socket, n)
)
"""Lookup errors that say the name has no address (not that the resolver failed now)."""
TIMEOUT = "timeout"
"""A POST's error when its deadline passed."""

Resolve = Callable[[str, int], Sequence[Address]]
Connect = Callable[[tuple[str, int], float], socket.socket]


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to for a TCP connection, in the resolver's order."""
    found: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = literal(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    return found


def connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class Deadlines:
    """Shuts sockets down when their deadline passes, from one thread: a read or write
    blocked on a socket in another thread then ends at once (a per-read timeout would let
    an endpoint that sends a byte a second hold a POST forever)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._socks: dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, at: float) -> int:
        """Shut `sock` down at `at` (time.monotonic()) unless `release`d first."""
        with self._cond:
            n = next(self._ids)
            self._socks[n] = sock
            heapq.heappush(self._heap, (at, n))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="byoa-webhook-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()
            return n

    def release(self, n: int) -> bool:
        """Stop watching; False if the deadline already shut it down."""
        with self._cond:
            return self._socks.pop(n, None) is not None

    def abort_all(self) -> None:
        """Shut every watched socket down now (the end of a warm shutdown's grace)."""
        with self._cond:
            socks, self._socks = list(self._socks.values()), {}
        for sock in socks:
            _shut(sock)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, n = self._heap[0]
                left = at - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                sock = self._socks.pop(n, None)
            if sock is not None:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut the connection itself down (on the raw socket: an SSL socket's own `shutdown`
    would unwrap it under its reader)."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Connection(http.client.HTTPConnection):
    """HTTP on a socket already connected to a checked address."""

    def __init__(self, host: str, port: int, default_port: int, sock: socket.socket) -> None:
        super().__init__(f"[{host}]" if ":" in host else host, port)
        self.default_port = default_port  # the Host header omits the scheme's own port
        self.sock = sock

    def connect(self) -> None:
        raise http.client.NotConnected("a webhook's connection is made once, to its address")


class Poster:
    """Makes guarded POSTs (`post`); `resolve`, `connect` and `tls` (the name lookup, the
    TCP connect, the TLS context) can be replaced to check decisions without a packet
    leaving the host."""

    def __init__(
        self,
        networks: Sequence[Network],
        resolve: Resolve = resolve,
        connect: Connect = connect,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.networks = list(networks)
        self.resolve, self.connect = resolve, connect
        self.deadlines = Deadlines()
        self._tls = tls or ssl.create_default_context()
        """The system's trusted CAs, certificates checked against the URL's host."""

    def post(self, url: str, headers: dict[str, str], data: bytes, timeout: float) -> str:
        """'' if the endpoint answered 2xx within `timeout` seconds, else why not: `HTTP
        <status>`, `timeout`, `address_not_allowed`, or an exception's name."""
        deadline = time.monotonic() + timeout
        parts = urlsplit(url)
        host = parts.hostname or ""
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        try:
            addresses = self._addresses(host, port, deadline)
        except TimeoutError:
            return TIMEOUT
        except socket.gaierror as e:  # a name that surely has no address: as one refused,
            # so a webhook's outcome never tells which internal names exist
            return REFUSED if e.errno in NO_SUCH_NAME else type(e).__name__
        except (OSError, ValueError) as e:
            return type(e).__name__
        if not addresses or not all(allowed(a, self.networks) for a in addresses):
            return REFUSED
        sock = self._open(addresses, port, deadline)
        if isinstance(sock, str):
            return sock
        if parts.scheme == "https":  # the handshake comes below, under the deadline
            sock = self._tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        watch = self.deadlines.watch(sock, deadline)
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
            conn = _Connection(host, port, default_port, sock)
            path = parts.path or "/"
            conn.request("POST", f"{path}?{parts.query}" if parts.query else path, data, headers)
            answer = conn.getresponse()
            answer.read(MAX_ANSWER_BYTES)
            status = answer.status
        except (OSError, http.client.HTTPException, ValueError) as e:
            cut = not self.deadlines.release(watch) or isinstance(e, TimeoutError)
            return TIMEOUT if cut else type(e).__name__
        finally:
            in_time = self.deadlines.release(watch)
            sock.close()
        if not in_time:  # shut under the answer: what was read may be cut short
            return TIMEOUT
        return "" if 200 <= status < 300 else f"HTTP {status}"

    def _addresses(self, host: str, port: int, deadline: float) -> Sequence[Address]:
        """The host's addresses: its own if it is one, else one lookup, given until the
        deadline (a lookup cannot be interrupted: it is left to end on its own thread)."""
        address = literal(host)
        if address is not None:
            return [address]
        result: list[Sequence[Address] | BaseException] = []

        def lookup() -> None:
            try:
                result.append(self.resolve(host, port))
            except BaseException as e:  # handed to the POST's thread
                result.append(e)

        thread = threading.Thread(target=lookup, name="byoa-webhook-lookup", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        if not result:
            raise TimeoutError
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def _open(
        self, addresses: Sequence[Address], port: int, deadline: float
    ) -> socket.socket | str:
        """A connection to the first checked address that takes one, or the last error."""
        error = "OSError"
        for address in addresses:
            left = deadline - time.monotonic()
            if left <= 0:
                return TIMEOUT
            try:
                return self.connect((str(address), port), left)
            except TimeoutError:
                error = TIMEOUT
            except OSError as e:
                error = type(e).__name__
        return error
