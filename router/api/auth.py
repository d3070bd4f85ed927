"""Who is asking: the API key of a request, checked against Redis, and its rate limit.

A request's owner is its key's owner, never a field of its body. A missing, malformed,
unknown or revoked key answers 401 (counted by reason in `byoa_api_auth_failures_total`);
the key is never logged, nor put in an answer. A key over its rate answers 429 with
`Retry-After`. The task API takes keys in `x-api-key`; the midjourney-proxy API in
`mj-api-secret` or `Authorization: Bearer`.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from router.api.envelope import ApiError
from router.apikeys import ApiKey, ApiKeys, AuthFailure

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


def _check(request: Request, presented: str | None, where: str) -> ApiKey:
    """The key's record, or ApiError 401 / 429; `where` names the header(s) in the 401."""
    state = request.app.state
    keys: ApiKeys = state.api_keys
    found = keys.authenticate(presented)
    if isinstance(found, AuthFailure):
        state.metrics.auth_failures.labels(reason=found.value).inc()
        raise ApiError(
            401,
            "unauthorized",
            f"a valid API key is needed in the {where} header",
            {"WWW-Authenticate": "ApiKey"},
        )
    wait = keys.allow(found)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"this key may make {found.rate:g} requests a second",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return found


def caller(request: Request, presented: Annotated[str | None, Depends(_header)]) -> ApiKey:
    """The key's record, or ApiError 401 / 429 (run in a worker thread: it reads Redis)."""
    return _check(request, presented, TASK_API_HEADER)


def mj_caller(
    request: Request,
    secret: Annotated[str | None, Depends(_mj_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The midjourney-proxy API's caller: `mj-api-secret`, else `Authorization: Bearer`."""
    presented = secret if secret else (bearer.credentials if bearer is not None else None)
    return _check(request, presented, f"{MJ_API_HEADER} or Authorization: Bearer")


Caller = Annotated[ApiKey, Depends(caller)]
MjCaller = Annotated[ApiKey, Depends(mj_caller)]
