"""Accounts from a file and from operators: what a re-sync may change, and what is refused.

A file is read again and again (a Kubernetes init container loads it at every pod start),
so reading it must never renew an account, restore hours already spent, undo an automatic
flip, or put an account a driver took out of rotation back in. What it declares is bounded
and checked at the edge, before anything reaches Redis.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from router.accounts import MS_PER_HOUR, AccountView
from router.cli import main
from router.client import Client
from router.core import Router
from router.errors import AccountError
from router.reaper import Reaper
from router.scripts import text
from tests.conftest import wait_for

CANARY = "sk-CANARY-41d2e8"
MONTH = timedelta(days=30)

Byoa = Callable[..., Result]


@pytest.fixture
def byoa(env: dict[str, str], router: Router) -> Iterator[Byoa]:
    """`byoa ...` through click; asserts the exit code; no output ever holds the canary."""
    runner = CliRunner()
    outputs: list[str] = []

    def run(*args: str, code: int = 0, **extra_env: str) -> Result:
        result = runner.invoke(main, list(args), env={**env, **extra_env})
        outputs.append(result.output + (result.stderr if result.stderr_bytes else ""))
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    yield run
    assert not any(CANARY in o for o in outputs)


@pytest.fixture
def accounts_file(tmp_path: Path) -> Callable[..., Path]:
    """Write `[[accounts]]` tables (each a dict of TOML literals) to one file."""
    path = tmp_path / "accounts.toml"

    def write(*tables: dict[str, str]) -> Path:
        body = "".join(
            "[[accounts]]\n" + "".join(f"{k} = {v}\n" for k, v in t.items()) + "\n" for t in tables
        )
        path.write_text(body, encoding="utf-8")
        return path

    return write


def toml_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def toml_string(value: str) -> str:
    """A TOML basic string holding `value` exactly (anything but printable ASCII escaped)."""
    body = "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\u{ord(c):04x}" for c in value)
    return f'"{body}"'


def view(router: Router, account_id: str) -> AccountView:
    v = router.pool.get(account_id)
    assert v is not None
    return v


def run_fast_task(client: Client, router: Router, owner: str, gpu_ms: int) -> str:
    """A fast task that runs on the owner's account and uses `gpu_ms` of fast time."""
    task = client.submit(owner, "a fox", mode="fast")
    assert task.account_id is not None and task.effective_mode == "fast"
    assert router.tasks.start(owner, task.id, 1)[0]
    status, outcome = router.tasks.settle(owner, task.id, 1, "completed", gpu_ms=gpu_ms)
    router.apply(outcome)
    assert status == "completed"
    return task.account_id


# --- defect 3: a renewal date is the anchor of a monthly cycle -----------------------------


