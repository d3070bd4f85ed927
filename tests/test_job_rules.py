"""The plan rules per job type, end to end through the scripts: relax video only on plans
with relax video (Pro, Mega), HD video fast only and not on Basic, a video limit per
account, children inheriting their parent's account, mode and resolution, and no task
waiting for what only some accounts give blocking the tasks behind it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router
from router.costs import MAX_ESTIMATE_MS, CostFactors
from router.errors import TaskRejected
from router.models import TaskStatus, TaskType
from router.settings import Settings
from router.tasks import Task

AddAccount = Callable[..., None]
Drain = Callable[[], None]
IMAGE = "https://example.com/start.png"


def video(client: Client, owner: str, mode: str, **input: Any) -> Task:
    return client.submit(
        owner, "a wave", task_type=TaskType.VIDEO, mode=mode, input={"image": IMAGE, **input}
    )


def failed(task: Task, code: str) -> None:
    assert task.status is TaskStatus.FAILED and task.error is not None, task
    assert task.error.code == code, task.error


def test_relax_video_runs_on_pro_and_mega_only(client: Client, add_account: AddAccount) -> None:
    add_account("a-std", "alice", "standard")
    failed(video(client, "alice", "relax"), "no_relax_video_account")
    add_account("a-pro", "alice", "pro")
    task = video(client, "alice", "relax")
    assert (task.account_id, task.effective_mode) == ("a-pro", "relax")
    image = client.submit("alice", "a cat", mode="relax")
    assert image.account_id in ("a-std", "a-pro")


def test_hd_video_runs_fast_only_never_on_basic_and_never_falls_back(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-basic", "alice", "basic")
    failed(video(client, "alice", "fast", video_type="hd"), "plan_disallows_job")  # Basic: no HD
    add_account("a-std", "alice", "standard")
    hd = video(client, "alice", "fast", video_type="hd")
    assert (hd.account_id, hd.effective_mode) == ("a-std", "fast")
    assert hd.input.get("video_type") == "hd"
    failed(video(client, "alice", "relax", video_type="hd"), "hd_video_fast_only")
    sd = video(client, "alice", "fast")  # SD video runs fast on Basic too
    assert sd.account_id in ("a-basic", "a-std")
    for account in ("a-basic", "a-std"):
        router.apply(router.pool.update(account, fast_hours=0))
    out = video(client, "alice", "turbo", video_type="hd")
    failed(out, "no_fast_hours")  # no fallback to relax
    assert "fast only" in (out.error.message if out.error else "")
    sd_now = video(client, "alice", "fast")  # SD falls back, but relax video needs Pro
    failed(sd_now, "no_relax_video_account")


def test_a_relax_video_waiting_for_a_pro_account_blocks_no_relax_image_behind_it(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", relax_limit=1)
    add_account("a-std", "alice", "standard")
    first = video(client, "alice", "relax")
    assert first.account_id == "a-pro"
    waiting = video(client, "alice", "relax")  # the one relax slot of a-pro is taken
    assert waiting.account_id is None and waiting.status is TaskStatus.QUEUED
    image = client.submit("alice", "a cat", mode="relax")
    assert image.account_id == "a-std"  # placed at once, behind the waiting video


def test_a_video_goes_where_its_fast_time_fits_while_an_account_can_take_it(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-low", "alice", "pro", fast_hours=3 / 60)  # 3 fast minutes left
    add_account("a-high", "alice", "pro", fast_hours=30)
    busy = client.submit("alice", "busy", mode="fast")  # to the most fast time: a-high
    assert busy.account_id == "a-high"  # so a-low is now the least loaded, chosen first
    task = video(client, "alice", "fast")  # eight minutes: only a-high has them
    assert task.account_id == "a-high"
    image = client.submit("alice", "a dog", mode="fast")  # one minute fits a-low
    assert image.account_id == "a-low"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A video limit of one job per Pro account (unconfirmed by Midjourney: a setting)."""
    plans = Settings(plans={"pro": {"video_limit": 1}}).plans
    return settings.model_copy(update={"plans": plans})


