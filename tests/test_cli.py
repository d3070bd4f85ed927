"""The `byoa` command: accounts, submit, task, cancel, status; credentials never shown."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from router.cli import main
from router.core import Router
from router.scripts import text
from router.terminal import VisibleFormatter, visible

CANARY = "sk-CANARY-7f3a9c"
ADD_PRO_WITH_CREDENTIALS = (
    "accounts",
    "add",
    "a-pro",
    "--owner",
    "alice",
    "--plan",
    "pro",
    "--credentials-env",
    "MJ_TOKEN",
)


@pytest.fixture
def byoa(env: dict[str, str], router: Router) -> Callable[..., Result]:
    runner = CliRunner()
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(main, list(args), env={**env, "MJ_TOKEN": CANARY})
        outputs.append(result.output + (result.stderr if result.stderr_bytes else ""))
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    yield run
    assert not any(CANARY in o for o in outputs)  # secrets never printed


def test_accounts_add_set_list_remove(byoa: Callable[..., Result], router: Router) -> None:
    byoa(*ADD_PRO_WITH_CREDENTIALS)
    byoa(
        "accounts",
        "add",
        "a-basic",
        "--owner",
        "alice",
        "--plan",
        "basic",
        "--fast-hours",
        "1",
        "--fast-limit",
        "2",
    )
    byoa("accounts", "add", "b-std", "--owner", "bob", "--plan", "standard", "--setting", "relax")
    listed = json.loads(byoa("accounts", "list", "--json").output)
    assert [a["id"] for a in listed] == ["a-basic", "a-pro", "b-std"]
    basic = listed[0]
    assert (basic["plan"], basic["setting"], basic["fast_hours_remaining"]) == ("basic", "fast", 1)
    assert (basic["fast_limit"], basic["relax_limit"], basic["enabled"]) == (2, 0, True)
    assert basic["inflight"] == {"fast": 0, "relax": 0}
    assert listed[1]["fast_hours_remaining"] == 30 and listed[1]["fast_limit"] == 12
    byoa("accounts", "set", "a-pro", "--fast-hours", "2.5", "--disable")
    alice = json.loads(byoa("accounts", "list", "--owner", "alice", "--json").output)
    pro = next(a for a in alice if a["id"] == "a-pro")
    assert (pro["fast_hours_remaining"], pro["enabled"]) == (2.5, False)
    assert "a-pro" in byoa("accounts", "list").output  # the table
    byoa("accounts", "remove", "b-std")
    assert router.pool.get("b-std") is None
    creds = router.pool.credentials("alice", "a-pro")
    assert creds is not None and creds.get_secret_value() == CANARY
    account_hash = router.redis.hgetall(router.keys.account("alice", "a-pro"))
    assert CANARY not in json.dumps({text(k): text(v) for k, v in account_hash.items()})


def test_account_errors_are_clear(byoa: Callable[..., Result]) -> None:
    byoa("accounts", "add", "a1", "--owner", "alice", "--plan", "pro")
    assert (
        "account_exists"
        in byoa("accounts", "add", "a1", "--owner", "bob", "--plan", "pro", code=1).output
    )
    assert "account_not_found" in byoa("accounts", "set", "zz", "--fast-hours", "1", code=1).output
    assert (
        "invalid_account"
        in byoa(
            "accounts",
            "add",
            "b1",
            "--owner",
            "alice",
            "--plan",
            "basic",
            "--relax-limit",
            "2",
            code=1,
        ).output
    )
    assert (
        "invalid_account"
        in byoa("accounts", "add", "bad:id", "--owner", "alice", "--plan", "pro", code=1).output
    )
    byoa("accounts", "add", "x", "--owner", "alice", "--plan", "gold", code=2)


def test_accounts_load_adds_then_updates(
    byoa: Callable[..., Result], router: Router, tmp_path: Path
) -> None:
    f = tmp_path / "accounts.toml"
    f.write_text(
        f'[[accounts]]\nid = "a1"\nowner = "alice"\nplan = "mega"\ncredentials = "{CANARY}"\n'
    )
    assert "loaded 1" in byoa("accounts", "load", str(f)).output
    f.write_text('[[accounts]]\nid = "a1"\nowner = "alice"\nplan = "mega"\nfast_hours = 4\n')
    byoa("accounts", "load", str(f))
    view = router.pool.get("a1")
    assert view is not None and view.fast_hours_remaining == 4
    bad = tmp_path / "bad.toml"
    bad.write_text('[[accounts]]\nid = "a2"\nplan = "mega"\n')
    assert "invalid_accounts_file" in byoa("accounts", "load", str(bad), code=1).output


def test_example_accounts_file_loads(byoa: Callable[..., Result], router: Router) -> None:
    example = Path(__file__).parent.parent / "config" / "accounts.example.toml"
    byoa("accounts", "load", str(example))
    assert {a.owner for a in router.pool.accounts()} == {"alice", "bob", "carol", "dave"}


def test_submit_wait_task_and_status(
    byoa: Callable[..., Result], router: Router, spawn: Callable[..., object]
) -> None:
    byoa(*ADD_PRO_WITH_CREDENTIALS)
    spawn("worker")
    out = byoa(
        "submit",
        "--owner",
        "alice",
        "--prompt",
        "a fox --relax",
        "--mode",
        "turbo",
        "--id",
        "cli-1",
        "--wait",
        "--timeout",
        "60",
        "--json",
    ).output
    task = json.loads(out)
    assert (task["id"], task["status"], task["effective_mode"]) == ("cli-1", "completed", "turbo")
    assert task["prompt"] == "a fox --turbo" and task["account_id"] == "a-pro"
    for field in ("created_at", "started_at", "finished_at"):
        assert task[field].endswith("Z") or "+00:00" in task[field]
    assert set(task) >= {
        "id",
        "owner",
        "task_type",
        "status",
        "requested_mode",
        "effective_mode",
        "fallback_reason",
        "account_id",
        "parent_id",
        "prompt",
        "error",
        "result",
    }
    shown = json.loads(byoa("task", "cli-1", "--json").output)
    assert shown == task
    child = json.loads(
        byoa(
            "submit",
            "--owner",
            "alice",
            "--type",
            "upscale",
            "--parent",
            "cli-1",
            "--wait",
            "--timeout",
            "60",
            "--json",
        ).output
    )
    assert (child["effective_mode"], child["account_id"]) == ("turbo", "a-pro")
    status = byoa("status").output
    assert "a-pro" in status and "alice" in status and "dead letters" in status
    snap = json.loads(byoa("status", "--json").output)
    assert snap["owners"]["alice"]["in_flight"] == 0
    assert "task_not_found" in byoa("task", "nope", code=1).output


def test_submit_reports_failures_with_their_code(byoa: Callable[..., Result]) -> None:
    out = byoa("submit", "--owner", "alice", "--prompt", "x", "--json", code=3).output
    assert json.loads(out)["error"]["code"] == "no_account"
    assert (
        "prompt_too_long"
        in byoa("submit", "--owner", "alice", "--prompt", "x" * 501, code=1).output
    )


def test_cancel_from_the_cli(byoa: Callable[..., Result]) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    byoa("submit", "--owner", "alice", "--prompt", "x", "--mode", "fast", "--id", "c1")
    assert json.loads(byoa("cancel", "c1", "--json").output)["status"] == "cancelled"


CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"
"""OSC 52: the terminal writes its clipboard."""
TITLE = "\x1b]0;owned\x07"
"""OSC 0: the terminal retitles its window."""
HOSTILE = f"a fox {CLIPBOARD}{TITLE} \x9b2J \x7f \u202ereversed\u202c \u2066isolated\u2069"
"""A prompt with the controls a terminal acts on: OSC 52 and window title (ESC ... BEL),
C1 CSI, DEL, bidi override and isolate (a line break does not survive: the prompt's
whitespace is normalised on intake)."""
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\u202c", "\u2066", "\u2069")


def test_human_output_escapes_what_a_terminal_would_act_on_and_json_keeps_it_exact(
    byoa: Callable[..., Result],
) -> None:
    byoa("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    submitted = byoa("submit", "--owner", "alice", "--prompt", HOSTILE, "--id", "t1").output
    shown = byoa("task", "t1").output
    cancelled = byoa("cancel", "t1").output
    for out in (submitted, shown, cancelled):
        assert not any(c in out for c in RAW), out
        assert "\\x1b]52;c;cm0gLXJmIH4=\\x07" in out and "\\x1b]0;owned\\x07" in out
        assert "\\x9b2J \\x7f \\u202ereversed\\u202c \\u2066isolated\\u2069" in out
    exact = byoa("task", "t1", "--json").output
    assert not any(c in exact for c in RAW)  # JSON's own escapes: \u001b
    assert json.loads(exact)["prompt"].startswith(HOSTILE)  # then the mode flag written
    error = byoa("task", TITLE, code=1).output
    assert not any(c in error for c in RAW) and "\\x1b]0;owned\\x07" in error


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x07\x00\t\r", "\\x1b[2J\\x07\\x00\\x09\\x0d"),  # C0
        ("\x85\x9b\x7f", "\\x85\\x9b\\x7f"),  # C1, DEL
        (
            "\u202a\u202b\u202d\u200e\u200b\u2028\u2029",
            "\\u202a\\u202b\\u202d\\u200e\\u200b\\u2028\\u2029",
        ),
        ("\U000e0041\ud800", "\\U000e0041\\ud800"),  # a tag character, a lone surrogate
        ("café 日本 🦊 C:\\path \u00a0", "café 日本 🦊 C:\\path \u00a0"),  # as they are
        ("two\nlines", "two\\x0alines"),
    ],
)
def test_visible_escapes_what_a_terminal_acts_on_and_nothing_else(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert visible(text, keep="\n") == shown.replace("\\x0a", "\n")


def test_every_human_line_of_the_cli_goes_through_one_escaping_helper() -> None:
    """`click.echo` is called in `_say` (escaped) and `_echo_json` (exact JSON) only."""
    import ast

    import router.cli

    tree = ast.parse(Path(router.cli.__file__).read_text())
    callers = {
        fn.name
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("click.echo", "click.secho")
    }
    assert callers == {"_say", "_echo_json"}


def byoa_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )


def test_bad_configuration_is_reported_without_values_or_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text('key_prefix = "has space"\nredis_uri = "redis://:CANARYPASS@127.0.0.1"\n')
    result = byoa_process("--config", str(bad), "status")
    assert result.returncode == 1
    assert "bad configuration" in result.stderr and "key_prefix" in result.stderr
    assert "redis_uri" in result.stderr and "CANARYPASS" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("redis://:CANARYPASS@127.0.0.1:notaport/0", "bad_redis_url"),
        ("http://:CANARYPASS@127.0.0.1:6379/0", "bad_redis_url"),
        ("redis://:CANARYPASS@127.0.0.1:1/0", "redis_unreachable"),
    ],
)
def test_bad_or_unreachable_redis_is_a_clear_error(url: str, code: str) -> None:
    result = byoa_process("status", env={**os.environ, "BYOA_REDIS_URL": url})
    assert result.returncode == 1
    assert f"error: {code}" in result.stderr
    assert "CANARYPASS" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_status_watch_redraws_until_interrupted(
    byoa: Callable[..., Result], env: dict[str, str]
) -> None:
    byoa(*ADD_PRO_WITH_CREDENTIALS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "status", "--watch", "--interval", "0.05"],
        env={**env, "TERM": "dumb"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    frames, shown = 0, []
    for line in proc.stdout:  # reads until two frames were drawn, or the process ends
        frames += "Ctrl-C to stop" in line
        shown.append(line)
        if frames == 2:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=10)
    assert frames == 2 and proc.returncode == 0
    assert any("a-pro" in line for line in shown)
    assert CANARY not in rest + "".join(shown)


def test_log_lines_show_what_a_backend_said_as_visible_escapes() -> None:
    """A worker logs a backend's failReason as it came: the formatter escapes what a
    terminal would act on (OSC 52, a window title, colours, bidi), keeping line breaks."""
    record = logging.LogRecord(
        "workers.jobs", logging.WARNING, __file__, 1, "account needs attention: %s", (
            "[Blocked] \x1b]0;PWNED\x07\x1b]52;c;ZWNobw==\x07\x1b[31mRED\x1b[0m\u202eevil",
        ), None,
    )  # fmt: skip
    line = VisibleFormatter("%(name)s %(message)s").format(record)
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    assert "\\x1b]52;c;ZWNobw==\\x07" in line and "\\u202eevil" in line
    two = logging.LogRecord("x", logging.ERROR, __file__, 1, "a\nb", (), None)
    assert VisibleFormatter("%(message)s").format(two) == "a\nb"