def test_first_load_honours_declared_hours_and_anchors_a_past_renewal_date(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    f = accounts_file(
        {
            "id": '"a-std"',
            "owner": '"alice"',
            "plan": '"standard"',
            "fast_hours": "2",
            "renews_at": toml_time(anchor),
        }
    )
    byoa("accounts", "load", str(f))
    a = view(router, "a-std")
    assert a.fast_hours_remaining == 2  # not the plan's 15: reading a file renews nothing
    assert a.renews_at_us == us(anchor + 2 * MONTH)  # the cycle's next date after now


def test_reloading_the_file_after_the_hours_ran_out_restores_nothing(
    byoa: Byoa, router: Router, client: Client, accounts_file: Callable[..., Path]
) -> None:
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    f = accounts_file(
        {
            "id": '"a-std"',
            "owner": '"alice"',
            "plan": '"standard"',
            "setting": '"fast"',
            "enabled": "true",
            "fast_hours": "0.01",
            "renews_at": toml_time(anchor),
        }
    )
    byoa("accounts", "load", str(f))
    run_fast_task(client, router, "alice", gpu_ms=60_000)  # 36 s of fast time left: spent
    flipped = view(router, "a-std")
    assert (flipped.setting, flipped.flip_reason) == ("relax", "fast_hours_exhausted")
    assert flipped.renews_at_us == us(anchor + MONTH)
    for _ in range(2):
        byoa("accounts", "load", str(f))
        again = view(router, "a-std")
        assert (again.setting, again.flip_reason) == ("relax", "fast_hours_exhausted")
        assert again.fast_hours_remaining == 0 and again.auto_flips == 1
        assert again.renews_at_us == us(anchor + MONTH)
    late = client.submit("alice", "another fox", mode="fast")
    assert (late.effective_mode, late.fallback_reason) == ("relax", "fast_hours_exhausted")


def test_a_changed_renewal_date_moves_the_cycle_without_renewing(
    byoa: Byoa, router: Router, client: Client, accounts_file: Callable[..., Path]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    table = {"id": '"a-pro"', "owner": '"alice"', "plan": '"pro"', "fast_hours": "0.01"}
    byoa("accounts", "load", str(accounts_file({**table, "renews_at": toml_time(now)})))
    run_fast_task(client, router, "alice", gpu_ms=60_000)
    moved = now - timedelta(days=45)
    byoa("accounts", "load", str(accounts_file({**table, "renews_at": toml_time(moved)})))
    a = view(router, "a-pro")
    assert a.renews_at_us == us(moved + 2 * MONTH)
    assert (a.setting, a.fast_hours_remaining) == ("relax", 0)


def test_a_renewal_that_came_is_not_repeated_by_reloading(
    byoa: Byoa, router: Router, client: Client, accounts_file: Callable[..., Path]
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    f = accounts_file(
        {
            "id": '"a-std"',
            "owner": '"alice"',
            "plan": '"standard"',
            "fast_hours": "0.01",
            "renews_at": f'"{soon.isoformat()}"',
        }
    )
    byoa("accounts", "load", str(f))
    assert view(router, "a-std").renews_at_us == us(soon)
    reaper = Reaper(router)
    reaper.grace = False
    wait_for(lambda: reaper.wake_accounts(), timeout=10, what="the renewal date")
    renewed = view(router, "a-std")
    assert renewed.fast_hours_remaining == 15 and renewed.renews_at_us == us(soon + MONTH)
    run_fast_task(client, router, "alice", gpu_ms=3_600_000)
    byoa("accounts", "load", str(f))
    assert view(router, "a-std").fast_hours_remaining == 14  # the hour spent stays spent


def test_an_operators_renewal_date_in_the_past_anchors_a_cycle_too(
    byoa: Byoa, router: Router
) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro", "--fast-hours", "1")
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    byoa("accounts", "set", "a-pro", "--renews-at", anchor.strftime("%Y-%m-%dT%H:%M:%S"))
    a = view(router, "a-pro")
    assert a.fast_hours_remaining == 1 and a.renews_at_us == us(anchor + MONTH)


# --- defect 4: a plan change is applied -----------------------------------------------------


def test_a_plan_change_in_the_file_takes_relax_work_off_the_account(
    byoa: Byoa, router: Router, client: Client, accounts_file: Callable[..., Path]
) -> None:
    std = {"id": '"a-std"', "owner": '"alice"', "plan": '"standard"', "relax_limit": "1"}
    byoa("accounts", "load", str(accounts_file(std)))
    parent = client.submit("alice", "a fox", mode="relax")
    assert router.tasks.start("alice", parent.id, 1)[0]
    router.tasks.settle("alice", parent.id, 1, "completed", gpu_ms=1000)
    running = client.submit("alice", "a running fox", mode="relax")
    assert running.account_id == "a-std"
    assert router.tasks.start("alice", running.id, 1)[0]
    child = client.submit("alice", task_type="upscale", parent_id=parent.id)
    waiting = client.submit("alice", "a waiting fox", mode="relax")
    assert child.status == "queued" and waiting.status == "queued"  # the relax slot is taken

    basic = {"id": '"a-std"', "owner": '"alice"', "plan": '"basic"'}
    byoa("accounts", "load", str(accounts_file(basic)))
    a = view(router, "a-std")
    assert (a.plan, a.relax_limit, a.fast_limit) == ("basic", 0, 3)
    plan_ms = router.redis.hget(router.keys.account("alice", "a-std"), "plan_fast_ms")
    assert plan_ms is not None and int(plan_ms) == round(3.3 * MS_PER_HOUR)
    gone_child, gone_waiting = client.get(child.id), client.get(waiting.id)
    assert gone_child is not None and gone_child.error is not None
    assert gone_child.error.code == "parent_account_unavailable"
    assert gone_waiting is not None and gone_waiting.error is not None
    assert gone_waiting.error.code == "no_relax_account"
    late = client.submit("alice", "a late fox", mode="relax")
    assert late.account_id is None and late.error is not None
    assert late.error.code == "no_relax_account"

    status, _ = router.tasks.settle("alice", running.id, 1, "completed", gpu_ms=1000)
    assert status == "completed"  # the job already running ends normally
    assert view(router, "a-std").inflight == {"fast": 0, "relax": 0}

    refused = accounts_file({**basic, "relax_limit": "2"})
    assert "invalid_account" in byoa("accounts", "load", str(refused), code=1).output


def test_accounts_set_plan(byoa: Byoa, router: Router) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    byoa("accounts", "set", "a-pro", "--plan", "standard")
    a = view(router, "a-pro")
    assert (a.plan, a.fast_limit, a.relax_limit) == ("standard", 3, 3)
    out = byoa("accounts", "set", "a-pro", "--plan", "basic", "--relax-limit", "1", code=1)
    assert "invalid_account" in out.output
    byoa("accounts", "set", "a-pro", "--plan", "basic", "--fast-limit", "2")
    a = view(router, "a-pro")
    assert (a.plan, a.fast_limit, a.relax_limit) == ("basic", 2, 0)
    byoa("accounts", "set", "a-pro", "--plan", "mega")
    assert view(router, "a-pro").relax_limit == 3


# --- defect 9: only an operator puts an account back into rotation ----------------------------


def test_reloading_never_puts_an_account_a_driver_took_out_back_in(
    byoa: Byoa, router: Router, client: Client, accounts_file: Callable[..., Path]
) -> None:
    table = {"id": '"a-pro"', "owner": '"alice"', "plan": '"pro"', "enabled": "true"}
    f = accounts_file(table)
    byoa("accounts", "load", str(f))
    task = client.submit("alice", "a fox", mode="fast")
    assert router.tasks.start("alice", task.id, 1)[0]
    router.tasks.settle("alice", task.id, 1, "attention", error=("account_attention", "captcha"))
    byoa("accounts", "load", str(f))
    out = view(router, "a-pro")
    assert not out.enabled and out.attention_reason == "captcha"
    byoa("accounts", "load", str(accounts_file({**table, "enabled": "false"})))
    byoa("accounts", "load", str(accounts_file(table)))  # the declaration changed: still not
    out = view(router, "a-pro")
    assert not out.enabled and out.attention_reason == "captcha"
    byoa("accounts", "reset", "a-pro")
    back = view(router, "a-pro")
    assert back.enabled and back.attention_reason is None


def test_reloading_keeps_an_operators_disable_and_setting(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    table = {
        "id": '"a-pro"',
        "owner": '"alice"',
        "plan": '"pro"',
        "enabled": "true",
        "setting": '"fast"',
    }
    f = accounts_file(table)
    byoa("accounts", "load", str(f))
    byoa("accounts", "set", "a-pro", "--disable", "--setting", "relax")
    byoa("accounts", "load", str(f))
    a = view(router, "a-pro")
    assert (a.enabled, a.setting) == (False, "relax")
    byoa("accounts", "load", str(accounts_file({**table, "enabled": "false"})))
    byoa("accounts", "load", str(accounts_file(table)))  # an edited file applies
    assert view(router, "a-pro").enabled


# --- defect 13: a renewal date is UTC unless it carries an offset ----------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("2030-01-01T00:00:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ('"2030-01-01T00:00:00"', datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00+02:00", datetime(2029, 12, 31, 22, tzinfo=UTC)),
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_renewal_dates_are_utc_whatever_the_hosts_timezone(
    env: dict[str, str],
    router: Router,
    accounts_file: Callable[..., Path],
    literal: str,
    expected: datetime,
) -> None:
    f = accounts_file({"id": '"a-pro"', "owner": '"alice"', "plan": '"pro"', "renews_at": literal})
    for tz in ("<+14>-14", "<-11>11"):  # far east and far west of UTC, no tz database needed
        loaded = subprocess.run(
            [sys.executable, "-m", "router", "accounts", "load", str(f)],
            env={**env, "TZ": tz},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr
        assert view(router, "a-pro").renews_at_us == us(expected), tz
        router.apply(router.pool.remove("a-pro"))


def test_the_cli_reads_a_renewal_offset_too(byoa: Byoa, router: Router) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    byoa("accounts", "set", "a-pro", "--renews-at", "2030-01-01T00:00:00+02:00")
    assert view(router, "a-pro").renews_at_us == us(datetime(2029, 12, 31, 22, tzinfo=UTC))
    byoa("accounts", "set", "a-pro", "--renews-at", "2030-01-01T00:00:00")
    assert view(router, "a-pro").renews_at_us == us(datetime(2030, 1, 1, tzinfo=UTC))
    assert (
        "invalid_account" in byoa("accounts", "set", "a-pro", "--renews-at", "soon", code=1).output
    )


# --- defect 14: every number bounded at the edge ----------------------------------------------


@pytest.mark.parametrize(
    ("key", "literal"),
    [
        ("fast_hours", "1e13"),
        ("fast_hours", "10001"),
        ("fast_hours", "inf"),
        ("fast_hours", "nan"),
        ("fast_hours", "-1"),
        ("fast_limit", "1000000"),
        ("relax_limit", "9223372036854775807"),
        ("min_gap_seconds", "1e20"),
        ("min_gap_seconds", "inf"),
        ("daily_cap", "4611686018427387904"),
        ("work_hours", '"8-99999999999999999999"'),
        ("renews_at", "9999-01-01T00:00:00Z"),
        ("renews_at", "1900-01-01T00:00:00Z"),
        ("renews_at", "1e300"),
    ],
)
def test_a_file_with_an_out_of_bounds_number_is_refused_whole(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path], key: str, literal: str
) -> None:
    f = accounts_file(
        {"id": '"a-ok"', "owner": '"alice"', "plan": '"pro"'},
        {"id": '"a-bad"', "owner": '"alice"', "plan": '"pro"', key: literal},
    )
    out = byoa("accounts", "load", str(f), code=1).output
    assert "invalid_accounts_file" in out and key in out and "a-bad" in out
    assert router.pool.accounts() == []


@pytest.mark.parametrize(
    "option",
    [
        ("--fast-hours", "1e13"),
        ("--fast-hours", "nan"),
        ("--fast-hours", "inf"),
        ("--fast-limit", "1000000"),
        ("--relax-limit", "-1"),
        ("--min-gap", "inf"),
        ("--daily-cap", "4611686018427387904"),
        ("--renews-at", "9999-01-01"),
    ],
)
def test_the_cli_refuses_out_of_bounds_numbers(
    byoa: Byoa, router: Router, option: tuple[str, str]
) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    before = view(router, "a-pro")
    assert "invalid_account" in byoa("accounts", "set", "a-pro", *option, code=1).output
    assert view(router, "a-pro") == before
    add = ("accounts", "add", "a-new", "--owner", "alice", "--plan", "pro", *option)
    assert "invalid_account" in byoa(*add, code=1).output
    assert router.pool.get("a-new") is None


@pytest.mark.parametrize(
    "change",
    [
        {"fast_hours": 1e13},
        {"fast_hours": float("nan")},
        {"fast_limit": 10**9},
        {"min_gap_seconds": float("inf")},
        {"daily_cap": -1},
        {"work_hours": (0, 24)},
    ],
)
def test_pool_update_refuses_out_of_bounds_numbers(
    byoa: Byoa, router: Router, change: dict[str, object]
) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    with pytest.raises(AccountError) as caught:
        router.pool.update("a-pro", **change)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_account"


# --- defect 5: credentials stored clean, or refused without being quoted ------------------------


def stored_credentials(router: Router, owner: str, account_id: str) -> str | None:
    raw = router.redis.get(router.keys.credentials(owner, account_id))
    return None if raw is None else text(raw)


def test_credentials_lose_surrounding_whitespace_wherever_they_come_from(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    f = accounts_file(
        {"id": '"a-file"', "owner": '"alice"', "plan": '"pro"', "credentials": f'"{CANARY}\\n"'}
    )
    byoa("accounts", "load", str(f))
    assert stored_credentials(router, "alice", "a-file") == CANARY
    add = ("accounts", "add", "a-cli", "--owner", "alice", "--plan", "pro")
    byoa(*add, "--credentials-env", "MJ_TOKEN", MJ_TOKEN=f" {CANARY}\r\n")
    assert stored_credentials(router, "alice", "a-cli") == CANARY
    router.apply(router.pool.update("a-cli", credentials=SecretStr(f"\t{CANARY}-2\n")))
    assert stored_credentials(router, "alice", "a-cli") == f"{CANARY}-2"


@pytest.mark.parametrize(
    "secret",
    [f"{CANARY}\nX-Injected: 1", f"{CANARY}\x1b[2J", f"{CANARY}\u200b", f"{CANARY}\x7f", " \n "],
)
def test_credentials_with_control_characters_are_refused_unquoted(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path], secret: str
) -> None:
    f = accounts_file(
        {"id": '"a-file"', "owner": '"alice"', "plan": '"pro"', "credentials": toml_string(secret)}
    )
    out = byoa("accounts", "load", str(f), code=1).output
    assert "invalid_accounts_file" in out and "credentials" in out
    assert router.pool.get("a-file") is None
    add = ("accounts", "add", "a-cli", "--owner", "alice", "--plan", "pro")
    out = byoa(*add, "--credentials-env", "MJ_TOKEN", code=1, MJ_TOKEN=secret).output
    assert "invalid_credentials" in out
    assert router.pool.get("a-cli") is None
    byoa(*add)
    with pytest.raises(AccountError) as caught:
        router.pool.update("a-cli", credentials=SecretStr(secret))
    assert caught.value.code == "invalid_credentials" and CANARY not in str(caught.value)
    assert stored_credentials(router, "alice", "a-cli") is None


def test_the_example_file_still_loads_twice(byoa: Byoa, router: Router) -> None:
    example = Path(__file__).parent.parent / "config" / "accounts.example.toml"
    byoa("accounts", "load", str(example))
    first = router.pool.accounts()
    byoa("accounts", "load", str(example))
    assert router.pool.accounts() == first


# --- a file is checked whole, against Redis too, before anything is written ----------------


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (
            {"id": '"a-cheap"', "owner": '"alice"', "plan": '"basic"', "relax_limit": "2"},
            "relax_limit",
        ),
        ({"id": '"a-bad"', "owner": '"alice"', "plan": '"pro"'}, "id"),  # bob's id
        ({"id": '"a-good"', "owner": '"alice"', "plan": '"pro"'}, "id"),  # twice in the file
        ({"id": '"a-stuck"', "owner": '"alice"', "plan": '"pro"'}, "id"),  # bob's, stuck by a crash
    ],
)
def test_a_table_refused_by_the_pool_refuses_the_whole_file_first(
    byoa: Byoa,
    router: Router,
    accounts_file: Callable[..., Path],
    bad: dict[str, str],
    field: str,
) -> None:
    byoa("accounts", "add", "a-bad", "--owner", "bob", "--plan", "standard")
    router.redis.hsetnx(router.keys.account_owners, "a-stuck", "bob")  # an add killed after step 1
    before = router.pool.accounts()
    good = {"id": '"a-good"', "owner": '"alice"', "plan": '"pro"', "credentials": f'"{CANARY}"'}
    f = accounts_file(good, bad)
    out = byoa("accounts", "load", str(f), code=1).output
    account = bad["id"].strip('"')
    assert f"account 2 ({account}): {field}:" in out, out
    assert "basic" not in out and "bob" not in out  # the account and field, never a value
    assert router.pool.accounts() == before
    assert router.pool.get("a-good") is None
    assert router.redis.hget(router.keys.account_owners, "a-good") is None
    assert stored_credentials(router, "alice", "a-good") is None


def test_a_plan_change_without_relax_time_is_refused_before_anything_is_written(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    byoa("accounts", "add", "a-old", "--owner", "alice", "--plan", "pro")
    before = view(router, "a-old")
    f = accounts_file(
        {"id": '"a-new"', "owner": '"alice"', "plan": '"pro"'},
        {"id": '"a-old"', "owner": '"alice"', "plan": '"basic"', "relax_limit": "1"},
    )
    out = byoa("accounts", "load", str(f), code=1).output
    assert "account 2 (a-old): relax_limit:" in out
    assert router.pool.get("a-new") is None and view(router, "a-old") == before
    # the same change with the plan's own limits is fine
    f = accounts_file({"id": '"a-old"', "owner": '"alice"', "plan": '"basic"'})
    byoa("accounts", "load", str(f))
    assert (view(router, "a-old").plan, view(router, "a-old").relax_limit) == ("basic", 0)


# --- an id left half written by a process killed between steps -----------------------------


def index(router: Router, account_id: str) -> str | None:
    raw = router.redis.hget(router.keys.account_owners, account_id)
    return None if raw is None else text(raw)


def crash_remove(router: Router, owner: str, account_id: str, steps: int) -> None:
    """Pool.remove's first `steps` writes, as if the process were killed after them."""
    router.pool._write(owner, "remove", account_id, {})
    if steps >= 2:
        router.redis.delete(router.keys.credentials(owner, account_id))


def crash_add(router: Router, owner: str, account_id: str, steps: int) -> None:
    """Pool.add's first `steps` writes (claim the id, store credentials), then killed."""
    assert router.redis.hsetnx(router.keys.account_owners, account_id, owner)
    if steps >= 2:
        router.redis.set(router.keys.credentials(owner, account_id), f"{CANARY}-old")


@pytest.mark.parametrize("steps", [1, 2])
def test_remove_finishes_a_remove_that_was_killed(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path], steps: int
) -> None:
    add = ("accounts", "add", "X", "--owner", "alice", "--plan", "pro", "--credentials-env", "T")
    byoa(*add, T=CANARY)
    crash_remove(router, "alice", "X", steps)
    byoa("accounts", "remove", "X")
    assert index(router, "X") is None and stored_credentials(router, "alice", "X") is None
    byoa("accounts", "remove", "X", code=1)  # now truly gone
    byoa("accounts", "add", "X", "--owner", "bob", "--plan", "pro")  # free for anyone
    assert view(router, "X").owner == "bob"


@pytest.mark.parametrize("steps", [1, 2])
def test_add_and_load_take_over_an_id_their_owner_left_half_written(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path], steps: int
) -> None:
    crash_add(router, "alice", "Y", steps)
    byoa(
        "accounts",
        "add",
        "Y",
        "--owner",
        "alice",
        "--plan",
        "pro",
        "--credentials-env",
        "T",
        T=CANARY,
    )
    assert view(router, "Y").owner == "alice" and [a.id for a in router.pool.accounts()] == ["Y"]
    assert stored_credentials(router, "alice", "Y") == CANARY
    crash_remove(router, "alice", "Y", steps)
    f = accounts_file({"id": '"Y"', "owner": '"alice"', "plan": '"standard"'})
    for _ in range(2):  # an init container's re-sync: the first run repairs, the next is a no-op
        byoa("accounts", "load", str(f))
        assert view(router, "Y").plan == "standard"
    byoa("accounts", "set", "Y", "--disable")
    byoa("accounts", "remove", "Y")
    assert router.pool.accounts() == []


def test_remove_clears_an_id_an_add_left_half_written(byoa: Byoa, router: Router) -> None:
    crash_add(router, "alice", "Y", 2)
    byoa("accounts", "remove", "Y")
    assert index(router, "Y") is None and stored_credentials(router, "alice", "Y") is None


def test_a_half_written_id_of_another_owner_stays_theirs(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    crash_add(router, "bob", "Z", 1)
    out = byoa("accounts", "add", "Z", "--owner", "alice", "--plan", "pro", code=1).output
    assert "account_exists" in out
    f = accounts_file({"id": '"Z"', "owner": '"alice"', "plan": '"pro"'})
    assert "account 1 (Z): id:" in byoa("accounts", "load", str(f), code=1).output
    assert index(router, "Z") == "bob"
    byoa("accounts", "add", "Z", "--owner", "bob", "--plan", "pro")  # bob's own add repairs it
    assert view(router, "Z").owner == "bob"


def test_an_account_whose_index_entry_was_lost_is_found_again(
    byoa: Byoa, router: Router, accounts_file: Callable[..., Path]
) -> None:
    byoa("accounts", "add", "W", "--owner", "alice", "--plan", "pro", "--fast-hours", "2")
    router.redis.hdel(router.keys.account_owners, "W")
    assert router.pool.accounts() == []
    add = ("accounts", "add", "W", "--owner", "alice", "--plan", "pro", "--credentials-env", "T")
    assert "account_exists" in byoa(*add, code=1, T=CANARY).output
    assert index(router, "W") == "alice" and view(router, "W").fast_hours_remaining == 2
    assert stored_credentials(router, "alice", "W") is None  # a refused add writes nothing
    router.redis.hdel(router.keys.account_owners, "W")
    f = accounts_file({"id": '"W"', "owner": '"alice"', "plan": '"standard"'})
    byoa("accounts", "load", str(f))
    assert index(router, "W") == "alice" and view(router, "W").plan == "standard"
    assert view(router, "W").fast_hours_remaining == 2  # updated, not added again


def test_pods_loading_the_same_file_at_once_all_succeed(
    router: Router, env: dict[str, str], accounts_file: Callable[..., Path]
) -> None:
    """Init containers of several pods start together: each add or update meets the others'
    steps half done, and none of them may fail for it."""
    tables = [{"id": f'"a-{i}"', "owner": '"alice"', "plan": '"pro"'} for i in range(60)]
    f = accounts_file(*tables)
    cmd = [sys.executable, "-m", "router", "accounts", "load", str(f)]
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE) for _ in range(8)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert sorted(a.id for a in router.pool.accounts()) == sorted(f"a-{i}" for i in range(60))
