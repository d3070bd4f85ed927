"""Webhooks: a task's `webhook` field, and the outbox of deliveries kept in Redis.

A task's webhook endpoint is on its record; its secret is kept apart, at its own key
(owner-scoped, with the task's lifetime). The script that changes a task's state puts the
delivery in the owner's outbox in the same step (`hook()` in
`router/commands/includes/finish.lua`), so none is lost whatever process dies;
deliverers (`workers.webhooks`) claim due ones for a while, so a dead deliverer's
deliveries come due again for another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    StrictBool,
    ValidationInfo,
)
from redis import Redis

from router.addresses import Network, endpoint_refusal
from router.keys import Keys
from router.scripts import Scripts, text
from router.settings import Settings

MAX_ENDPOINT_LENGTH = 2048
MAX_SECRET_LENGTH = 256
HIDDEN = "**********"
"""What a webhook secret is replaced with where a message is kept (dead letters)."""


def _visible_ascii(value: str) -> bool:
    return all(33 <= ord(c) <= 126 for c in value)


def endpoint_problem(value: str, allowed: Sequence[Network] = ()) -> str | None:
    """Why `value` cannot be a webhook endpoint, or None: it must be an http(s) URL with a
    host and no user or password, whose host, if it is an address (or a loopback name), is
    public or in `allowed` (the operator's `webhook_allowed_networks`). Never quotes it."""
    if len(value) > MAX_ENDPOINT_LENGTH:
        return f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters"
    if not _visible_ascii(value):
        return "endpoint must be ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "endpoint is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "endpoint must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "endpoint must not carry a user or password; use the secret"
    refusal = endpoint_refusal(parts.hostname, allowed)
    return f"endpoint is refused: {refusal}" if refusal else None


ALLOWED_NETWORKS = "webhook_allowed_networks"
"""The validation context's key for the networks beyond public space an endpoint may name
(`Settings.webhook_allowed_networks`); absent, public addresses only."""


def context(settings: Settings) -> dict[str, Any]:
    """The validation context of a message's webhook under these settings."""
    return {ALLOWED_NETWORKS: settings.webhook_allowed_networks}


def check_endpoint(value: str, info: ValidationInfo) -> str:
    """`endpoint_problem` as a validator, the networks from the validation context."""
    problem = endpoint_problem(value, (info.context or {}).get(ALLOWED_NETWORKS, ()))
    if problem:
        raise ValueError(problem)
    return value


def _empty_is_absent(value: Any) -> Any:
    return None if value == "" else value


def check_secret(value: SecretStr | None) -> SecretStr | None:
    """1 to 256 visible ASCII characters (it goes into an HTTP header); never quoted."""
    secret = value.get_secret_value() if value is not None else ""
    if not secret:
        return None
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValueError(f"secret is longer than {MAX_SECRET_LENGTH} characters")
    if not _visible_ascii(secret):
        raise ValueError("secret must be visible ASCII characters (no spaces or controls)")
    return value


class Webhook(BaseModel):
    """Where a task's state changes are POSTed, GoAPI style."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    endpoint: Annotated[str, AfterValidator(check_endpoint)]
    secret: Annotated[
        SecretStr | None, BeforeValidator(_empty_is_absent), AfterValidator(check_secret)
    ] = None
    """Sent as the `x-webhook-secret` header; stored apart from the task, never shown."""
    progress: StrictBool = False
    """Also POST when the task starts running, not only when it ends."""

    @property
    def events(self) -> str:
        """What the task record's `webhook` field says: '1' terminal states, or 'progress'."""
        return "progress" if self.progress else "1"


def keep_body_format(
    redis: Redis, keys: Keys, owner: str, task_id: str, body_format: str, ttl: int
) -> None:
    """Say that the webhook of a task about to be submitted is POSTed `body_format`; kept
    `ttl` seconds (the task's lifetime). A retry under the same id (a modal confirmed
    twice, an Idempotency-Key sent again, even with another API's body) never changes the
    format the first submission set."""
    redis.set(keys.hook_format(owner, task_id), body_format, ex=ttl, nx=True)


SECRET_KEY = re.compile(r"secret|passw(?:or)?d|token|credential|api[-_]?key|authorization", re.I)
"""Keys whose values are hidden wherever a message is kept: any key containing one of these."""
_SECRET_TEXT = re.compile(
    rb"secret|passw(?:or)?d|token|credential|api[-_]?key|authorization|\\u", re.I
)
"""In text: where a secret could begin (a `\\u` escape can spell any key)."""
_REDACT_DEPTH = 64
"""Deeper JSON is treated as text (cut), so hiding never recurses without bound."""


class _TooDeep(Exception):
    """JSON deeper than `_REDACT_DEPTH`: kept as cut text instead."""


def redact(raw: bytes) -> bytes:
    """A message as it may be kept (a dead letter), with every secret in it hidden.

    JSON: the value of each key that names a secret (`SECRET_KEY`: `secret`, `password`,
    `token`, `credentials`, `api_key`, `authorization`, any case) becomes `**********`, at
    any depth, in arrays, and in strings that hold JSON text themselves; the message is then
    kept as JSON again (which also drops the first of two duplicate keys). Anything else is
    kept only up to the first place a secret could begin (such a word, or a `\\u` escape),
    NUL bytes ignored so UTF-16 and UTF-32 text is read too. Never raises.
    """
    try:
        if _SECRET_TEXT.search(raw.replace(b"\x00", b"")) is None:
            return raw  # nothing secret-looking at all: kept as it came
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _cut(raw)
        return json.dumps(_hide(data, 0)).encode()
    except Exception:  # whatever it was, keep nothing that could be secret
        return _cut(raw)


def _cut(raw: bytes) -> bytes:
    flat = raw.replace(b"\x00", b"")
    found = _SECRET_TEXT.search(flat)
    return flat if found is None else flat[: found.start()] + HIDDEN.encode()


def _hide(value: Any, depth: int) -> Any:
    if depth > _REDACT_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {
            k: HIDDEN if SECRET_KEY.search(str(k)) else _hide(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hide(v, depth + 1) for v in value]
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "[", '"'):
        encoded = value.encode("utf-8", "surrogatepass")
        if _SECRET_TEXT.search(encoded) is None:
            return value
        try:
            inner = json.loads(value)
        except (ValueError, RecursionError):
            return _cut(encoded).decode("utf-8", "replace")
        return json.dumps(_hide(inner, depth + 1))
    return value


@dataclass(frozen=True)
class Delivery:
    """One scheduled POST: a task's event (`running`, or its terminal status)."""

    owner: str
    task_id: str
    event: str

    @property
    def member(self) -> str:
        """Its member in the owner's outbox."""
        return f"{self.task_id}/{self.event}"


@dataclass(frozen=True)
class OutboxClaim:
    now_us: int
    """The Redis clock at the claim."""
    next_due_us: int | None
    """When the earliest delivery left comes due (None: there is none)."""
    deliveries: list[Delivery]


class Outbox:
    """The owners' outboxes: claimed for a while by deliverers, settled by OUTBOX_RECORD."""

    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis, self.keys, self.scripts = redis, keys, scripts
        self._turn = 0

    def owners(self) -> list[str]:
        """Owners that ever submitted a task with a webhook."""
        return sorted(text(o) for o in self.redis.smembers(self.keys.webhook_owners))

    def claim(
        self, limit: int, hold_us: int, room: Callable[[str], int] | None = None
    ) -> OutboxClaim:
        """Take up to `limit` due deliveries for `hold_us`, owners taking turns, and at most
        `room(o)` of owner `o` (None: no bound of its own). An owner without room is passed
        over: its next delivery waits for one of its own to end."""
        owners = [o for o in self.owners() if room is None or room(o) > 0]
        if not owners:
            return OutboxClaim(0, None, [])
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        for owner in owners:
            pipe.zrange(self.keys.outbox(owner), 0, 0, withscores=True)
        (seconds, micros), *heads = pipe.execute()
        now = int(seconds) * 1_000_000 + int(micros)
        scores = {o: int(h[0][1]) for o, h in zip(owners, heads, strict=True) if h}
        due = [o for o in owners if o in scores and scores[o] <= now]
        later = [s for s in scores.values() if s > now]
        next_due = min(later) if later else None
        self._turn += 1
        if due:
            start = self._turn % len(due)
            due = due[start:] + due[:start]
        taken: list[Delivery] = []
        for owner in due:
            if len(taken) >= limit:
                next_due = now  # more are due: come back at once
                break
            most = limit - len(taken)
            if room is not None:
                most = min(most, room(owner))
            keys = [self.keys.outbox(owner)]
            raw = self.scripts.claim_due(keys=keys, args=[most, hold_us])
            _, head, *members = (text(x) for x in raw)
            for m in members:
                task_id, event = m.rsplit("/", 1)
                taken.append(Delivery(owner, task_id, event))
            rest = int(float(head))
            if rest >= 0 and len(members) < most:
                next_due = rest if next_due is None else min(next_due, rest)
        return OutboxClaim(now, next_due, taken)

    def record(self, d: Delivery, error: str, attempts: int, backoff_us: int) -> str:
        """One POST's result: '' delivered, else its error (see OUTBOX_RECORD)."""
        keys = [self.keys.outbox(d.owner), self.keys.task(d.owner, d.task_id)]
        args: list[str | int] = [d.member, d.event, error, attempts, backoff_us]
        return text(self.scripts.outbox_record(keys=keys, args=args))

    def drop(self, d: Delivery) -> None:
        """Forget a delivery that cannot be made (its task has no endpoint any more)."""
        self.redis.zrem(self.keys.outbox(d.owner), d.member)

    def secret(self, owner: str, task_id: str) -> SecretStr | None:
        raw = self.redis.get(self.keys.webhook_secret(owner, task_id))
        return SecretStr(text(raw)) if raw else None

    def pending(self) -> int:
        """Deliveries not yet made, in every outbox."""
        pipe = self.redis.pipeline(transaction=False)
        for owner in self.owners():
            pipe.zcard(self.keys.outbox(owner))
        return sum(int(n) for n in pipe.execute())
