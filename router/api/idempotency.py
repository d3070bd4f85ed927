"""The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): a
caller's name for one submission, so that a retry (after a timeout, a 503, a lost answer)
returns the task the first attempt made instead of running a second one.

The key gives the task id (a hash of owner and key), so SUBMIT's idempotency by id does
the atomic part: however many attempts race, one task exists. Beside it, a record keeps a
fingerprint of the first request that used the key (its route and its body's canonical
JSON), so the same key on another request answers 422 `idempotency_key_reused` instead of
the first task. Keys are per owner and remembered for the task TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from router.api.envelope import ApiError
from router.keys import Keys
from router.models import ErrorCode
from router.scripts import text
from router.shared_secret import SharedSecret

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
"""Characters a key may have: a UUID (36) is the usual one."""
INVALID = (
    f"the {HEADER} header must be one string of 1 to {MAX_LENGTH} visible ASCII characters "
    '(a UUID, say), bare or quoted ("...")'
)
PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
    "description": "Send one with every submission (a fresh UUID per task, the same on "
    "each retry of it): a retry with the same key returns the task the first attempt made "
    "and never runs a second one; the same key with another body answers 422 "
    f"`{ErrorCode.IDEMPOTENCY_KEY_REUSED.value}`. Keys are per owner, remembered for the "
    "task TTL (draft-ietf-httpapi-idempotency-key-header).",
}
"""The header in an operation's OpenAPI `parameters`."""
OPENAPI: dict[str, Any] = {
    "parameters": [PARAMETER],
    "responses": {"422": {"description": f"The {HEADER} was used with another request."}},
}
"""`openapi_extra` of every submission route."""


@dataclass(frozen=True)
class Named:
    """A submission named by its caller: the task id its key gives, and the record of the
    request that first used the key."""

    task_id: str
    record: str
    fingerprint: str
    ttl: int


def key_of(values: Sequence[str]) -> str | None:
    """The key the request's `Idempotency-Key` header values carry (None: no header), or
    ApiError 400 `invalid_idempotency_key`. The draft's form is a quoted string (RFC 8941:
    printable ASCII, `\\"` and `\\\\` escaped); a bare one (visible ASCII, no quotes), as many
    clients send it, is the same key."""
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, ErrorCode.INVALID_IDEMPOTENCY_KEY, f"send one {HEADER} header")
    value = values[0].strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        key = _unquote(value[1:-1])
    else:
        key = value if all("!" <= c <= "~" and c != '"' for c in value) else None
    if not key or len(key) > MAX_LENGTH:
        raise ApiError(400, ErrorCode.INVALID_IDEMPOTENCY_KEY, INVALID)
    return key


def _unquote(inner: str) -> str | None:
    """A quoted string's characters (`\\"` and `\\\\` escaped), or None if it is not one."""
    chars: list[str] = []
    escaped = False
    for c in inner:
        if not " " <= c <= "~":
            return None
        if escaped:
            if c not in '"\\':
                return None
            chars.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            return None
        else:
            chars.append(c)
    return None if escaped else "".join(chars)


def name(
    keys: Keys, owner: str, key: str | None, route: str, body: Any, ttl: int, secret: SharedSecret
) -> Named | None:
    """The submission `key` names (None: no key): `body` is the request's parsed JSON,
    `route` its path (a mode prefix included), both in the fingerprint. The task id is an
    HMAC of owner and key under the deployment's `secret` (`Keys.idempotency_secret`):
    task ids are global, so another owner who guessed a key must not be able to take its
    id first (through the intake list, where a message names its own id)."""
    if key is None:
        return None
    mac = hmac.new(secret.cached(), f"{owner}\0{key}".encode(), hashlib.sha256)
    task_id = mac.hexdigest()[:32]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    fingerprint = hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()
    return Named(task_id, keys.idempotency(owner, task_id), fingerprint, ttl)


def first_uses(redis: Redis, named: Sequence[Named]) -> list[bool]:
    """Record each key's request where the key is new, in one round trip: for each, whether
    the key names this request (False: another request used it first)."""
    pipe = redis.pipeline(transaction=False)
    for n in named:  # SET NX GET: the first request's fingerprint, or None if now this one's
        pipe.set(n.record, n.fingerprint, nx=True, get=True, ex=n.ttl)
    replies = pipe.execute()
    return [
        old is None or text(old) == n.fingerprint for n, old in zip(named, replies, strict=True)
    ]


def reused() -> ApiError:
    """The answer to a key that another request used first."""
    return ApiError(
        422,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        f"this {HEADER} was used with another request (another route or body); "
        "send a new key for a new task",
    )
