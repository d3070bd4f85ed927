"""The `byoa` command: run the router and workers, manage accounts, submit and inspect tasks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any

import click
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError

from router.accounts import AccountChange, AccountSpec, account_error, read_accounts_file
from router.apikeys import ApiKeys
from router.core import Router
from router.errors import ByoaError, InvalidAccount, InvalidTask, UnknownTask
from router.models import Mode, Plan, Setting, TaskType
from router.scripts import text
from router.settings import CONFIG_ENV, Settings
from router.status import render, render_accounts, snapshot
from router.tasks import Task
from router.terminal import visible


def _router(ctx: click.Context) -> Router:
    router: Router = ctx.ensure_object(dict).setdefault("router", Router(_settings(ctx)))
    return router


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.ensure_object(dict)["settings"]
    return settings


class ByoaGroup(click.Group):
    """Every command's errors as `error: code: message` (exit 1), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ByoaError as e:
            _say(f"error: {e.code}: {visible(e.message)}", err=True)
            sys.exit(1)
        except RedisError as e:  # the message names host and port, never the password
            _say(f"error: redis_unreachable: {type(e).__name__}: {visible(str(e))}", err=True)
            sys.exit(1)


def _say(message: str = "", err: bool = False) -> None:
    """Every line of human-readable output: what a terminal would act on rather than show
    (ESC, BEL, bidi overrides...) is escaped, whoever wrote it (a prompt, a backend, a
    dead letter); line breaks are kept. Values that may hold line breaks of their own
    escape them first (`visible`), so that no value forges a line."""
    click.echo(visible(message, keep="\n"), err=err)


def _echo_json(data: Any) -> None:
    """--json output: exact, and plain ASCII (json.dumps escapes every control and
    non-ASCII character), so a terminal shows it as it is."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=ByoaGroup)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help=f"TOML settings file (also ${CONFIG_ENV}); BYOA_* variables override it.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str) -> None:
    """byoa-router: route image tasks across bring-your-own Midjourney accounts."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if config:
        os.environ[CONFIG_ENV] = config  # rq job processes read the same settings
    try:
        ctx.ensure_object(dict)["settings"] = Settings()
    except ValidationError as e:  # field names and reasons only: values may be secrets
        raise click.ClickException(f"bad configuration: {_errors(e)}") from None
    except (OSError, ValueError) as e:
        raise click.ClickException(f"bad configuration: {visible(str(e))}") from None


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run a router replica: read the intake list and route until SIGTERM/SIGINT; serve
    /metrics, /healthz and /readyz (a port that cannot be bound stops it at start)."""
    from router.daemon import IntakeDaemon
    from router.http import serve

    router = _router(ctx)
    if router.settings.metrics_enabled:
        serve(router)  # first: nothing is claimed or started if the port is taken
    daemon = IntakeDaemon(router)
    daemon.install_signal_handlers()
    daemon.run()


@main.command()
@click.option("--burst", is_flag=True, help="Exit when nothing is left to submit or poll.")
@click.option("--name", default=None, help="rq worker name (default: <prefix>-<random>).")
@click.pass_context
def worker(ctx: click.Context, burst: bool, name: str | None) -> None:
    """Run a worker: submit dispatched tasks to their accounts and poll running jobs."""
    from workers.process import run_worker

    run_worker(_router(ctx), burst=burst, name=name)


@main.command()
@click.option("--owner", required=True)
@click.option(
    "--type",
    "task_type",
    default="imagine",
    show_default=True,
    type=click.Choice([t.value for t in TaskType]),
)
@click.option("--prompt", default="")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=None)
@click.option("--parent", "parent_id", default=None)
@click.option("--id", "task_id", default=None, help="Your own id: retries are idempotent.")
@click.option("--webhook", default=None, help="URL to POST the task's record to when it ends.")
@click.option(
    "--webhook-secret-env",
    default=None,
    help="Name of an environment variable holding the webhook's secret.",
)
@click.option("--webhook-progress", is_flag=True, help="Also POST when the task starts.")
@click.option("--wait", is_flag=True, help="Wait until the task ends.")
@click.option("--timeout", type=float, default=None, help="Seconds to --wait at most.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def submit(
    ctx: click.Context,
    owner: str,
    task_type: str,
    prompt: str,
    mode: str | None,
    parent_id: str | None,
    task_id: str | None,
    webhook: str | None,
    webhook_secret_env: str | None,
    webhook_progress: bool,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a task and print its record."""
    from router.client import Client

    client = Client(_settings(ctx), _router(ctx).redis)
    hook: dict[str, Any] | None = None
    if webhook is not None:
        secret = _secret_from_env(webhook_secret_env, InvalidTask)
        hook = {"endpoint": webhook, "secret": secret, "progress": webhook_progress}
    elif webhook_secret_env or webhook_progress:
        raise InvalidTask("--webhook-secret-env and --webhook-progress need --webhook")
    task = client.submit(
        owner, prompt, task_type=task_type, mode=mode, parent_id=parent_id, id=task_id, webhook=hook
    )
    if wait:
        task = client.wait(task.id, timeout)
    _print_task(task, as_json)
    if task.status == "failed":
        sys.exit(3)


