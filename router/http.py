"""The router's HTTP port: /metrics (Prometheus), /healthz (alive), /readyz (Redis
reachable and the Lua scripts loaded, `router.probes`), and POST /hooks/job/... (backend
callbacks, see `router.callbacks`).

Served as `byoa api` is, by uvicorn (httptools, on asyncio), on a thread of its own beside
the intake loop: a connection costs a descriptor, not a thread, while its request
arrives, so idle or trickling sockets cannot use up threads; each must deliver its head
and body in time, and at most `metrics_max_connections` are open
(`router.connections`). The work that needs Redis (a scrape, a readiness check, a
callback) runs on at most `metrics_threads` threads; /healthz is answered on the event
loop, so it answers while every thread waits on Redis. What is accepted at once stays
within the process's descriptors (`descriptor_budget`), and were they to run out anyway,
asyncio's accept loop backs off a second rather than spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import uvicorn
from prometheus_client import make_wsgi_app
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from router import callbacks
from router.connections import BACKLOG, capped_protocol, descriptor_budget
from router.core import Router
from router.errors import MetricsPortUnavailable
from router.metrics import CALLBACKS, registry
from router.probes import readiness

log = logging.getLogger(__name__)
T = TypeVar("T")
Headers = list[tuple[str, str]]
GRACE_SECONDS = 2.0
"""On shutdown, requests in hand get this long to finish."""
BUSY = "503 Service Unavailable", "busy: no thread free in time"


class _Uvicorn(uvicorn.Server):
    """uvicorn, with the kernel's listen queue BACKLOG deep. asyncio listens with the
    backlog it is given and also accepts that many connections in one go: given a
    smaller one (`descriptor_budget`), what it holds at once stays within the process's
    descriptors, while a burst still waits in the kernel's queue."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or []:
            sock.listen(BACKLOG)  # on Linux, resizes the queue of a listening socket


