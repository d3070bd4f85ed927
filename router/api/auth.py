"""Who is asking: the API key of a request, checked against Redis, and its rate limit.

A request's owner is its key's owner, never a field of its body. A missing, malformed,
unknown or revoked key answers 401 (counted by reason in `byoa_api_auth_failures_total`);
the key is never logged, nor put in an answer. A key over its rate answers 429 with
`Retry-After`. The task API takes keys in `x-api-key`; the midjourney-proxy API in
`mj-api-secret` or `Authorization: Bearer`.

The key is checked on the batcher's thread, with the endpoint's own Redis work and the
keys of the requests batched with it (`Key.run`): the dependency only takes the header,
and refuses a missing key at once. A body is read before that, its refusal (413, 408)
kept for after the check, so a refused key answers 401 or 429 whatever its body.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from router.api.batcher import Batcher, Submission
from router.api.envelope import ApiError
from router.apikeys import ApiKey, AuthFailure

P = ParamSpec("P")
T = TypeVar("T")

TASK_API_HEADER = "x-api-key"
"""The header GoAPI and PiAPI clients send their key in."""

_header = APIKeyHeader(
    name=TASK_API_HEADER,
    scheme_name="ApiKey",
    auto_error=False,
    description="a `byoa keys` key",
)

MJ_API_HEADER = "mj-api-secret"
"""The header midjourney-proxy clients send their key in (new-api's relay turns its
`Authorization: Bearer` into it: `service/midjourney.go:202-206`); `Authorization:
Bearer <key>` is taken too."""

_mj_header = APIKeyHeader(
    name=MJ_API_HEADER,
    scheme_name="MjApiSecret",
    auto_error=False,
    description="a `byoa keys` key (the midjourney-proxy API)",
)
_bearer = HTTPBearer(
    scheme_name="Bearer",
    auto_error=False,
    description="a `byoa keys` key as a bearer token (the midjourney-proxy API)",
)


def _verdict(request: Request, found: ApiKey | AuthFailure, wait: float, where: str) -> ApiKey:
    """The key's record, or ApiError 401 / 429; `where` names the header(s) in the 401."""
    if isinstance(found, AuthFailure):
        request.app.state.metrics.auth_failures.labels(reason=found.value).inc()
        raise ApiError(
            401,
            "unauthorized",
            f"a valid API key is needed in the {where} header",
            {"WWW-Authenticate": "ApiKey"},
        )
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"this key may make {found.rate:g} requests a second",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return found


class Key:
    """The key a request presents, checked (it reads Redis) with the endpoint's work."""

    def __init__(self, request: Request, presented: str | None, where: str) -> None:
        self.request = request
        self.presented = presented
        self.where = where
        self._refusal: ApiError | None = None
        if not presented:  # no Redis needed: 401 at once, before any body is read
            self.check(AuthFailure.MISSING, 0.0)

    async def body(self) -> bytes:
        """The request body; b"" if it is refused (413, 408), answered after the check."""
        try:
            return await self.request.body()
        except ApiError as e:
            self._refusal = e
            return b""

    def check(self, found: ApiKey | AuthFailure, wait: float) -> ApiKey:
        """The key's record, or ApiError 401 / 429; then the body's refusal, if any."""
        key = _verdict(self.request, found, wait, self.where)
        if self._refusal is not None:
            raise self._refusal
        return key

    async def run(
        self,
        work: Callable[Concatenate[ApiKey, P], T | Submission],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`work(key record, ...)` after the check, both on the batcher's thread (a
        `Submission` that `work` returns is routed with the batch's others)."""
        batcher: Batcher = self.request.app.state.batcher
        answer: T = await batcher.run(
            self.presented, self.check, lambda key: work(key, *args, **kwargs)
        )
        return answer


async def caller(request: Request) -> Key:
    """The task API's caller (checked by `Key.run`). The header is read here rather than
    by FastAPI's security dependencies, which cost every request a second level of
    dependency solving; `SCHEMES` documents it in the OpenAPI document instead."""
    return Key(request, request.headers.get(TASK_API_HEADER), TASK_API_HEADER)


async def mj_caller(request: Request) -> Key:
    """The midjourney-proxy API's caller: `mj-api-secret`, else `Authorization: Bearer`."""
    presented = request.headers.get(MJ_API_HEADER)
    if not presented:
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        presented = credentials if scheme.lower() == "bearer" and credentials else None
    return Key(request, presented, f"{MJ_API_HEADER} or Authorization: Bearer")


SCHEMES = {
    "ApiKey": _header.model.model_dump(mode="json", by_alias=True, exclude_none=True),
    "MjApiSecret": _mj_header.model.model_dump(mode="json", by_alias=True, exclude_none=True),
    "Bearer": _bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True),
}
"""The OpenAPI security schemes of the two callers."""


def security(path: str) -> list[dict[str, list[str]]]:
    """An operation's OpenAPI security requirement, by its API."""
    if path.startswith("/api/"):
        return [{"ApiKey": []}]
    return [{"MjApiSecret": []}, {"Bearer": []}]


Caller = Annotated[Key, Depends(caller)]
MjCaller = Annotated[Key, Depends(mj_caller)]
