"""Renewal dates whose UTC conversion leaves datetime's range: refused like any other bad date.

An offset can carry a date at the very edge of datetime's range (year 1 or 9999) past it
when converted to UTC; that is a bad renewal date, reported as one (a ValidationError from
the models, `invalid_account` / `invalid_accounts_file` from the CLI), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from router.accounts import AccountChange, AccountSpec
from router.cli import main
from router.core import Router

PAST_DATETIME_RANGE = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01"]


def byoa(env: dict[str, str], *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output, result.exception


@pytest.mark.parametrize("date", PAST_DATETIME_RANGE)
def test_the_models_refuse_a_renewal_date_whose_utc_time_no_datetime_holds(date: str) -> None:
    with pytest.raises(ValidationError, match="renewal date must fall in the years"):
        AccountSpec(id="a-pro", owner="alice", plan="pro", renews_at=date)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="renewal date must fall in the years"):
        AccountChange(renews_at=date)  # type: ignore[arg-type]


@pytest.mark.parametrize("date", PAST_DATETIME_RANGE)
def test_the_cli_refuses_such_a_date_cleanly_on_add_and_set(
    router: Router, env: dict[str, str], date: str
) -> None:
    add = ("accounts", "add", "a-new", "--owner", "alice", "--plan", "pro", "--renews-at", date)
    code, out, exc = byoa(env, *add)
    assert (code, isinstance(exc, SystemExit)) == (1, True), (out, exc)
    assert "invalid_account" in out and "renews_at" in out
    assert router.pool.get("a-new") is None

    assert byoa(env, "accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")[0] == 0
    before = router.pool.get("a-pro")
    code, out, exc = byoa(env, "accounts", "set", "a-pro", "--renews-at", date)
    assert (code, isinstance(exc, SystemExit)) == (1, True), (out, exc)
    assert "invalid_account" in out and "renews_at" in out
    assert router.pool.get("a-pro") == before


@pytest.mark.parametrize("date", PAST_DATETIME_RANGE)
def test_an_accounts_file_with_such_a_date_is_refused_whole(
    router: Router, env: dict[str, str], tmp_path: Path, date: str
) -> None:
    path = tmp_path / "accounts.json"
    accounts = [
        {"id": "a-ok", "owner": "alice", "plan": "pro"},
        {"id": "a-bad", "owner": "alice", "plan": "pro", "renews_at": date},
    ]
    path.write_text(json.dumps(accounts), encoding="utf-8")
    code, out, exc = byoa(env, "accounts", "load", str(path))
    assert (code, isinstance(exc, SystemExit)) == (1, True), (out, exc)
    assert "invalid_accounts_file" in out and "a-bad" in out and "renews_at" in out
    assert router.pool.accounts() == []