def test_the_video_limit_holds_videos_and_no_image_waits_behind_them(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    one = video(client, "alice", "fast")
    two = video(client, "alice", "fast")
    assert one.account_id == "a-pro" and two.account_id is None  # one video at a time
    image = client.submit("alice", "a cat", mode="fast")
    assert image.account_id == "a-pro"  # fast slots are free: the image runs


def test_children_inherit_the_parent_account_mode_and_resolution(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    add_account("a-std", "alice", "standard")
    add_account("a-pro", "bob", "pro")
    relax_image = client.submit("alice", "a cat", mode="relax")
    hd = video(client, "bob", "fast", video_type="hd")
    pro_image = client.submit("bob", "a dog", mode="relax")
    drain()
    animate = client.submit("alice", task_type=TaskType.ANIMATE, parent_id=relax_image.id)
    failed(animate, "plan_disallows_job")  # relax video: not on Standard
    assert animate.error and "relax video" in animate.error.message
    on_pro = client.submit("bob", task_type=TaskType.ANIMATE, parent_id=pro_image.id)
    assert (on_pro.account_id, on_pro.effective_mode) == ("a-pro", "relax")
    extend = client.submit(
        "bob", task_type=TaskType.VIDEO_EXTEND, parent_id=hd.id, input={"index": 1}
    )
    record = router.redis.hmget(router.keys.task("bob", extend.id), "job_class", "estimate_ms")
    assert [v.decode() for v in record] == ["hd_video", str(round(480_000 * 3.2))]
    assert (extend.account_id, extend.effective_mode) == ("a-pro", "fast")
    drain()
    done = client.get(extend.id)
    assert done is not None and done.status is TaskStatus.COMPLETED
    assert done.result is not None and done.result["hd"] is True


def test_a_relax_video_placed_before_its_account_lost_relax_video_fails_clearly(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    task = video(client, "alice", "relax")
    assert task.account_id == "a-pro"
    router.apply(router.pool.update("a-pro", plan="standard"))
    assert router.tasks.start("alice", task.id, task.attempt)[0] is False
    failed(client.get(task.id), "no_relax_video_account")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task_type", "input", "says"),
    [
        (TaskType.VIDEO, {}, "input.image"),
        (TaskType.VIDEO, {"image": IMAGE, "motion": "wild"}, "low or high"),
        (TaskType.VIDEO, {"image": IMAGE, "batch_size": 3}, "1, 2 or 4"),
        (TaskType.VIDEO, {"image": IMAGE, "video_type": "4k"}, "sd or hd"),
        (TaskType.DESCRIBE, {}, "input.image"),
        (TaskType.BLEND, {"images": [IMAGE]}, "2 to 5"),
        (TaskType.BLEND, {"images": [IMAGE, IMAGE], "dimensions": "round"}, "PORTRAIT"),
    ],
)
def test_bad_inputs_of_new_job_types_are_refused_naming_the_field(
    client: Client, add_account: AddAccount, task_type: TaskType, input: Any, says: str
) -> None:
    add_account("a-pro", "alice", "pro")
    with pytest.raises(TaskRejected) as e:
        client.submit("alice", "x", task_type=task_type, input=input)
    assert e.value.code == "invalid_task" and says in e.value.message


def test_describe_blend_and_shorten_run_like_images(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    tasks = [
        client.submit("alice", task_type=TaskType.DESCRIBE, input={"image": IMAGE}),
        client.submit("alice", task_type=TaskType.BLEND, input={"images": [IMAGE, IMAGE]}),
        client.submit("alice", "a very long prompt to cut", task_type=TaskType.SHORTEN),
    ]
    drain()
    for t in tasks:
        done = client.get(t.id)
        assert done is not None and done.status is TaskStatus.COMPLETED, done
    shortened = client.get(tasks[2].id)
    assert shortened is not None and shortened.result and shortened.result["prompts"]


def test_a_videos_upscale_is_a_cheap_clip_of_its_parents_class(
    client: Client, add_account: AddAccount, router: Router, drain: Drain
) -> None:
    """A video's U1-U4 separates one clip (trueai counts it free): it runs in its parent's
    mode on its account, relax included, at an upscale's cost, and stays the parent's class."""
    add_account("a-pro", "alice", "pro")
    relax = video(client, "alice", "relax")
    hd = video(client, "alice", "fast", video_type="hd")
    drain()
    for parent, mode, kind in ((relax, "relax", "video"), (hd, "fast", "hd_video")):
        clip = client.submit(
            "alice", task_type=TaskType.VIDEO_UPSCALE, parent_id=parent.id, input={"index": 2}
        )
        assert (clip.account_id, clip.effective_mode) == ("a-pro", mode)
        record = router.redis.hmget(router.keys.task("alice", clip.id), "job_class", "estimate_ms")
        assert [v.decode() for v in record] == [kind, "20000"]
    drain()


def test_a_child_acts_only_on_the_kind_of_parent_its_button_belongs_to(
    client: Client, add_account: AddAccount, drain: Drain
) -> None:
    """A video's buttons on a video, an image's on an image, nothing on a describe's
    prompts: an extend of an image would run an image job beyond the video rules."""
    add_account("a-std", "alice", "standard")
    add_account("b-pro", "bob", "pro")
    image = client.submit("alice", "a cat", mode="relax")
    clip = video(client, "bob", "fast")
    described = client.submit("bob", task_type=TaskType.DESCRIBE, input={"image": IMAGE})
    drain()
    for owner, child, parent in (
        ("alice", TaskType.VIDEO_EXTEND, image),
        ("alice", TaskType.VIDEO_UPSCALE, image),
        ("bob", TaskType.ANIMATE, clip),
        ("bob", TaskType.UPSCALE_4X, clip),
        ("bob", TaskType.VARIATION, described),
    ):
        task = client.submit(owner, task_type=child, parent_id=parent.id, input={"index": 1})
        failed(task, "parent_kind_mismatch")
    ok = client.submit(
        "bob", task_type=TaskType.VIDEO_EXTEND, parent_id=clip.id, input={"index": 1}
    )
    assert ok.status is TaskStatus.QUEUED and ok.account_id == "b-pro"


def test_one_batch_size_is_estimated_and_sent_however_the_prompt_puts_it(
    client: Client, add_account: AddAccount, router: Router
) -> None:
    add_account("a-pro", "alice", "pro")
    for prompt, given, clips in (
        ("a wave --bs 4", {"batch_size": 1}, 1),
        ("a wave --bs 4 \u2014bs 1", {}, 1),
        ("a wave --bs 2", {}, 2),
    ):
        task = video(client, "alice", "fast", **given) if not prompt else client.submit(
            "alice", prompt, task_type=TaskType.VIDEO, mode="fast",
            input={"image": IMAGE, **given},
        )  # fmt: skip
        record = router.redis.hmget(
            router.keys.task("alice", task.id), "prompt_base", "estimate_ms"
        )
        assert [v.decode() for v in record] == ["a wave", str(120_000 * clips)]
        assert task.input["batch_size"] == clips
    with pytest.raises(TaskRejected, match="1, 2 or 4"):
        video(client, "alice", "fast", batch_size=2.0)  # sent as 2.0, a proxy refuses it


def test_no_estimate_escapes_its_bounds(client: Client, router: Router) -> None:
    s = router.settings
    assert s.estimate_ms(TaskType.IMAGINE, "a cat \u2014q 4") == 240_000  # an em dash reads
    assert s.estimate_ms(TaskType.IMAGINE, "a cat --q 1e-7") == 15_000  # Midjourney's least
    plans = router.settings.model_copy(
        update={
            "costs": CostFactors(hd_video=100),
            "gpu_seconds": {**s.gpu_seconds, TaskType.VIDEO_EXTEND: 3600.0},
        }
    )
    big = Router(plans, router.redis)
    big.pool.add(AccountSpec(id="a-mega", owner="alice", plan="mega"))
    hd = Client(plans, router.redis).submit(
        "alice", "x", task_type=TaskType.VIDEO, mode="fast",
        input={"image": IMAGE, "video_type": "hd"},
    )  # fmt: skip
    big.tasks.start("alice", hd.id, hd.attempt)
    big.tasks.settle("alice", hd.id, hd.attempt, "completed", 1)
    extend = Client(plans, router.redis).submit(
        "alice", task_type=TaskType.VIDEO_EXTEND, parent_id=hd.id, input={"index": 1}
    )
    estimate = router.redis.hget(router.keys.task("alice", extend.id), "estimate_ms")
    assert estimate is not None and int(estimate) == MAX_ESTIMATE_MS  # not x100 past the cap


@pytest.mark.parametrize(
    ("task_type", "prompt", "input", "says"),
    [
        (TaskType.SHORTEN, "--fast", {}, "besides a mode flag"),
        (TaskType.SHORTEN, "\u2014relax", {}, "besides a mode flag"),
        (TaskType.DESCRIBE, "", {"image": "\u0000"}, "input.image"),
    ],
)
def test_inputs_with_nothing_to_work_on_are_refused(
    client: Client, add_account: AddAccount, task_type: TaskType, prompt: str, input: Any, says: str
) -> None:
    add_account("a-pro", "alice", "pro")
    with pytest.raises(TaskRejected) as e:
        client.submit("alice", prompt, task_type=task_type, input=input)
    assert e.value.code == "invalid_task" and says in e.value.message