def _print_task(task: Task, as_json: bool) -> None:
    if as_json:
        _echo_json(task.public())
        return
    for k, v in task.public().items():
        if v not in (None, {}, ""):
            _say(f"{k:16} {json.dumps(v) if isinstance(v, dict) else visible(str(v))}")


@main.command("task")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_task(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Print a task's record."""
    task = _router(ctx).tasks.get(task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id}")
    _print_task(task, as_json)


@main.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel a task (a running one ends cancelled when its job returns)."""
    task = _router(ctx).cancel(task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id}")
    _print_task(task, as_json)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--watch", is_flag=True, help="Redraw until Ctrl-C (for when Grafana is not at hand)."
)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between redraws.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: bool, interval: float) -> None:
    """Print the pool, the waiting lines per owner and the backlogs."""
    router = _router(ctx)
    if as_json:
        _echo_json(snapshot(router))
        return
    if not watch:
        _say(render(snapshot(router)))
        return
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            frame = render(snapshot(router))
            click.clear()
            _say(f"{time.strftime('%H:%M:%S')}  every {interval:g} s, Ctrl-C to stop\n{frame}")
            time.sleep(interval)


@main.command("dead-letters")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def dead_letters(ctx: click.Context, limit: int) -> None:
    """Print the newest dead letters (messages that could not become tasks)."""
    router = _router(ctx)
    for raw in router.redis.lrange(router.keys.dead_letters, 0, limit - 1):
        _say(visible(text(raw)))  # one line each, whatever line breaks it holds


@main.group()
def accounts() -> None:
    """Manage the account pool."""


def health_options(fn: Any) -> Any:
    """Account-health options shared by `accounts add` and `accounts set`."""
    for option in reversed(
        [
            click.option(
                "--min-gap",
                "min_gap_seconds",
                type=float,
                default=None,
                help="Pacing: seconds at least between two job starts.",
            ),
            click.option(
                "--daily-cap",
                type=int,
                default=None,
                help="At most this many job starts per UTC day (0: none).",
            ),
            click.option(
                "--work-hours",
                default=None,
                help="UTC hours it may start jobs in, START-END (e.g. 8-20).",
            ),
            click.option(
                "--renews-at",
                default=None,
                help="A date the plan renews, then every 30 days: UTC unless it carries an "
                "offset (2026-12-01T00:00:00, 2026-12-01T00:00:00+02:00); fast hours come "
                "back when one comes (a date in the past stands for its cycle's next date).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@accounts.command("add")
@click.argument("account_id")
@click.option("--owner", required=True)
@click.option("--plan", required=True, type=click.Choice([p.value for p in Plan]))
@click.option(
    "--setting", type=click.Choice([s.value for s in Setting]), default="fast", show_default=True
)
@click.option("--fast-hours", type=float, default=None, help="Default: the plan's allowance.")
@click.option("--fast-limit", type=int, default=None, help="Default: the plan's.")
@click.option("--relax-limit", type=int, default=None, help="Default: the plan's.")
@click.option(
    "--credentials-env",
    default=None,
    help="Name of an environment variable holding the account's credentials.",
)
@click.option("--backend-url", default=None, help="Base URL of the account's backend.")
@click.option(
    "--backend-server",
    type=click.Choice(["trueai", "novicezk"]),
    default=None,
    help="Which midjourney-proxy server the backend is (default: ask it).",
)
@health_options
@click.pass_context
def accounts_add(ctx: click.Context, /, account_id: str, **opts: Any) -> None:
    """Add an account to the pool."""
    env = opts.pop("credentials_env")
    given = {k: v for k, v in opts.items() if v is not None}
    try:
        spec = AccountSpec(id=account_id, **given, credentials=_secret_from_env(env))
    except ValidationError as e:
        raise account_error(e) from None
    router = _router(ctx)
    router.apply(router.pool.add(spec))
    _say(f"added {account_id}")


def _secret_from_env(name: str | None, error: type[ByoaError] = InvalidAccount) -> SecretStr | None:
    if name is None:
        return None
    if name not in os.environ:
        raise error(f"environment variable {name} is not set")
    return SecretStr(os.environ[name])


def _as_change(opts: dict[str, Any]) -> dict[str, Any]:
    """`accounts set` options as Pool.update's types (Pool.update bounds every value)."""
    try:
        given = AccountChange.model_validate({k: v for k, v in opts.items() if v is not None})
    except ValidationError as e:
        raise account_error(e) from None
    return {name: getattr(given, name) for name in given.model_fields_set}


def _errors(e: ValidationError) -> str:
    """Where and why, without the offending values (they may be secrets)."""
    return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())


