"""API keys for `byoa api`: one owner per key, only a hash of it kept in Redis.

A key reads `byoa_<id>_<secret>`: the id (12 hex digits) names the key's record, so a
presented key is found in one read and checked by comparing SHA-256 digests in constant
time. The key itself is shown once, when it is made, and never stored or logged; the
record holds its owner, a name, its digest, and an optional rate limit (requests a second,
shared by every `byoa api` replica through the RATE_LIMIT script).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, SecretStr
from redis import Redis

from router.errors import InvalidKey, KeyIdCollision, UnknownKey
from router.keys import Keys
from router.models import ID_RE
from router.scripts import Scripts, text, text_hash

KEY_PREFIX = "byoa_"
ID_HEX = 12
MAX_KEY_LENGTH = 200
"""A presented key longer than this is refused before it is hashed."""
MAX_NAME_LENGTH = 100
MIN_RATE, MAX_RATE = 0.001, 100_000.0
"""A key's rate limit, requests a second: the bucket's expiry (burst / rate) stays an
integer count of milliseconds that Redis takes."""
"""Requests a second one key may be allowed: more is a typo."""
_KEY = re.compile(rf"{KEY_PREFIX}([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{20,}})")
_KEY_ID = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")


class AuthFailure(StrEnum):
    """Why a presented key was refused (a metric label; never the key)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"


class ApiKey(BaseModel):
    """A key's record as it may be shown: never the key, never its digest."""

    id: str
    owner: str
    name: str
    created_at: datetime
    rate: float | None
    """Requests a second it may make (None: no limit)."""
    revoked_at: datetime | None = None

    @property
    def burst(self) -> int:
        """Requests it may make at once: one second's worth, at least one."""
        return max(1, math.ceil(self.rate or 1))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _time(us: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(us) / 1e6, tz=UTC) if us else None


class ApiKeys:
    """Make, list, revoke and check API keys."""

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys: Keys = scripts.keys

    def create(
        self, owner: str, name: str = "", rate: float | None = None
    ) -> tuple[ApiKey, SecretStr]:
        """A new key for `owner`: its record and the key itself (shown once)."""
        if not ID_RE.fullmatch(owner):
            raise InvalidKey("owner must be 1-64 letters, digits, '_' or '-'")
        if len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidKey(f"name must be printable and at most {MAX_NAME_LENGTH} characters")
        if rate is not None and not (MIN_RATE <= rate <= MAX_RATE and math.isfinite(rate)):
            raise InvalidKey(f"rate must be {MIN_RATE:g} to {MAX_RATE:g}")
        key_id = secrets.token_hex(ID_HEX // 2)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now_us = int(datetime.now(UTC).timestamp() * 1e6)
        record = {
            "id": key_id,
            "owner": owner,
            "name": name,
            "hash": digest(key),
            "created_at": str(now_us),
            "rate": "" if rate is None else repr(float(rate)),
        }
        if not self.redis.sadd(self.keys.api_keys, key_id):
            # 48 random bits met an existing id: SADD is atomic, so no key is overwritten.
            raise KeyIdCollision("key id collision; try again")
        fields = [part for pair in record.items() for part in pair]
        self.redis.hset(self.keys.api_key(key_id), items=fields)
        return self._view(record), SecretStr(key)

    def list(self, owner: str | None = None) -> list[ApiKey]:
        """Every key (of `owner`, if given), oldest first."""
        ids = sorted(text(i) for i in self.redis.smembers(self.keys.api_keys))
        pipe = self.redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self.keys.api_key(key_id))
        views = [self._view(text_hash(h)) for h in pipe.execute() if h]
        return sorted(
            (v for v in views if owner is None or v.owner == owner),
            key=lambda v: (v.created_at, v.id),
        )

    def revoke(self, key_id: str) -> ApiKey:
        """Refuse the key from now on (its record stays, marked revoked)."""
        if not _KEY_ID.fullmatch(key_id) or not self.redis.exists(self.keys.api_key(key_id)):
            raise UnknownKey(f"no API key {key_id[:40]!r}")
        now_us = int(datetime.now(UTC).timestamp() * 1e6)
        self.redis.hsetnx(self.keys.api_key(key_id), "revoked_at", str(now_us))
        self.redis.delete(self.keys.api_key_bucket(key_id))
        return self._view(text_hash(self.redis.hgetall(self.keys.api_key(key_id))))

    def authenticate(self, presented: str | None) -> ApiKey | AuthFailure:
        """The record of a valid, unrevoked key, or why the key is refused."""
        return self.authenticate_many([presented])[0]

    def authenticate_many(
        self, presented: Sequence[str | None]
    ) -> builtins.list[ApiKey | AuthFailure]:
        """`authenticate` for each key, every record read in one round trip."""
        ids = [self._key_id(p) for p in presented]
        wanted = sorted({i for i in ids if i is not None})
        records: dict[str, dict[str, str]] = {}
        if wanted:
            pipe = self.redis.pipeline(transaction=False)
            for key_id in wanted:
                pipe.hgetall(self.keys.api_key(key_id))
            records = {k: text_hash(r) for k, r in zip(wanted, pipe.execute(), strict=True)}
        return [
            self._verdict(p, records[i]) if p and i is not None else _malformed(p)
            for p, i in zip(presented, ids, strict=True)
        ]

    @staticmethod
    def _key_id(presented: str | None) -> str | None:
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        m = _KEY.fullmatch(presented)
        return m.group(1) if m else None

    def _verdict(self, presented: str, raw: dict[str, str]) -> ApiKey | AuthFailure:
        if not raw or not hmac.compare_digest(raw.get("hash", ""), digest(presented)):
            return AuthFailure.UNKNOWN
        if raw.get("revoked_at"):
            return AuthFailure.REVOKED
        return self._view(raw)

    def allow(self, key: ApiKey) -> float:
        """Take one request from the key's rate limit: 0 if allowed, else the seconds until
        one would be."""
        return self.allow_many([key])[0]

    def allow_many(self, found: Sequence[ApiKey | AuthFailure]) -> builtins.list[float]:
        """`allow` for each valid key (0 for a refused one), in one round trip."""
        limited = [i for i, k in enumerate(found) if isinstance(k, ApiKey) and k.rate is not None]
        waits = [0.0] * len(found)
        if not limited:
            return waits
        pipe = self.redis.pipeline(transaction=False)
        for i in limited:
            key = found[i]
            assert isinstance(key, ApiKey) and key.rate is not None
            bucket = self.keys.api_key_bucket(key.id)
            self.scripts.rate_limit(keys=[bucket], args=[key.rate, key.burst], client=pipe)
        for i, (allowed, wait_ms) in zip(limited, pipe.execute(), strict=True):
            waits[i] = 0.0 if int(allowed) else max(int(wait_ms), 1) / 1000
        return waits

    @staticmethod
    def _view(raw: dict[str, str]) -> ApiKey:
        created = _time(raw.get("created_at")) or datetime.fromtimestamp(0, tz=UTC)
        return ApiKey(
            id=raw["id"],
            owner=raw["owner"],
            name=raw.get("name", ""),
            created_at=created,
            rate=float(raw["rate"]) if raw.get("rate") else None,
            revoked_at=_time(raw.get("revoked_at")),
        )


def _malformed(presented: str | None) -> AuthFailure:
    return AuthFailure.MISSING if not presented else AuthFailure.MALFORMED
