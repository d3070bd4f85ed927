"""Tasks from the `byoa` command: listing them, a child's image by `--index`, progress
while `submit --wait` waits, its timeout's exit code, `cancel` of a finished task, and
enum values in any case."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from click.testing import Result

from router.core import Router

Cli = Callable[..., Result]


def ids(result: Result) -> list[str]:
    return [t["id"] for t in json.loads(result.stdout)]


def test_tasks_lists_newest_first_by_owner_status_and_type_with_a_limit(cli: Cli) -> None:
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    cli("submit", "--owner", "alice", "--prompt", "one", "--mode", "fast", "--id", "t1")
    cli("submit", "--owner", "alice", "--prompt", "two", "--mode", "fast", "--id", "t2")
    cli("submit", "--owner", "bob", "--prompt", "three", "--id", "t3", code=3)  # no account
    cli("cancel", "t2")
    assert ids(cli("tasks", "--json")) == ["t3", "t2", "t1"]
    assert ids(cli("tasks", "--owner", "alice", "--json")) == ["t2", "t1"]
    assert ids(cli("tasks", "--status", "cancelled", "--json")) == ["t2"]
    assert ids(cli("tasks", "--status", "Failed", "--type", "IMAGINE", "--json")) == ["t3"]
    assert ids(cli("tasks", "--type", "upscale", "--json")) == []
    first = cli("tasks", "--limit", "1")
    assert "(more: --offset 1)" in first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split() == ["task", "owner", "type", "status", "mode", "account", "created"]
    assert lines[2].split()[:6] == ["t3", "bob", "imagine", "failed", "relax", "-"]
    assert lines[2].split()[6].endswith("Z") and len(lines) == 3
    assert ids(cli("tasks", "--limit", "1", "--offset", "1", "--json")) == ["t2"]
    cli("tasks", "--status", "lost", code=2)


def test_enum_values_are_taken_whatever_their_case(cli: Cli, router: Router) -> None:
    cli("accounts", "add", "a1", "--owner", "alice", "--plan", "Pro", "--setting", "FAST")
    cli("accounts", "set", "a1", "--plan", "MEGA", "--setting", "Relax")
    cli("accounts", "set", "a1", "--backend-server", "TrueAI", "--setting", "fast")
    view = router.pool.get("a1")
    assert view is not None and (view.plan, view.setting) == ("mega", "fast")
    assert view.backend_server == "trueai"
    task = json.loads(
        cli("submit", "--owner", "alice", "--type", "Imagine", "--mode", "TURBO", "--json").stdout
    )
    assert (task["task_type"], task["requested_mode"]) == ("imagine", "turbo")
    assert ids(cli("tasks", "--status", "QUEUED", "--json")) == [task["id"]]


def test_index_picks_the_image_of_the_grid_a_child_acts_on(
    cli: Cli, drain: Callable[[], None]
) -> None:
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    cli("submit", "--owner", "alice", "--prompt", "a fox", "--id", "p1")
    drain()
    child = cli(
        "submit",
        "--owner",
        "alice",
        "--type",
        "upscale",
        "--parent",
        "p1",
        "--index",
        "3",
        "--json",
    )
    assert json.loads(child.stdout)["input"]["index"] == 3
    cli("submit", "--owner", "alice", "--type", "upscale", "--parent", "p1", "--index", "5", code=2)
    refused = cli("submit", "--owner", "alice", "--prompt", "x", "--index", "2", code=1)
    assert "error: invalid_task: --index is for a child task" in refused.stderr


def test_submit_wait_says_each_status_change_as_it_happens(
    cli: Cli, env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    args = ("submit", "--owner", "alice", "--prompt", "a fox", "--mode", "fast", "--id", "w1")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "router", *args, "--wait", "--timeout", "60"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    first = waiting.stderr.readline()  # said before any worker runs
    spawn("worker", BYOA_SIM_SPEED="25")  # a fast job then runs about two seconds
    out, rest = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, rest
    changes = [first, *rest.splitlines()]
    assert [line.split()[1:3] for line in changes] == [
        ["w1", "queued"],
        ["w1", "running"],
        ["w1", "completed"],
    ]
    assert "on a-pro  (fast)" in changes[1] and "on a-pro  (fast)" in changes[2]
    assert all(line.split()[0].endswith("Z") for line in changes)
    assert "status           completed" in out  # the final record, as before
    again = cli(*args, "--wait", "--timeout", "60", "--json")  # JSON: the record alone
    assert again.stderr == "" and json.loads(again.stdout)["status"] == "completed"


def test_a_wait_that_times_out_exits_4_and_prints_the_record_so_far(cli: Cli) -> None:
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    args = ("submit", "--owner", "alice", "--prompt", "x", "--id", "slow", "--wait")
    late = cli(*args, "--timeout", "0.3", "--json", code=4)  # no worker runs
    assert json.loads(late.stdout)["status"] == "queued"
    assert late.stderr == "error: wait_timeout: task slow is still queued\n"
    assert "Traceback" not in late.output


def test_cancel_of_a_task_that_has_ended_says_there_is_nothing_to_cancel(cli: Cli) -> None:
    cli("submit", "--owner", "alice", "--prompt", "x", "--id", "f1", code=3)  # no account
    finished = cli("cancel", "f1", code=1)
    assert finished.stdout == ""
    assert finished.stderr == "error: task_finished: nothing to cancel: task f1 is already failed\n"
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    cli("submit", "--owner", "alice", "--prompt", "x", "--id", "q1")
    assert json.loads(cli("cancel", "q1", "--json").stdout)["status"] == "cancelled"
    twice = cli("cancel", "q1", code=1)
    assert "nothing to cancel: task q1 is already cancelled" in twice.stderr
    assert "task_not_found" in cli("cancel", "nope", code=1).stderr