@accounts.command("set")
@click.argument("account_id")
@click.option(
    "--plan",
    type=click.Choice([p.value for p in Plan]),
    default=None,
    help="A new plan: its limits (unless given here), its fast hours from the next renewal.",
)
@click.option("--fast-hours", type=float, default=None)
@click.option("--setting", type=click.Choice([s.value for s in Setting]), default=None)
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--fast-limit", type=int, default=None)
@click.option("--relax-limit", type=int, default=None)
@click.option("--backend-url", default=None, help="Base URL of the account's backend.")
@click.option(
    "--backend-server",
    type=click.Choice(["trueai", "novicezk"]),
    default=None,
    help="Which midjourney-proxy server the backend is (default: ask it).",
)
@health_options
@click.pass_context
def accounts_set(ctx: click.Context, /, account_id: str, **opts: Any) -> None:
    """Change an account; topping up fast hours flips an exhausted account back to fast,
    --enable puts an account a driver took out of rotation back in."""
    router = _router(ctx)
    router.apply(router.pool.update(account_id, **_as_change(opts)))
    _say(f"updated {account_id}")


@accounts.command("reset")
@click.argument("account_id")
@click.pass_context
def accounts_reset(ctx: click.Context, account_id: str) -> None:
    """Put an account back into rotation: enabled, its attention and cooldown cleared."""
    router = _router(ctx)
    router.apply(router.pool.reset(account_id))
    _say(f"reset {account_id}")


@accounts.command("remove")
@click.argument("account_id")
@click.pass_context
def accounts_remove(ctx: click.Context, account_id: str) -> None:
    """Remove an account; children waiting for it fail with parent_account_unavailable."""
    router = _router(ctx)
    router.apply(router.pool.remove(account_id))
    _say(f"removed {account_id}")


@accounts.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_context
def accounts_load(ctx: click.Context, path: str) -> None:
    """Add or update the accounts of a TOML or JSON file (all checked before any is written)."""
    router = _router(ctx)
    specs = read_accounts_file(path)
    router.pool.check_load(specs, path)
    for spec in specs:
        router.apply(router.pool.upsert(spec))
    _say(f"loaded {len(specs)} accounts from {path}")


