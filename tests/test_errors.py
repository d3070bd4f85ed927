"""Operator errors are typed: one class per failure, raised where it happens, its stable
code a class attribute from ErrorCode, and still an AccountError / TaskRejected /
ByoaError for callers that catch those (codes and messages as before)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from router import errors
from router.accounts import AccountSpec, read_accounts_file
from router.apikeys import ApiKeys
from router.client import Client
from router.core import Router, connect
from router.errors import (
    AccountBusy,
    AccountError,
    AccountExists,
    BadRedisUrl,
    ByoaError,
    DuplicateId,
    InvalidAccount,
    InvalidAccountsFile,
    InvalidCredentials,
    InvalidKey,
    PromptTooLong,
    TaskRejected,
    UnknownAccount,
    UnknownKey,
    UnknownTaskType,
    WaitTimedOut,
)
from router.models import ErrorCode, Plan
from router.settings import Settings


def test_every_error_class_names_its_code_from_error_code() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, ByoaError) and c.__module__ == errors.__name__
    ]
    assert len(classes) > 20
    for c in classes:
        assert isinstance(c.__dict__.get("code", c.code), ErrorCode), c
    leaves = {c.code for c in classes if not c.__subclasses__()}
    assert {"account_not_found", "account_exists", "account_busy", "invalid_accounts_file"} <= {
        str(code) for code in leaves
    }


def test_pool_failures_raise_their_own_class(
    router: Router, add_account: Callable[..., None]
) -> None:
    add_account("a1", "alice", "standard")
    with pytest.raises(AccountExists) as exists:
        router.pool.add(AccountSpec(id="a1", owner="bob", plan="pro"))
    assert (exists.value.code, exists.value.message) == ("account_exists", "account a1 exists")
    with pytest.raises(UnknownAccount) as unknown:
        router.pool.update("nope", fast_hours=1)
    assert (unknown.value.code, unknown.value.message) == ("account_not_found", "no account nope")
    with pytest.raises(InvalidAccount) as invalid:
        router.pool.update("a1", plan=Plan.BASIC, relax_limit=2)
    assert invalid.value.code == "invalid_account"
    with pytest.raises(InvalidCredentials) as creds:
        router.pool.update("a1", credentials=SecretStr("bad\x00token"))
    assert creds.value.code == "invalid_credentials" and "bad" not in creds.value.message
    Client(router.settings, router.redis).submit("alice", "a cat", mode="fast")
    with pytest.raises(AccountBusy) as busy:
        router.pool.remove("a1")
    assert busy.value.code == "account_busy"
    with pytest.raises(AccountError) as base:  # callers catching the base class still do
        router.pool.remove("a1")
    assert isinstance(base.value, AccountBusy) and str(base.value).startswith("account_busy: ")


def test_a_bad_accounts_file_raises_invalid_accounts_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[accounts]]\nid = "x"\n')
    with pytest.raises(InvalidAccountsFile) as caught:
        read_accounts_file(bad)
    assert caught.value.code == "invalid_accounts_file" and "account 1 (x)" in caught.value.message
    with pytest.raises(InvalidAccountsFile):
        read_accounts_file(tmp_path / "missing.toml")


def test_key_task_and_redis_failures_raise_their_own_class(router: Router) -> None:
    keys = ApiKeys(router.redis, router.scripts)
    with pytest.raises(InvalidKey) as invalid:
        keys.create("alice", rate=-1)
    assert invalid.value.code == "invalid_key"
    with pytest.raises(UnknownKey) as unknown:
        keys.revoke("0123456789ab")
    assert unknown.value.code == "key_not_found"
    client = Client(router.settings, router.redis)
    with pytest.raises(PromptTooLong) as long:
        client.submit("alice", "x" * 501)
    assert isinstance(long.value, TaskRejected) and long.value.code == "prompt_too_long"
    with pytest.raises(UnknownTaskType):
        client.submit("alice", "x", task_type="paint")
    client.submit("alice", "x", id="taken")
    with pytest.raises(DuplicateId) as dup:
        client.submit("bob", "x", id="taken")
    assert dup.value.message == "task id taken belongs to another owner"
    with pytest.raises(BadRedisUrl) as url:
        connect(Settings(redis_url=SecretStr("redis://:CANARY@127.0.0.1:notaport/0")))
    assert url.value.code == "bad_redis_url" and "CANARY" not in str(url.value)


def test_a_wait_that_times_out_is_wait_timed_out_and_still_a_timeout_error(
    router: Router,
) -> None:
    client = Client(router.settings, router.redis)
    task = client.submit("alice", "x", id="waits")  # no account: it fails at once
    assert client.wait(task.id, 1).status == "failed"
    with pytest.raises(WaitTimedOut) as caught:
        client.wait("never-submitted", 0.05)
    assert isinstance(caught.value, TimeoutError) and caught.value.code == "wait_timeout"
    assert caught.value.message == "task never-submitted is still not yet routed"
