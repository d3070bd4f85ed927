"""The `byoa` command: run the router and workers, manage accounts, submit and inspect tasks.

Global options (`-u/--redis-url`, `--config`, `--log-level`) are taken before or after a
command's name, as rq's and kubectl's are; `-h` is `--help`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError

from router.accounts import AccountChange, AccountSpec, account_error, read_accounts_file
from router.apikeys import ApiKeys
from router.core import Router
from router.costs import BATCH_SIZES
from router.envcheck import warnings
from router.errors import (
    ByoaError,
    InvalidAccount,
    InvalidTask,
    NothingToCancel,
    UnknownTask,
    WaitTimedOut,
)
from router.job_inputs import DIMENSIONS, MOTIONS
from router.models import CHILD_TYPES, Mode, Plan, Setting, TaskStatus, TaskType
from router.scripts import text
from router.settings import CONFIG_ENV, Settings
from router.status import render, render_accounts, snapshot
from router.tables import dead_letter, render_dead_letters, render_keys, render_tasks
from router.task_list import MAX_LIMIT, TaskFilter, TaskList
from router.tasks import Task
from router.terminal import VisibleFormatter, visible
from router.times import now_iso

REDIS_URL_ENV = "BYOA_REDIS_URL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BACKEND_SERVERS = ("trueai", "novicezk")

EXIT_OK = 0
EXIT_ERROR = 1
"""An error, said on stderr as `error: <code>: <message>`."""
EXIT_USAGE = 2
"""click's: an unknown command or option, or a bad value for one."""
EXIT_TASK_FAILED = 3
"""`submit`: the task ended failed (its record, with its error code, is printed)."""
EXIT_WAIT_TIMEOUT = 4
"""`submit --wait --timeout`: the wait ended first; the task goes on (its record so far
is printed)."""

EPILOG = f"""\b
Exit codes:
  {EXIT_OK}  done
  {EXIT_ERROR}  an error, said on stderr as `error: <code>: <message>`
  {EXIT_USAGE}  a usage error: an unknown command or option, or a bad value
  {EXIT_TASK_FAILED}  submit: the task ended failed (its record is printed)
  {EXIT_WAIT_TIMEOUT}  submit --wait: the wait timed out; the task goes on

\b
Environment: BYOA_<SETTING> for any setting (BYOA_REDIS_URL, BYOA_KEY_PREFIX...),
BYOA_CONFIG for the settings file; a BYOA_ variable that names no setting is warned
about. Global options go before or after the command: byoa status -u redis://host:6379/0
(a password is better given in BYOA_REDIS_URL: a command line is visible to every user).
"""


def _version() -> str:
    try:
        return version("byoa-router")
    except PackageNotFoundError:  # pragma: no cover - run from a tree never installed
        return "unknown"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option's value, given at any level: the last one given wins."""
    if value is not None and param.name is not None:
        ctx.find_root().meta[f"byoa.{param.name}"] = value
    return value


def global_options() -> list[click.Parameter]:
    """The options every group and command takes (so `byoa status -u URL` works as
    `byoa -u URL status` does); values land in the root context's `meta`."""
    return [
        click.Option(
            ["-u", "--redis-url"],
            metavar="URL",
            expose_value=False,
            callback=_remember,
            help="Redis URL, redis[s]://[[user]:password@]host[:port][/db] "
            f"(default: ${REDIS_URL_ENV}, else redis://127.0.0.1:6379/0).",
        ),
        click.Option(
            ["--config"],
            type=click.Path(exists=True, dir_okay=False),
            expose_value=False,
            callback=_remember,
            help=f"TOML settings file (also ${CONFIG_ENV}); BYOA_* variables override it.",
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            expose_value=False,
            callback=_remember,
            help="Log level (default: INFO).",
        ),
    ]


