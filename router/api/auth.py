"""Who is asking: the API key of a request, checked against Redis, and its rate limit.

A request's owner is its key's owner, never a field of its body. A missing, malformed,
unknown or revoked key answers 401 (counted by reason in `byoa_api_auth_failures_total`);
the key is never logged, nor put in an answer. A key over its rate answers 429 with
`Retry-After`.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from router.api.envelope import ApiError
from router.apikeys import ApiKey, ApiKeys, AuthFailure

TASK_API_HEADER = "x-api-key"
"""The header GoAPI and PiAPI clients send their key in."""

_header = APIKeyHeader(name=TASK_API_HEADER, auto_error=False, description="a `byoa keys` key")


def caller(request: Request, presented: Annotated[str | None, Depends(_header)]) -> ApiKey:
    """The key's record, or ApiError 401 / 429 (run in a worker thread: it reads Redis)."""
    state = request.app.state
    keys: ApiKeys = state.api_keys
    found = keys.authenticate(presented)
    if isinstance(found, AuthFailure):
        state.metrics.auth_failures.labels(reason=found.value).inc()
        raise ApiError(
            401,
            "unauthorized",
            f"a valid API key is needed in the {TASK_API_HEADER} header",
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


Caller = Annotated[ApiKey, Depends(caller)]
