"""The router's HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (Redis
reachable and the Lua scripts loaded), and POST /hooks/job/... (backend callbacks, see
`router.callbacks`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from router import callbacks
from router.core import Router
from router.metrics import CALLBACKS, registry
from router.probes import readiness

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]


class _Server(ThreadingWSGIServer):
    """A deeper listen backlog than socketserver's 5: backends' callbacks come in bursts
    (one per job change), and a full backlog resets connections, scrapes included."""

    request_queue_size = 1024


class _QuietHandler(WSGIRequestHandler):
    timeout = 30.0
    """Seconds a client may stall while sending or reading (a callback sends a body)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log, and a callback's request line
        carries its signature."""


def app(router: Router) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry(router))
    hooks = callbacks.of(router)

    def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(callbacks.PATH):
            status, result = callbacks.respond(hooks, environ)
            if result is not None:
                CALLBACKS.labels(result=result).inc()
            if status.startswith("204"):
                start_response(status, [])
                return []
            allow = [("Allow", "POST")] if status.startswith("405") else []
            return _reply(start_response, status, status[4:].lower(), allow)
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _reply(start_response, "200 OK", "ok")
        if path == "/readyz":
            ready, text = readiness(router)
            return _reply(start_response, "200 OK" if ready else "503 Service Unavailable", text)
        return _reply(start_response, "404 Not Found", "try /metrics, /healthz or /readyz")

    return serve


def _reply(
    start_response: StartResponse, status: str, body: str, more: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    data = (body + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    start_response(status, [*headers, *more])
    return [data]


def serve(router: Router) -> ThreadingWSGIServer | None:
    """Serve in a daemon thread on the configured address; None if it cannot bind (the
    router routes on, and the failed /readyz or `up` tells the operator)."""
    s = router.settings
    try:
        server = make_server(
            s.metrics_host,
            s.metrics_port,
            app(router),
            _Server,
            handler_class=_QuietHandler,
        )
    except OSError as e:
        log.error("cannot serve metrics on %s:%d: %s", s.metrics_host, s.metrics_port, e)
        return None
    threading.Thread(target=server.serve_forever, name="byoa-http", daemon=True).start()
    log.info("serving /metrics on %s:%d", s.metrics_host, server.server_port)
    return server