def _start(ctx: click.Context) -> None:
    """Once a command is chosen and its options parsed: logging, and a warning naming
    each BYOA_* variable that is no setting (a typo would be silently ignored)."""
    meta = ctx.find_root().meta
    if meta.get("byoa.started"):
        return
    meta["byoa.started"] = True
    level = str(meta.get("byoa.log_level") or "INFO").upper()
    handler = logging.StreamHandler()  # stderr, as basicConfig's; a log line quoting a
    # backend's message or a prompt cannot act on the terminal (terminal.VisibleFormatter)
    handler.setFormatter(VisibleFormatter("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for line in warnings(os.environ):
        _say(line, err=True)


def _settings(ctx: click.Context) -> Settings:
    """The settings, made at the first use (after every option is parsed): environment
    and file, with `--redis-url` over both."""
    root = ctx.find_root()
    obj = root.ensure_object(dict)
    if "settings" not in obj:
        config, url = root.meta.get("byoa.config"), root.meta.get("byoa.redis_url")
        if config:
            os.environ[CONFIG_ENV] = config  # rq job processes read the same settings
        if url:
            os.environ[REDIS_URL_ENV] = url
        try:
            obj["settings"] = Settings(**({"redis_url": url} if url else {}))
        except ValidationError as e:  # field names and reasons only: values may be secrets
            raise click.ClickException(f"bad configuration: {_errors(e)}") from None
        except (OSError, ValueError) as e:
            raise click.ClickException(f"bad configuration: {visible(str(e))}") from None
    settings: Settings = obj["settings"]
    return settings


def _router(ctx: click.Context) -> Router:
    obj = ctx.find_root().ensure_object(dict)
    if "router" not in obj:
        obj["router"] = Router(_settings(ctx))
    router: Router = obj["router"]
    return router


def _error_line(e: ByoaError) -> None:
    _say(f"error: {e.code}: {visible(e.message)}", err=True)


class ByoaCommand(click.Command):
    """A command that takes the global options too, and starts as `_start` says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options())

    def invoke(self, ctx: click.Context) -> Any:
        _start(ctx)
        return super().invoke(ctx)


class ByoaGroup(click.Group):
    """Every command's errors as `error: code: message` (exit 1), never a traceback; its
    commands and groups take the global options too."""

    command_class = ByoaCommand
    group_class = type  # subgroups are ByoaGroups

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options())

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ByoaError as e:
            _error_line(e)
            sys.exit(EXIT_ERROR)
        except RedisError as e:  # the message names host and port, never the password
            _say(f"error: redis_unreachable: {type(e).__name__}: {visible(str(e))}", err=True)
            sys.exit(EXIT_ERROR)


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


def choice(values: type[StrEnum] | tuple[str, ...]) -> click.Choice[str]:
    """A choice among an enum's values (or these), whatever the case given (`--plan Pro`)."""
    names = [str(v) for v in values]
    return click.Choice(names, case_sensitive=False)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


@click.group(
    "byoa",
    cls=ByoaGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
)
@click.version_option(
    _version(), "-V", "--version", prog_name="byoa", message="%(prog)s %(version)s"
)
def main() -> None:
    """byoa-router: route image tasks across bring-your-own Midjourney accounts."""


def _where(router: Router) -> str:
    """The Redis and key prefix a process works on (never a credential)."""
    from router.presence import redis_address, redis_url_shown

    return f"{redis_url_shown(redis_address(router.redis))} (prefix {router.keys.prefix})"


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

    router = _router(ctx)
    logging.getLogger(__name__).info("worker on %s", _where(router))
    run_worker(router, burst=burst, name=name)


@main.command()
@click.option("--owner", required=True, help="The owner whose accounts run it.")
@click.option(
    "--type",
    "task_type",
    default="imagine",
    show_default=True,
    type=choice(TaskType),
    help="What to run; imagine, describe, blend, shorten and video start from nothing, the "
    "rest are children of --parent.",
)
@click.option(
    "--prompt",
    default="",
    help="The prompt; a --fast, --relax or --turbo in it asks for that mode.",
)
@click.option(
    "--mode",
    type=choice(Mode),
    default=None,
    help="The mode asked for; wins over the prompt's flag (default: the flag, else relax). "
    "Children take their parent's.",
)
@click.option(
    "--parent",
    "parent_id",
    default=None,
    help="The task a child acts on (its account runs the child).",
)
@click.option(
    "--index",
    type=click.IntRange(1, 4),
    default=None,
    help="Which image of the parent's grid a child acts on, 1 to 4 (U1-U4, V1-V4); a video "
    "child's clip.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="URL",
    help="An image, a URL or base64 (a data URL): describe's, a video's start image; "
    "repeat it for a blend's 2 to 5.",
)
@click.option("--end-image", default=None, metavar="URL", help="A video's end image.")
@click.option(
    "--motion",
    type=choice(MOTIONS),
    default=None,
    help="How much a video moves (video, animate, video_extend; default low).",
)
@click.option(
    "--batch-size",
    type=click.Choice([str(n) for n in BATCH_SIZES]),
    default=None,
    help="Clips a video job makes (video, animate, video_extend; default 4).",
)
@click.option(
    "--video-type",
    type=choice(("sd", "hd")),
    default=None,
    help="SD (480p) or HD (720p: fast only, not on Basic) video (video, animate, "
    "video_extend; default sd, an extend its video's).",
)
@click.option("--loop", is_flag=True, help="A video that ends on its start image.")
@click.option(
    "--dimensions",
    type=choice(DIMENSIONS),
    default=None,
    help="A blend's shape (default square).",
)
@click.option("--id", "task_id", default=None, help="Your own id: retries are idempotent.")
@click.option("--webhook", default=None, help="URL to POST the task's record to when it ends.")
@click.option(
    "--webhook-secret-env",
    default=None,
    help="Name of an environment variable holding the webhook's secret.",
)
@click.option("--webhook-progress", is_flag=True, help="Also POST when the task starts.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the task ends, saying each change of its status on stderr.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Seconds to --wait at most (then exit {EXIT_WAIT_TIMEOUT}; the task goes on).",
)
@_json_option
@click.pass_context
def submit(
    ctx: click.Context,
    owner: str,
    task_type: str,
    prompt: str,
    mode: str | None,
    parent_id: str | None,
    index: int | None,
    images: tuple[str, ...],
    end_image: str | None,
    motion: str | None,
    batch_size: str | None,
    video_type: str | None,
    loop: bool,
    dimensions: str | None,
    task_id: str | None,
    webhook: str | None,
    webhook_secret_env: str | None,
    webhook_progress: bool,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a task and print its record (exit 3 if it failed)."""
    from router.client import Client

    client = Client(_settings(ctx), _router(ctx).redis)
    hook: dict[str, Any] | None = None
    if webhook is not None:
        secret = _secret_from_env(webhook_secret_env, InvalidTask)
        hook = {"endpoint": webhook, "secret": secret, "progress": webhook_progress}
    elif webhook_secret_env or webhook_progress:
        raise InvalidTask("--webhook-secret-env and --webhook-progress need --webhook")
    if index is not None and TaskType(task_type) not in CHILD_TYPES:
        raise InvalidTask(f"--index is for a child task (upscale, variation...), not {task_type}")
    given = {
        "--image": list(images) or None,
        "--end-image": end_image,
        "--motion": motion,
        "--batch-size": int(batch_size) if batch_size else None,
        "--video-type": video_type,
        "--loop": loop or None,
        "--dimensions": dimensions.upper() if dimensions else None,
    }
    input_ = _job_input(TaskType(task_type), given)
    if index is not None:
        input_["index"] = index
    task = client.submit(
        owner,
        prompt,
        task_type=task_type,
        mode=mode,
        parent_id=parent_id,
        id=task_id,
        input=input_ or None,
        webhook=hook,
    )
    if wait:
        try:
            task = client.wait(task.id, timeout, progress=None if as_json else _progress)
        except WaitTimedOut as e:
            _print_task(client.get(task.id) or task, as_json)
            _error_line(e)
            sys.exit(EXIT_WAIT_TIMEOUT)
    _print_task(task, as_json)
    if task.status == "failed":
        sys.exit(EXIT_TASK_FAILED)


VIDEO_JOBS = frozenset({TaskType.VIDEO, TaskType.ANIMATE, TaskType.VIDEO_EXTEND})
JOB_OPTIONS: dict[str, tuple[str, frozenset[TaskType]]] = {
    "--image": ("image", frozenset({TaskType.DESCRIBE, TaskType.BLEND, TaskType.VIDEO})),
    "--end-image": ("end_image", frozenset({TaskType.VIDEO})),
    "--loop": ("loop", frozenset({TaskType.VIDEO})),
    "--motion": ("motion", VIDEO_JOBS),
    "--batch-size": ("batch_size", VIDEO_JOBS),
    "--video-type": ("video_type", VIDEO_JOBS),
    "--dimensions": ("dimensions", frozenset({TaskType.BLEND})),
}
"""`submit`'s job options: the input field each sets (router.job_inputs), and the task
types that take it."""


def _job_input(task_type: TaskType, given: dict[str, Any]) -> dict[str, Any]:
    """The input `submit`'s job options give; an option the type does not take is
    refused (invalid_task), as `--index` is for a top-level task. A describe's one image
    is `image` if it is a URL, else `base64`; a blend's are `images`."""
    input_: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        field, types = JOB_OPTIONS[option]
        if task_type not in types:
            takers = ", ".join(sorted(t.value for t in types))
            raise InvalidTask(f"{option} is for {takers}, not {task_type}")
        input_[field] = value
    images = input_.pop("image", None)
    if task_type is TaskType.BLEND and images:
        input_["images"] = images
    elif images:
        if len(images) > 1:
            raise InvalidTask(f"{task_type} takes one --image")
        url = images[0].startswith(("http://", "https://"))
        input_["image" if url or task_type is not TaskType.DESCRIBE else "base64"] = images[0]
    return input_


def _progress(task: Task) -> None:
    """One line on stderr per change `--wait` sees: `<time>  <id>  <status> ...`."""
    said = [now_iso(), task.id, task.status.value]
    if task.account_id and task.status is not TaskStatus.QUEUED:
        said.append(f"on {task.account_id}")
    if task.effective_mode:
        said.append(
            f"({task.effective_mode}"
            + (f", {task.fallback_reason})" if task.fallback_reason else ")")
        )
    if task.error:
        said.append(f"{task.error.code}: {task.error.message}")
    _say("  ".join(visible(p) for p in said), err=True)


def _print_task(task: Task, as_json: bool) -> None:
    if as_json:
        _echo_json(task.public())
        return
    for k, v in task.public().items():
        if v not in (None, {}, ""):
            _say(f"{k:16} {json.dumps(v) if isinstance(v, dict) else visible(str(v))}")


@main.command("task")
@click.argument("task_id")
@_json_option
@click.pass_context
def show_task(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Print a task's record."""
    task = _router(ctx).tasks.get(task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id}")
    _print_task(task, as_json)


@main.command("tasks")
@click.option("--owner", default=None, help="Only this owner's tasks (default: every owner's).")
@click.option("--status", type=choice(TaskStatus), default=None, help="Only tasks in this status.")
@click.option("--type", "task_type", type=choice(TaskType), default=None, help="Only this type.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=20,
    show_default=True,
    help="Most tasks listed.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Matching tasks skipped first (the next page: --offset of the last plus --limit).",
)
@_json_option
@click.pass_context
def list_tasks(
    ctx: click.Context,
    owner: str | None,
    status: str | None,
    task_type: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List tasks, newest first (records expire after BYOA_TASK_TTL_SECONDS)."""
    which = TaskFilter(
        owner,
        TaskStatus(status) if status else None,
        TaskType(task_type) if task_type else None,
    )
    page = TaskList(_router(ctx).tasks).page(which, limit, offset)
    if as_json:
        _echo_json([t.public() for t in page.tasks])
        return
    _say(render_tasks(page.tasks))
    if page.more:
        _say(f"(more: --offset {offset + limit})", err=True)
    if page.truncated:
        _say("(the listing stopped early: give --owner, --status or --type)", err=True)


@main.command()
@click.argument("task_id")
@_json_option
@click.pass_context
def cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel a task (a running one ends cancelled when its job returns); a task that
    has ended already is an error (task_finished: nothing to cancel)."""
    router = _router(ctx)
    before = router.tasks.get(task_id)
    if before is None:
        raise UnknownTask(f"no task {task_id}")
    if before.status.terminal:
        raise NothingToCancel(f"nothing to cancel: task {task_id} is already {before.status}")
    task = router.cancel(task_id)
    if task is None:  # expired in between
        raise UnknownTask(f"no task {task_id}")
    if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):  # it ended in between
        raise NothingToCancel(f"nothing to cancel: task {task_id} is already {task.status}")
    _print_task(task, as_json)


@main.command()
@_json_option
@click.option(
    "--watch", is_flag=True, help="Redraw until Ctrl-C (for when Grafana is not at hand)."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Seconds between redraws.",
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: bool, interval: float) -> None:
    """Print the Redis read, the live routers, workers and API processes, the pool, the
    waiting lines per owner and the backlogs."""
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
            _say(f"{now_iso()}  every {interval:g} s, Ctrl-C to stop\n{frame}")
            time.sleep(interval)


@main.command("dead-letters")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Most dead letters listed, newest first.",
)
@_json_option
@click.pass_context
def dead_letters(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the newest dead letters (messages that could not become tasks): when, why,
    and the start of the message (--json: all of it)."""
    router = _router(ctx)
    raws = router.redis.lrange(router.keys.dead_letters, 0, limit - 1)
    entries = [dead_letter(text(raw)) for raw in raws]
    if as_json:
        _echo_json(entries)
        return
    _say(render_dead_letters(entries))


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
@click.option("--owner", "owner", required=True, help="The owner whose tasks it runs.")
@click.option("--plan", required=True, type=choice(Plan), help="Its Midjourney plan.")
@click.option(
    "--setting",
    type=choice(Setting),
    default="fast",
    show_default=True,
    help="Its own mode setting (Midjourney's /fast or /relax).",
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
    type=choice(BACKEND_SERVERS),
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
    type=choice(Plan),
    default=None,
    help="A new plan: its limits (unless given here), its fast hours from the next renewal.",
)
@click.option(
    "--fast-hours",
    type=float,
    default=None,
    help="Fast hours left (a top-up flips an exhausted account back to fast).",
)
@click.option(
    "--setting", type=choice(Setting), default=None, help="Its own mode setting (fast, relax)."
)
@click.option(
    "--enable/--disable",
    "enabled",
    default=None,
    help="Into rotation (ends a driver's attention episode), or out of it.",
)
@click.option("--fast-limit", type=int, default=None, help="Concurrent fast jobs at most.")
@click.option("--relax-limit", type=int, default=None, help="Concurrent relax jobs at most.")
@click.option("--backend-url", default=None, help="Base URL of the account's backend.")
@click.option(
    "--backend-server",
    type=choice(BACKEND_SERVERS),
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
@click.option("--owner", default=None, help="Only this owner's accounts.")
@_json_option
@click.pass_context
def accounts_list(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """List accounts (credentials are never shown; times in ISO 8601, UTC)."""
    views = [v.public() for v in _router(ctx).pool.accounts(owner)]
    if as_json:
        _echo_json(views)
        return
    _say(render_accounts(views))


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
@_json_option
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
@click.option("--owner", required=True, help="The owner whose tasks the key submits.")
@click.option("--name", default="", help="A label to tell keys apart.")
@click.option("--rate", type=float, default=None, help="Most requests a second (default: none).")
@_json_option
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
@click.option("--owner", default=None, help="Only this owner's keys.")
@_json_option
@click.pass_context
def keys_list(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """List keys (never the keys themselves, nor their hashes)."""
    records = _api_keys(ctx).list(owner)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in records])
        return
    _say(render_keys(records))


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Refuse a key from now on (by its id, as `keys list` shows it)."""
    _api_keys(ctx).revoke(key_id)
    _say(f"revoked {key_id}")


@main.command()
@click.option("--tasks", "n_tasks", default=40, show_default=True, help="Parent tasks submitted.")
@click.option("--workers", "n_workers", default=6, show_default=True, help="Worker processes.")
@click.option(
    "--accounts-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The pool (default: the example pool that comes with byoa, "
    "config/accounts.example.toml in its source).",
)
@click.pass_context
def demo(ctx: click.Context, n_tasks: int, n_workers: int, accounts_file: str | None) -> None:
    """Run a router, workers and a demo pool on this machine; show what ran where."""
    from router.demo import run_demo

    run_demo(_settings(ctx), n_tasks=n_tasks, n_workers=n_workers, accounts_file=accounts_file)
