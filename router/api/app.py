"""The `byoa api` application and its server: FastAPI on uvicorn, state in Redis only.

Besides the task API it serves `/healthz` (the process lives), `/readyz` (Redis answers
and the Lua scripts are loaded), `/metrics` (this process's request counts and latency),
and its OpenAPI document at `/openapi.json`, browsable at `/docs` (Swagger UI) and
`/redoc` (ReDoc) with no network beyond this server: their scripts and styles are files of
an installed package (fastapi-offline's copies of swagger-ui-dist and redoc), served
under `/docs/assets/`, not a CDN.
"""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from router.api import auth, mjapi, taskapi
from router.api.batcher import Batcher
from router.api.body import BodyLimit
from router.api.envelope import ApiError, refused
from router.api.metrics import ApiMetrics, MetricsMiddleware
from router.apikeys import ApiKeys
from router.connections import capped_protocol, descriptor_budget
from router.core import MAX_CONNECTIONS, Router
from router.errors import REDIS_OUTAGES, ApiPortUnavailable, NotReplicated
from router.http import listen
from router.presence import ApiBeat, redis_address, redis_url_shown
from router.probes import readiness
from router.redis_url import open_redis
from router.settings import Settings

log = logging.getLogger(__name__)
GRACE_SECONDS = 20
"""On SIGTERM, requests in hand get this long to finish (the deploy files' grace is longer)."""
BACKLOG = 2048
"""The listen queue (uvicorn's default)."""
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
FAILED = "the server failed; see its log"
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)
"""FastAPI's own OpenTelemetry hooks (newer releases) off: this process's metrics are its
Prometheus `/metrics`, and the hooks cost each request a look at the global providers."""


