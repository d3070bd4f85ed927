"""The cost model: a job's fast-time estimate from its type and parameters, and what it
needs of an account, with the defaults' sources (router.settings, router.costs)."""

from __future__ import annotations

import pytest

from router.costs import MAX_ESTIMATE_MS, CostFactors, batch_size, job_class
from router.models import JobClass, TaskType
from router.settings import Settings

S = Settings()


def ms(task_type: TaskType, prompt: str = "", **input: object) -> int:
    return S.estimate_ms(task_type, prompt, input)


def test_an_image_job_is_about_one_fast_gpu_minute() -> None:
    assert ms(TaskType.IMAGINE, "a cat") == 60_000


@pytest.mark.parametrize(
    ("prompt", "factor"),
    [
        ("a cat --draft", 0.5),
        ("a cat --q 2", 2.0),
        ("a cat --quality 4", 4.0),
        ("a cat --q 8", 4.0),  # bounded by max_quality
        ("a cat --q .5", 0.5),
        ("a cat --oref https://example.com/me.png", 2.0),
        ("a cat --draft --oref https://x.example/o.png --q 2", 2.0),
        ("a cat --ar 16:9", 1.0),  # non-square: no published factor, 1 until measured
        ("a cat --ar 1:1", 1.0),
        ("a cat --qq 3", 1.0),  # not a parameter we know
    ],
)
def test_prompt_parameters_scale_an_image_job(prompt: str, factor: float) -> None:
    assert ms(TaskType.IMAGINE, prompt) == round(60_000 * factor)


def test_a_non_square_factor_from_config_applies_to_non_square_ratios_only() -> None:
    s = Settings(costs=CostFactors(non_square=1.25))
    assert s.estimate_ms(TaskType.IMAGINE, "a cat --ar 3:2") == 75_000
    assert s.estimate_ms(TaskType.IMAGINE, "a cat --aspect 2:2") == 60_000


def test_a_video_batch_of_four_sd_clips_is_about_eight_image_jobs() -> None:
    assert ms(TaskType.VIDEO, "a cat", image="https://x.example/a.png") == 480_000
    assert ms(TaskType.VIDEO, "", image="u", batch_size=1) == 120_000
    assert ms(TaskType.VIDEO, "a cat --bs 2", image="u") == 240_000
    assert ms(TaskType.VIDEO, "", image="u", batch_size=3) == 480_000  # not 1, 2, 4: 4


def test_hd_video_is_about_three_times_sd_and_needs_a_plan_with_hd() -> None:
    assert ms(TaskType.VIDEO, "", image="u", video_type="hd") == 1_536_000
    assert ms(TaskType.VIDEO, "", image="u", video_type="vid_1.1_i2v_720") == 1_536_000
    assert ms(TaskType.VIDEO, "", image="u", video_type="sd") == 480_000
    assert job_class(TaskType.VIDEO, {"video_type": "hd"}) is JobClass.HD_VIDEO
    assert job_class(TaskType.ANIMATE, {}) is JobClass.VIDEO
    assert job_class(TaskType.VIDEO_UPSCALE, {}) is None  # a clip of its parent's class
    assert job_class(TaskType.VIDEO_EXTEND, {}) is None  # its parent's: SUBMIT reads it
    assert job_class(TaskType.UPSCALE_CREATIVE, {}) is JobClass.IMAGE


def test_video_parameters_do_not_apply_image_factors() -> None:
    assert ms(TaskType.VIDEO, "a cat --q 4 --draft", image="u") == 480_000


def test_every_type_has_a_sourced_default_and_children_cost_what_they_do() -> None:
    assert set(S.gpu_seconds) == set(TaskType)
    assert ms(TaskType.UPSCALE) < ms(TaskType.VARIATION) <= ms(TaskType.IMAGINE)
    assert ms(TaskType.UPSCALE_SUBTLE) > ms(TaskType.IMAGINE)
    assert ms(TaskType.DESCRIBE) < ms(TaskType.IMAGINE)
    assert ms(TaskType.VIDEO_UPSCALE) == ms(TaskType.UPSCALE)  # a video's U1-U4: small
    assert ms(TaskType.VIDEO_UPSCALE, video_type="hd") == ms(TaskType.UPSCALE)


def test_no_factors_multiply_past_the_largest_estimate() -> None:
    big = Settings(
        gpu_seconds={TaskType.VIDEO: 3600}, costs=CostFactors(hd_video=100, max_quality=100)
    )
    assert big.estimate_ms(TaskType.VIDEO, "", {"video_type": "hd"}) == MAX_ESTIMATE_MS
    assert batch_size("--bs 1", {"batch_size": "x"}) == 4
