"""`byoa submit` for every job type: `--image` (repeated for a blend), `--end-image`,
`--motion`, `--batch-size`, `--video-type`, `--loop` and `--dimensions` become the task's
input in the core's names, each refused for a type that takes none; run to their end on
the simulated pool."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import Result

Cli = Callable[..., Result]
IMAGE = "https://example.com/a.png"
B64 = "data:image/png;base64,iVBORw0KGgo="


def submitted(cli: Cli, *args: str, code: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        cli("submit", "--owner", "alice", *args, "--json", code=code).stdout
    )
    return record


def test_submit_takes_each_job_types_inputs_and_runs_it(
    cli: Cli, drain: Callable[[], None]
) -> None:
    cli("accounts", "add", "a-pro", "--owner", "alice", "--plan", "pro")
    link = submitted(cli, "--type", "describe", "--image", IMAGE, "--id", "d1")
    assert link["input"]["image"] == IMAGE
    data = submitted(cli, "--type", "describe", "--image", B64, "--id", "d2")
    assert data["input"]["base64"] == B64 and "image" not in data["input"]
    blend = submitted(
        cli,
        "--type",
        "blend",
        "--image",
        IMAGE,
        "--image",
        B64,
        "--dimensions",
        "landscape",
        "--id",
        "b1",
    )
    assert (blend["input"]["images"], blend["input"]["dimensions"]) == ([IMAGE, B64], "LANDSCAPE")
    short = submitted(cli, "--type", "shorten", "--prompt", "a long prompt", "--id", "s1")
    assert short["task_type"] == "shorten"
    args = ["--type", "video", "--prompt", "a wave", "--image", IMAGE, "--end-image", B64]
    video = submitted(
        cli,
        *args,
        "--motion",
        "HIGH",
        "--batch-size",
        "2",
        "--video-type",
        "hd",
        "--loop",
        "--mode",
        "fast",
        "--id",
        "v1",
    )
    assert {k: video["input"][k] for k in ("image", "end_image", "motion", "batch_size")} == {
        "image": IMAGE,
        "end_image": B64,
        "motion": "high",
        "batch_size": 2,
    }
    assert (video["input"]["video_type"], video["input"]["loop"]) == ("hd", True)
    drain()
    for task_id in ("d1", "d2", "b1", "s1", "v1"):
        assert json.loads(cli("task", task_id, "--json").stdout)["status"] == "completed"
    extend = submitted(
        cli,
        "--type",
        "video_extend",
        "--parent",
        "v1",
        "--index",
        "2",
        "--motion",
        "low",
        "--batch-size",
        "1",
        "--id",
        "e1",
    )
    assert extend["input"] == {"index": 2, "motion": "low", "batch_size": 1}
    drain()
    assert json.loads(cli("task", "e1", "--json").stdout)["status"] == "completed"


def test_a_job_option_of_another_type_is_refused(cli: Cli) -> None:
    refusals = [
        ("--type", "imagine", "--prompt", "x", "--image", IMAGE),
        ("--type", "imagine", "--prompt", "x", "--motion", "low"),
        ("--type", "describe", "--image", IMAGE, "--image", IMAGE),
        ("--type", "video", "--image", IMAGE, "--image", IMAGE),
        ("--type", "blend", "--image", IMAGE, "--image", IMAGE, "--loop"),
        ("--type", "describe", "--image", IMAGE, "--dimensions", "square"),
        ("--type", "upscale", "--parent", "p1", "--index", "1", "--video-type", "hd"),
    ]
    for args in refusals:
        out = cli("submit", "--owner", "alice", *args, code=1).output
        assert "invalid_task" in out, (args, out)
    for args in (
        ("--batch-size", "3"),
        ("--motion", "medium"),
        ("--video-type", "4k"),
        ("--dimensions", "wide"),
    ):
        cli("submit", "--owner", "alice", "--type", "video", *args, code=2)
    help_text = cli("submit", "--help").stdout
    for option in ("--image", "--end-image", "--motion", "--batch-size", "--video-type", "--loop"):
        assert option in help_text, option