class HttpServer:
    """The router's HTTP port being served (the names are socketserver's, as before)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, app: HttpApp) -> None:
        self.server, self.sock, self.app = server, sock, app
        self.server_port: int = sock.getsockname()[1]
        self.thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="byoa-http", daemon=True
        )

    def shutdown(self) -> None:
        """Stop serving: no new connections, requests in hand get GRACE_SECONDS."""
        self.server.should_exit = True
        self.thread.join(GRACE_SECONDS + 5)
        self.app.close()

    def server_close(self) -> None:
        """Close the listening socket (shutdown closes it too)."""
        self.sock.close()


class HttpApp:
    """The ASGI application of the router's HTTP port; see the module."""

    def __init__(self, router: Router) -> None:
        settings = router.settings
        self.router = router
        self.timeout = settings.metrics_timeout_seconds
        self.hooks = callbacks.of(router)
        self.scraper = make_wsgi_app(registry(router))
        self.threads = ThreadPoolExecutor(settings.metrics_threads, "byoa-http-work")
        self.slots = asyncio.Semaphore(settings.metrics_threads)
        """A thread each; a request waits for one here (costing no thread) until timeout."""

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(callbacks.PATH):
            await self._callback(scope, receive, send)
        elif path == "/healthz":
            await _reply(send, "200 OK", "ok")
        elif path == "/readyz":
            ready = await self._in_thread(readiness, self.router)
            if ready is None:
                await _reply(send, *BUSY)
            else:
                await _reply(send, "200 OK" if ready[0] else "503 Service Unavailable", ready[1])
        elif path == "/metrics":
            scraped = await self._in_thread(self._scrape, scope)
            if scraped is None:
                await _reply(send, *BUSY)
            else:
                await _send(send, *scraped)
        else:
            await _reply(send, "404 Not Found", "try /metrics, /healthz or /readyz")

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        screened = callbacks.screen(
            scope["method"], scope["path"], _header(scope, "content-length")
        )
        if isinstance(screened, tuple):
            status, result = screened
            CALLBACKS.labels(result=result).inc()
            allow = [("Allow", "POST")] if status.startswith("405") else []
            await _reply(send, status, status[4:].lower(), [*allow, ("Connection", "close")])
            return
        late = await self._discard(receive)
        if late is not None:
            CALLBACKS.labels(result="malformed").inc()
            await _reply(send, late, late[4:].lower(), [("Connection", "close")])
            return
        answered = await self._in_thread(callbacks.answer, self.hooks, screened)
        if answered is None:
            await _reply(send, *BUSY)
            return
        status, counted = answered
        if counted is not None:
            CALLBACKS.labels(result=counted).inc()
        if status.startswith("204"):
            await _send(send, status, [], b"")
        else:
            await _reply(send, status, status[4:].lower())

    async def _discard(self, receive: Receive) -> str | None:
        """Take the body off the connection (at most MAX_BODY bytes, within the timeout)
        and throw it away; None, or the status refusing a body too large or too late."""
        seen = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return "400 Bad Request"  # the client went away
                    seen += len(message.get("body", b""))
                    if seen > callbacks.MAX_BODY:
                        return "413 Content Too Large"
                    if not message.get("more_body", False):
                        return None
        except TimeoutError:
            return "408 Request Timeout"

    def _scrape(self, scope: Scope) -> tuple[str, Headers, bytes]:
        """prometheus_client's own answer (format and compression as the scraper asks)."""
        environ = {
            "REQUEST_METHOD": scope["method"],
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode("latin-1"),
        }
        for name in ("accept", "accept-encoding"):
            value = _header(scope, name)
            if value is not None:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        started: list[tuple[str, Headers]] = []

        def start_response(status: str, headers: Headers, *_: Any) -> None:
            started.append((status, headers))

        try:
            body = b"".join(self.scraper(environ, start_response))
        except RedisError as e:
            text = f"redis: {type(e).__name__}\n".encode()
            return "503 Service Unavailable", _text_headers(text), text
        status, headers = started[0]
        return status, [*headers, ("Content-Length", str(len(body)))], body

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T | None:
        """fn(*args) on one of the threads; None if none came free within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.slots.acquire()
        except TimeoutError:
            return None
        loop = asyncio.get_running_loop()

        def release(_: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.slots.release)

        try:
            work = self.threads.submit(fn, *args)
        except RuntimeError:  # shut down
            self.slots.release()
            return None
        work.add_done_callback(release)  # when the thread is done, not when we stop waiting
        return await asyncio.wrap_future(work)


def _header(scope: Scope, name: str) -> str | None:
    values = [v.decode("latin-1") for k, v in scope["headers"] if k.decode("latin-1") == name]
    return ",".join(values) if values else None


def _text_headers(data: bytes) -> Headers:
    return [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]


async def _reply(send: Send, status: str, body: str, more: Iterable[tuple[str, str]] = ()) -> None:
    data = (body + "\n").encode()
    await _send(send, status, [*_text_headers(data), *more], data)


async def _send(send: Send, status: str, headers: Headers, body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": int(status[:3]), "headers": raw})
    await send({"type": "http.response.body", "body": body})


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` (OSError if it cannot be had): bound before
    a server starts, so a port another process holds stops the process at once."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=backlog)


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port, BACKLOG)
    except OSError as e:
        raise MetricsPortUnavailable(
            f"cannot serve /metrics, /healthz and /readyz on {host}:{port}: "
            f"{e.strerror or e} (free the port, set BYOA_METRICS_PORT to another, "
            "or BYOA_METRICS_ENABLED=false)",
        ) from None


def serve(router: Router) -> HttpServer:
    """Serve on the configured address from a daemon thread. A port that cannot be bound
    (another process holds it) raises MetricsPortUnavailable: a router
    without its probes and scrapes must not run on as if it had them."""
    s = router.settings
    cap, batch = descriptor_budget(s.metrics_max_connections)
    sock = _bind(s.metrics_host, s.metrics_port)
    app = HttpApp(router)
    config = uvicorn.Config(
        app,
        log_config=None,  # the `byoa` command's logging
        access_log=False,  # a callback's request line carries its signature
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        ws="none",
        http=capped_protocol(s.metrics_timeout_seconds, cap),
        loop="asyncio",  # its accept loop's back-off on EMFILE is known (a second)
        backlog=batch,  # asyncio's accept batch; the kernel's queue is BACKLOG (_Uvicorn)
        timeout_keep_alive=max(1, round(s.metrics_timeout_seconds)),
        timeout_graceful_shutdown=round(GRACE_SECONDS),
    )
    config.load()  # here, so that a bad configuration fails the caller, not the thread
    server = HttpServer(_Uvicorn(config), sock, app)
    server.thread.start()
    log.info(
        "serving /metrics on %s:%d (at most %d connections)",
        s.metrics_host,
        server.server_port,
        cap,
    )
    return server
