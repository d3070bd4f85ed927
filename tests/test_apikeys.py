"""API keys: made, listed and revoked through `byoa keys`; only a hash kept in Redis; the
per-key rate limit shared through Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from router.apikeys import ApiKey, ApiKeys, AuthFailure
from router.cli import main
from router.core import Router
from router.scripts import text


@pytest.fixture
def byoa(env: dict[str, str], router: Router) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    yield run


@pytest.fixture
def api_keys(router: Router) -> ApiKeys:
    return ApiKeys(router.redis, router.scripts)


def every_value(router: Router) -> list[bytes]:
    """Every string, hash field and value, and set member under the test's prefix."""
    out: list[bytes] = []
    for key in router.redis.scan_iter(f"{router.keys.prefix}:*"):
        kind = text(router.redis.type(key))
        if kind == "string":
            out.append(router.redis.get(key) or b"")
        elif kind == "hash":
            for k, v in router.redis.hgetall(key).items():
                out += [k, v]
        elif kind == "set":
            out += list(router.redis.smembers(key))
    return out


def test_create_prints_the_key_once_and_redis_keeps_only_its_hash(
    byoa: Callable[..., Result], router: Router, api_keys: ApiKeys
) -> None:
    made = json.loads(byoa("keys", "create", "--owner", "alice", "--name", "ci", "--json").output)
    assert {"key", "id", "owner", "name", "created_at", "rate"} <= made.keys()
    key: str = made["key"]
    assert key.startswith(f"byoa_{made['id']}_") and made["owner"] == "alice"
    stored = every_value(router)
    assert not any(key.encode() in v for v in stored)
    secret = key.split("_", 2)[2]
    assert not any(secret.encode() in v for v in stored)
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    found = api_keys.authenticate(key)
    assert isinstance(found, ApiKey) and (found.owner, found.name) == ("alice", "ci")

    plain = byoa("keys", "create", "--owner", "bob").stdout.strip()
    assert plain.startswith("byoa_") and isinstance(api_keys.authenticate(plain), ApiKey)


def test_list_never_shows_keys_or_hashes(byoa: Callable[..., Result]) -> None:
    a = json.loads(byoa("keys", "create", "--owner", "alice", "--json").output)
    b = json.loads(byoa("keys", "create", "--owner", "bob", "--rate", "5", "--json").output)
    for args in (("keys", "list"), ("keys", "list", "--json")):
        out = byoa(*args).output
        for made in (a, b):
            assert made["id"] in out
            assert made["key"] not in out and made["key"].split("_", 2)[2] not in out
            assert hashlib.sha256(made["key"].encode()).hexdigest() not in out
    listed = json.loads(byoa("keys", "list", "--owner", "bob", "--json").output)
    assert [(k["id"], k["rate"]) for k in listed] == [(b["id"], 5.0)]
    assert "hash" not in listed[0] and "key" not in listed[0]


def test_revoked_unknown_and_malformed_keys_are_refused(
    byoa: Callable[..., Result], api_keys: ApiKeys
) -> None:
    made = json.loads(byoa("keys", "create", "--owner", "alice", "--json").output)
    key = made["key"]
    assert isinstance(api_keys.authenticate(key), ApiKey)
    byoa("keys", "revoke", made["id"])
    assert api_keys.authenticate(key) is AuthFailure.REVOKED
    listed = json.loads(byoa("keys", "list", "--json").output)
    assert listed[0]["revoked_at"] is not None
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    assert api_keys.authenticate(forged) is AuthFailure.UNKNOWN
    assert api_keys.authenticate(None) is AuthFailure.MISSING
    for bad in ("", "byoa_", "Bearer x", key + "\n", "x" * 10_000, "byoa_zzzzzzzzzzzz_" + "a" * 40):
        assert api_keys.authenticate(bad) in (AuthFailure.MISSING, AuthFailure.MALFORMED)
    result = byoa("keys", "revoke", "000000000000", code=1)
    assert "key_not_found" in result.output
    byoa("keys", "create", "--owner", "not an id", code=1)
    byoa("keys", "create", "--owner", "alice", "--rate", "0", code=1)


def test_rate_limit_allows_a_burst_then_refuses_until_tokens_return(api_keys: ApiKeys) -> None:
    record, _ = api_keys.create("alice", rate=3)
    assert record.burst == 3
    waits = [api_keys.allow(record) for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    refused = api_keys.allow(record)
    assert 0 < refused <= 1 / 3 + 0.01
    unlimited, _ = api_keys.create("alice")
    assert all(api_keys.allow(unlimited) == 0.0 for _ in range(50))
    # Another key of the same owner has its own bucket.
    other, _ = api_keys.create("alice", rate=1)
    assert api_keys.allow(other) == 0.0
