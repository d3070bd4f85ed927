"""The `byoa` command keeps rq's, redis-cli's and kubectl's habits: `-h`, `--version`,
`-u/--redis-url`, global options before or after the command, the Redis it reads named,
documented exit codes, and a BYOA_* variable that names no setting warned about."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import click
from click.testing import Result
from pydantic import SecretStr

from router.cli import main
from router.core import connect
from router.presence import redis_address, redis_url_shown
from router.settings import Settings
from tests.conftest import TEST_REDIS_URL

Cli = Callable[..., Result]
NOWHERE = "redis://127.0.0.1:1/0"
"""A Redis URL nothing answers at."""


def test_h_is_help_for_every_command_and_version_names_the_package(cli: Cli) -> None:
    assert cli("-h").stdout.startswith("Usage: byoa [OPTIONS] COMMAND")
    assert "Usage: byoa status [OPTIONS]" in cli("status", "-h").stdout
    assert "Usage: byoa accounts list [OPTIONS]" in cli("accounts", "list", "-h").stdout
    assert cli("--version").stdout == f"byoa {version('byoa-router')}\n"
    assert cli("-V").stdout == cli("--version").stdout


def test_help_documents_the_exit_codes(cli: Cli) -> None:
    shown = cli("--help").stdout
    for line in (
        "0  done",
        "1  an error, said on stderr as `error: <code>: <message>`",
        "2  a usage error",
        "3  submit: the task ended failed",
        "4  submit --wait: the wait timed out",
    ):
        assert line in shown, line


def test_every_option_of_every_command_has_help() -> None:
    def commands(group: click.Group) -> Iterator[click.Command]:
        for command in group.commands.values():
            yield command
            if isinstance(command, click.Group):
                yield from commands(command)

    for command in commands(main):
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts[0]} has no help"


def test_redis_url_option_wins_before_or_after_the_command(cli: Cli, prefix: str) -> None:
    for args in (
        ("-u", TEST_REDIS_URL, "status", "--json"),
        ("status", "--json", "-u", TEST_REDIS_URL),
        ("status", "--redis-url", TEST_REDIS_URL, "--json"),
    ):
        shown = cli(*args, BYOA_REDIS_URL=NOWHERE).stdout
        assert f'"key_prefix": "{prefix}"' in shown and '"db": 14' in shown
    cli("accounts", "list", "-u", TEST_REDIS_URL, BYOA_REDIS_URL=NOWHERE)
    cli("accounts", "-u", TEST_REDIS_URL, "list", BYOA_REDIS_URL=NOWHERE)
    failed = cli("status", BYOA_REDIS_URL=NOWHERE, code=1)
    assert "error: redis_unreachable" in failed.stderr


def test_config_and_log_level_are_taken_after_the_command(
    cli: Cli, prefix: str, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'key_prefix = "{prefix}"\n')
    for args in (
        ("status", "--config", str(config), "--json"),
        ("--config", str(config), "status", "--json"),
        ("status", "--json", "--log-level", "warning", "--config", str(config)),
    ):
        shown = cli(*args, BYOA_KEY_PREFIX=None).stdout
        assert f'"key_prefix": "{prefix}"' in shown


def test_status_names_the_redis_it_reads_and_never_its_password(cli: Cli, prefix: str) -> None:
    shown = cli("status").stdout
    assert shown.splitlines()[0] == f"redis: redis://127.0.0.1:6379/14  prefix: {prefix}"
    secret = connect(Settings(redis_url=SecretStr("rediss://ops:CANARY@db.internal:6380/3")))
    address = redis_address(secret)
    assert "CANARY" not in str(address) and "ops" not in str(address)
    assert redis_url_shown(address) == "rediss://db.internal:6380/3"


def test_a_byoa_variable_that_names_no_setting_is_warned_about_by_name(cli: Cli) -> None:
    result = cli(
        "tasks",
        BYOA_REDIS_ULR="redis://:CANARYPASS@10.0.0.9:6379/5",
        BYOA_SIM__JITTER="0.1",  # nested settings are settings
        byoa_max_retries="1",  # as pydantic-settings reads them: whatever the case
        BYOA_TEST_REDIS_URL=TEST_REDIS_URL,  # the project's own, not settings
        BYOA_NOTHING_LIKE_IT="1",
    )
    assert result.stderr.splitlines() == [
        "warning: BYOA_NOTHING_LIKE_IT is not a byoa setting and is ignored",
        "warning: BYOA_REDIS_ULR is not a byoa setting and is ignored "
        "(did you mean BYOA_REDIS_URL?)",
    ]
    assert "CANARYPASS" not in result.output
