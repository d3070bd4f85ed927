"""Request bodies: bounded in size and in time, then read as strict JSON.

`BodyLimit` (ASGI middleware) refuses a body larger than the limit, whether its
Content-Length says so or its bytes do, and one that takes longer than the timeout to
arrive: the endpoint's read raises, and the app answers 413 or 408. `parse_json` reads
the body as the intake list reads a message (`router.requests`): UTF-8 (a leading byte
order mark ignored), no duplicate keys, nothing JSON cannot carry to every consumer
(lone surrogates, NaN, numbers beyond 64 bits, nesting deeper than 32 levels).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.api.envelope import ApiError
from router.models import ErrorCode
from router.requests import json_problem


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, ErrorCode.MESSAGE_TOO_LARGE, f"the request body is larger than {limit} bytes"
        )


class BodyTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, "request_timeout", f"the body did not arrive within {seconds:g} s")


class BodyLimit:
    """Wraps `receive` so that reading a body past `limit` bytes or `timeout` seconds
    raises (the endpoint's read fails, and the app's handler answers)."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        seen = 0
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def bounded() -> Message:
            nonlocal seen
            if declared is not None and declared > self.limit:
                raise BodyTooLarge(self.limit)
            try:
                async with asyncio.timeout_at(deadline):  # no task of its own, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, bounded, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_JSON, message)


def parse_json(raw: bytes) -> Any:
    """The body's JSON value, or ApiError 400 `invalid_json` saying why not."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise _invalid(f"not UTF-8 text: byte {e.start} is {raw[e.start]:#04x}") from None
    duplicate: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) < len(items) and not duplicate:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    duplicate.append(key)
                    break
                seen.add(key)
        return obj

    try:
        data = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=pairs)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        raise _invalid(f"not valid JSON: {type(e).__name__}: {str(e)[:200]}") from None
    if duplicate:
        key = json.dumps(duplicate[0][:40])
        raise _invalid(f"the key {key} appears twice in one object")
    problem = json_problem(data)
    if problem:
        raise _invalid(problem)
    return data