@accounts.command("list")
@click.option("--owner", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def accounts_list(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """List accounts (credentials are never shown)."""
    views = _router(ctx).pool.accounts(owner)
    if as_json:
        _echo_json([v.model_dump(mode="json") for v in views])
        return
    _say(render_accounts([v.model_dump(mode="json") for v in views]))


@main.group()
def owners() -> None:
    """Manage owners' choices."""


@owners.command("set")
@click.argument("owner")
@click.option(
    "--upgrade-expiring/--no-upgrade-expiring",
    "upgrade_expiring",
    default=None,
    help="Run relax tasks fast on fast hours that will surely expire unused (default: off).",
)
@click.pass_context
def owners_set(ctx: click.Context, owner: str, upgrade_expiring: bool | None) -> None:
    """Change an owner's choices."""
    router = _router(ctx)
    router.apply(router.pool.set_owner_options(owner, upgrade_expiring=upgrade_expiring))
    _say(f"updated {owner}")


@owners.command("show")
@click.argument("owner")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def owners_show(ctx: click.Context, owner: str, as_json: bool) -> None:
    """Print an owner's choices."""
    options = _router(ctx).pool.owner_options(owner)
    if as_json:
        _echo_json(options.model_dump(mode="json"))
        return
    for k, v in options.model_dump(mode="json").items():
        _say(f"{k:16} {visible(str(v))}")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: BYOA_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: BYOA_API_PORT, 8080).")
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the HTTP task API (keys from `byoa keys`), /healthz, /readyz and /metrics
    until SIGTERM/SIGINT. Stateless: run as many as wanted."""
    from router.api.app import serve

    settings = _settings(ctx)
    serve(settings, host or settings.api_host, settings.api_port if port is None else port)


@main.group("keys")
def keys_group() -> None:
    """Manage API keys: each belongs to one owner, and Redis keeps only its hash."""


def _api_keys(ctx: click.Context) -> ApiKeys:
    router = _router(ctx)
    return ApiKeys(router.redis, router.scripts)


@keys_group.command("create")
@click.option("--owner", required=True)
@click.option("--name", default="", help="A label to tell keys apart.")
@click.option("--rate", type=float, default=None, help="Most requests a second (default: none).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_create(
    ctx: click.Context, owner: str, name: str, rate: float | None, as_json: bool
) -> None:
    """Make a key and print it: it is shown this once, never again."""
    record, key = _api_keys(ctx).create(owner, name, rate)
    if as_json:
        _echo_json({**record.model_dump(mode="json"), "key": key.get_secret_value()})
        return
    _say(key.get_secret_value())
    _say(f"key {record.id} for owner {record.owner}: store it now, it is not kept", err=True)


@keys_group.command("list")
@click.option("--owner", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """List keys (never the keys themselves, nor their hashes)."""
    records = _api_keys(ctx).list(owner)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in records])
        return
    for r in records:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        rate = f"{r.rate:g}/s" if r.rate is not None else "-"
        _say(
            f"{r.id}  {r.owner:20} {visible(r.name) or '-':20} {rate:>8}  "
            f"{r.created_at:%Y-%m-%d %H:%M}  {state}"
        )


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Refuse a key from now on (by its id, as `keys list` shows it)."""
    _api_keys(ctx).revoke(key_id)
    _say(f"revoked {key_id}")


@main.command()
@click.option("--tasks", "n_tasks", default=40, show_default=True)
@click.option("--workers", "n_workers", default=6, show_default=True)
@click.option("--accounts-file", default="config/accounts.example.toml", show_default=True)
@click.pass_context
def demo(ctx: click.Context, n_tasks: int, n_workers: int, accounts_file: str) -> None:
    """Run a router, workers and a demo pool on this machine; show what ran where."""
    from router.demo import run_demo

    run_demo(_settings(ctx), n_tasks=n_tasks, n_workers=n_workers, accounts_file=accounts_file)