def connect(settings: Settings) -> Redis:
    """A Redis client whose calls give up after the API timeout (a 503, not a hang),
    waiting that long at most for a free connection too."""
    timeout = settings.api_timeout_seconds
    return open_redis(
        settings.redis_url.get_secret_value(),
        max_connections=MAX_CONNECTIONS,
        pool_timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


def create_app(settings: Settings, redis: Redis | None = None) -> FastAPI:
    """The application, on `redis` (default: one for the settings' URL)."""
    router = Router(settings, redis if redis is not None else connect(settings))
    app = FastAPI(
        title="byoa-router task API",
        version="1",
        description="Midjourney tasks across a pool of bring-your-own accounts, in the "
        "unified task API's shape (GoAPI / PiAPI; authenticate with `x-api-key`) and the "
        "midjourney-proxy API's (`/mj/...`; `mj-api-secret` or `Authorization: Bearer`). "
        "Send an `Idempotency-Key` header (a fresh UUID per task) with every submission and "
        "the same one on each retry of it: a retry after a timeout or a 503 then returns the "
        "task the first attempt made, never a second one.",
        docs_url=None,  # served from packaged assets instead (`_add_docs`)
        redoc_url=None,
        **_NO_TELEMETRY,
    )
    app.state.router = router
    app.state.api_keys = api_keys = ApiKeys(router.redis, router.scripts)
    app.state.metrics = metrics = ApiMetrics()
    app.state.batcher = Batcher(router, api_keys, metrics.batch_requests.observe)
    app.include_router(taskapi.routes)
    app.include_router(mjapi.routes)
    for prefix in mjapi.PREFIXES:  # the same routes, choosing a new task's mode
        app.include_router(mjapi.routes, prefix=prefix, include_in_schema=False)
    _add_probes(app, router, metrics)
    _add_docs(app)
    _add_handlers(app)
    app.add_middleware(
        BodyLimit, limit=settings.max_message_bytes, timeout=settings.api_timeout_seconds
    )
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, routes=app.routes, prefixes=mjapi.PREFIXES
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_probes(app: FastAPI, router: Router, metrics: ApiMetrics) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        ready, text = readiness(router)
        return PlainTextResponse(text + "\n", status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


DOCS_ASSETS = "/docs/assets"
"""Where the documentation pages' scripts, styles and icon are served from."""
ASSETS_PACKAGE = ("fastapi_offline", "static")
"""The installed package directory that holds them: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js, favicon.png."""


def _add_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc` (ReDoc), loading only this server's files: an
    operator's browser on a network without the internet still shows them."""
    app.mount(DOCS_ASSETS, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    # No validator badge: Swagger UI would ask validator.swagger.io about the document.
    parameters = {**swagger_ui_default_parameters, "validatorUrl": None}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _add_handlers(app: FastAPI) -> None:
    """Every refusal in its API's shape (the task API's envelope, or the midjourney-proxy
    API's answer under `/mj/`), with a stable code; never a stack trace."""

    def shaped(request: Request, e: ApiError) -> JSONResponse:
        return mjapi.refused(e) if mjapi.is_mj_path(request.url.path) else refused(e)

    async def api_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, ApiError)
        return shaped(request, e)

    async def http_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, HTTPException)
        code = HTTP_CODES.get(e.status_code, "http_error")
        return shaped(request, ApiError(e.status_code, code, str(e.detail), dict(e.headers or {})))

    async def invalid(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        where = "; ".join(".".join(map(str, x["loc"])) + ": " + x["msg"] for x in e.errors())
        return shaped(request, ApiError(400, "invalid_request", where[:500]))

    async def redis_down(request: Request, e: Exception) -> JSONResponse:
        if isinstance(e, NotReplicated):  # stored, not yet safe from a failover: retryable
            log.warning("a write was not acknowledged by enough replicas in time")
            return shaped(request, ApiError(503, e.code, e.message))
        if not isinstance(e, REDIS_OUTAGES):  # Redis answered, with an error: ours
            log.error("redis refused a command: %s", type(e).__name__)
            return shaped(request, ApiError(500, "internal_error", FAILED))
        log.warning("redis unavailable: %s", type(e).__name__)
        return shaped(request, ApiError(503, "unavailable", "the task store cannot be reached"))

    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("unexpected %s while answering", type(e).__name__)
        return shaped(request, ApiError(500, "internal_error", FAILED))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(RedisError, redis_down)
    app.add_exception_handler(Exception, unexpected)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request body the task endpoint reads itself (it parses
    the body strictly, so it declares no body parameter for FastAPI to read) and the key
    headers the callers read themselves (`auth.caller`, `auth.mj_caller`)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    body = taskapi.TaskRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(body.pop("$defs", {}))
    schemas["TaskRequest"] = body
    doc["components"]["securitySchemes"] = auth.SCHEMES
    for path, operations in doc.get("paths", {}).items():
        if path.startswith(("/api/", "/mj/")):
            for operation in operations.values():
                operation["security"] = auth.security(path)
    app.openapi_schema = doc
    return doc


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn finishes the requests in hand). A port that
    cannot be bound raises ApiPortUnavailable before anything starts. The process's
    heartbeat (`router.presence.ApiBeat`) lets `byoa status` count it."""
    try:
        sock = listen(host, port, BACKLOG)
    except OSError as e:
        raise ApiPortUnavailable(
            f"cannot serve the task API on {host}:{port}: {e.strerror or e} "
            "(free the port, or give --port or BYOA_API_PORT another)"
        ) from None
    app = create_app(settings)
    router: Router = app.state.router
    try:
        router.scripts.load_all()
    except RedisError as e:  # served anyway: /readyz says not ready until Redis answers
        log.warning("redis unavailable at start: %s", type(e).__name__)
    cap, _ = descriptor_budget(settings.api_max_connections)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the `byoa` command's logging
        access_log=False,  # request lines carry task ids; metrics count requests instead
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        # httptools, with a deadline on each request head (a connection that never
        # finishes one cannot hold a slot forever) and a cap on open connections within
        # the process's descriptors (idle sockets cannot starve it); uvloop where installed
        http=capped_protocol(settings.api_timeout_seconds, cap),
        loop="auto",
        backlog=BACKLOG,
        timeout_keep_alive=max(1, round(settings.api_timeout_seconds)),
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    log.info(
        "serving the task API on %s:%d (at most %d connections; redis %s, prefix %s)",
        host,
        sock.getsockname()[1],
        cap,
        redis_url_shown(redis_address(router.redis)),
        settings.key_prefix,
    )
    beat, stop = ApiBeat(router.redis, router.keys).start()

    def leave() -> None:
        stop.set()
        beat.join(timeout=2)

    try:
        _Server(config, leave).run(sockets=[sock])
    finally:
        leave()


class _Server(uvicorn.Server):
    """uvicorn, calling `on_shutdown` once the requests in hand are finished: uvicorn
    raises the signal that stopped it again right after, so nothing after `run` runs."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        self.on_shutdown()
