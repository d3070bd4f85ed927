"""The API process's own metrics, served on its `/metrics`: requests by route and status
code, their latency, and refused keys. Routes are the path templates
(`/api/v1/task/{task_id}`), never a task id or a key; a path no route matches is
`unmatched`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.apikeys import AuthFailure

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class ApiMetrics:
    """One app's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "byoa_api_requests",
            "HTTP requests this byoa api process answered, by route template and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "byoa_api_request_seconds",
            "Time this byoa api process took to answer a request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "byoa_api_auth_failures",
            "Requests refused 401 for their API key: missing, malformed, unknown or revoked.",
            ["reason"],
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "byoa_api_batch_requests",
            "Requests whose Redis work (key checks, reads, submissions) one batch did.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        for reason in AuthFailure:  # each from zero, so that increase() sees the first
            self.auth_failures.labels(reason=reason.value)


class MetricsMiddleware:
    """Counts and times every HTTP request (outermost, so refusals count too)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        routes: Sequence[BaseRoute],
        prefixes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        """The app's routes (the list itself: routes added later count too)."""
        self.prefixes = tuple(prefixes)
        """Path prefixes that mount the same routes again (`/mj-fast`...), kept in labels."""

    def template(self, scope: Scope) -> str:
        """The path template of the route that answered `scope` (FastAPI's router notes it
        in the scope; else the app's routes are matched again), with its mount prefix;
        `unmatched` if no route did."""
        path = getattr(scope.get("route"), "path", None)
        if not isinstance(path, str):
            for route in self.routes:
                match, _ = route.matches(scope)
                if match is not Match.NONE:
                    return str(getattr(route, "path", "unmatched"))
            return "unmatched"
        if not scope["path"].startswith(path.split("{", 1)[0]):
            prefix = next((p for p in self.prefixes if scope["path"].startswith(p + "/")), "")
            path = prefix + path
        return path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.template(scope)
            self.metrics.requests.labels(route=route, code=str(status)).inc()
            self.metrics.seconds.labels(route=route).observe(time.perf_counter() - start)
