"""Settings: defaults, `BYOA_` environment, a TOML file, validation, secrets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from router.models import Plan, TaskType
from router.settings import CONFIG_ENV, PlanLimits, Settings, load_settings

DESIGN_PLANS = {
    Plan.BASIC: PlanLimits(
        fast_hours=3.3,
        relax=False,
        fast_limit=3,
        relax_limit=0,
        relax_video=False,
        hd_video=False,
    ),
    Plan.STANDARD: PlanLimits(
        fast_hours=15,
        relax=True,
        fast_limit=3,
        relax_limit=3,
        relax_video=False,
        hd_video=True,
    ),
    Plan.PRO: PlanLimits(
        fast_hours=30,
        relax=True,
        fast_limit=12,
        relax_limit=3,
        relax_video=True,
        hd_video=True,
    ),
    Plan.MEGA: PlanLimits(
        fast_hours=60,
        relax=True,
        fast_limit=12,
        relax_limit=3,
        relax_video=True,
        hd_video=True,
    ),
}
"""The plan table (docs/settings.md), written out independently of router.settings:
relax video on Pro and Mega only, HD video (fast only) on every plan but Basic."""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No BYOA_ variable of the calling shell leaks in; run from an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("BYOA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def write_toml(tmp_path: Path, text: str, name: str = "byoa.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ------------------------------------------------------------------------


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert s.key_prefix == "byoa"
    assert s.driver == "simulated"
    assert s.queue_name == "byoa-tasks"


def test_default_plans_are_the_design_table() -> None:
    assert Settings().plans == DESIGN_PLANS


def test_default_estimates_per_task_type() -> None:
    s = Settings()
    assert s.estimate_ms(TaskType.IMAGINE) == 60_000
    assert s.estimate_ms(TaskType.UPSCALE) == 20_000
    assert set(s.gpu_seconds) == set(TaskType)


# --- environment -------------------------------------------------------------------------


def test_byoa_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOA_REDIS_URL", "redis://cache.internal:6380/3")
    monkeypatch.setenv("BYOA_KEY_PREFIX", "prod_1")
    monkeypatch.setenv("BYOA_MAX_PROMPT_LENGTH", "123")
    monkeypatch.setenv("BYOA_SIM_SPEED", "50")
    s = Settings()
    assert s.redis_url.get_secret_value() == "redis://cache.internal:6380/3"
    assert s.key_prefix == "prod_1"
    assert s.max_prompt_length == 123
    assert s.sim_speed == 50.0


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_PREFIX", "nope")
    assert Settings().key_prefix == "byoa"


def test_nested_environment_variable_overrides_one_field_of_one_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_PLANS__PRO__FAST_LIMIT", "20")
    plans = Settings().plans
    assert plans[Plan.PRO] == DESIGN_PLANS[Plan.PRO].model_copy(update={"fast_limit": 20})
    assert {p: plans[p] for p in plans if p is not Plan.PRO} == {
        p: d for p, d in DESIGN_PLANS.items() if p is not Plan.PRO
    }


def test_nested_environment_variable_overrides_one_sim_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_SIM__JITTER", "0.5")
    sim = Settings().sim
    assert sim.jitter == 0.5
    assert sim.fast_wall_factor == 0.8


def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOA_KEY_PREFIX", "fromenv")
    assert load_settings(key_prefix="fromarg").key_prefix == "fromarg"


# --- TOML file ---------------------------------------------------------------------------


def test_toml_overriding_one_field_of_one_plan_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[plans.standard]\nfast_hours = 20\n")
    s = load_settings(path)
    assert s.plans[Plan.STANDARD] == DESIGN_PLANS[Plan.STANDARD].model_copy(
        update={"fast_hours": 20}
    )
    assert {p: s.plans[p] for p in (Plan.BASIC, Plan.PRO, Plan.MEGA)} == {
        p: DESIGN_PLANS[p] for p in (Plan.BASIC, Plan.PRO, Plan.MEGA)
    }
    assert s.key_prefix == "byoa"


def test_toml_overrides_top_level_fields_and_one_task_estimate(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path, 'key_prefix = "staging"\nmax_prompt_length = 99\n[gpu_seconds]\nupscale = 5\n'
    )
    s = load_settings(path)
    assert s.key_prefix == "staging"
    assert s.max_prompt_length == 99
    assert s.estimate_ms(TaskType.UPSCALE) == 5_000
    assert s.estimate_ms(TaskType.IMAGINE) == 60_000


def test_config_path_may_come_from_byoa_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, 'key_prefix = "viaenv"\n')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert Settings().key_prefix == "viaenv"
    assert load_settings().key_prefix == "viaenv"


def test_environment_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, 'key_prefix = "fromtoml"\nmax_prompt_length = 10\n')
    monkeypatch.setenv("BYOA_KEY_PREFIX", "fromenv")
    s = load_settings(path)
    assert s.key_prefix == "fromenv"
    assert s.max_prompt_length == 10


def test_environment_beats_toml_within_one_plan_and_both_merge_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, "[plans.pro]\nfast_hours = 40\nfast_limit = 6\n")
    monkeypatch.setenv("BYOA_PLANS__PRO__FAST_LIMIT", "20")
    pro = load_settings(path).plans[Plan.PRO]
    assert pro == DESIGN_PLANS[Plan.PRO].model_copy(update={"fast_hours": 40, "fast_limit": 20})


def test_load_settings_restores_byoa_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, 'key_prefix = "one"\n')
    load_settings(path)
    assert CONFIG_ENV not in os.environ
    other = write_toml(tmp_path, 'key_prefix = "two"\n', name="other.toml")
    monkeypatch.setenv(CONFIG_ENV, str(other))
    assert load_settings(path).key_prefix == "one"
    assert os.environ[CONFIG_ENV] == str(other)


def test_a_missing_config_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    assert CONFIG_ENV not in os.environ


def test_a_missing_byoa_config_file_raises_file_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError):
        Settings()


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"plans": {"pro": {"fast_limit": -1}}},
        {"plans": {"basic": {"relax_limit": -3}}},
        {"plans": {"mega": {"fast_hours": -1}}},
        {"plans": {"platinum": {"fast_limit": 1}}},
        {"plans": {"pro": {"fast_limit": 1, "colour": "red"}}},
        {"driver": "midjourney"},
        {"key_prefix": "a b"},
        {"key_prefix": ""},
        {"key_prefix": "-lead"},
        {"key_prefix": "a:b"},
        {"key_prefix": "x" * 33},
        {"max_prompt_length": 0},
        {"max_message_bytes": -1},
        {"sim_speed": 0},
        {"gpu_seconds": {"upscale": 0}},
        {"intake_batch": 10_001},
        {"no_such_setting": 1},
    ],
)
def test_bad_values_raise_validation_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_a_negative_limit_from_the_environment_raises_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_PLANS__STANDARD__RELAX_LIMIT", "-1")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "text",
    [
        "[plans.pro]\nfast_limit = -2\n",
        'driver = "real"\n',
        'key_prefix = "a b"\n',
        "unknown_field = 1\n",
    ],
)
def test_bad_values_in_toml_raise_validation_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationError):
        load_settings(write_toml(tmp_path, text))


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.key_prefix = "other"


# --- secrets -----------------------------------------------------------------------------


def test_redis_url_is_a_secret_that_never_prints_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "rediss://router:hunter2-s3cret@redis.example:6380/0"
    monkeypatch.setenv("BYOA_REDIS_URL", url)
    s = Settings()
    assert isinstance(s.redis_url, SecretStr)
    assert s.redis_url.get_secret_value() == url
    for text in (repr(s.redis_url), str(s.redis_url), repr(s), str(s), s.model_dump_json()):
        assert "hunter2" not in text


# --- bounds: every number a settings file or the environment gives ----------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"plans": {"pro": {"fast_hours": 1e13}}},
        {"plans": {"pro": {"fast_hours": float("inf")}}},
        {"plans": {"pro": {"fast_hours": float("nan")}}},
        {"plans": {"mega": {"fast_limit": 1_000_000}}},
        {"plans": {"standard": {"relax_limit": 2**62}}},
        {"gpu_seconds": {"imagine": float("inf")}},
        {"gpu_seconds": {"upscale": 1e12}},
        {"run_timeout_seconds": {"relax": float("inf")}},
        {"run_timeout_seconds": {"fast": 1e13}},
        {"dispatch_lease_seconds": 1e13},
        {"run_lease_seconds": float("inf")},
        {"task_ttl_seconds": 10**12},
        {"cooldown_seconds": float("nan")},
        {"cooldown_window_seconds": 1e15},
        {"cooldown_after_failures": 10**9},
        {"max_retries": 10**9},
        {"transient_retries": 1000},
        {"transient_backoff_seconds": 1e9},
        {"poll_interval_seconds": float("inf")},
        {"reap_interval_seconds": 1e9},
        {"router_dead_seconds": 1e12},
        {"webhook_timeout_seconds": float("inf")},
        {"webhook_backoff_seconds": 1e12},
        {"sim_speed": float("inf")},
        {"sim": {"relax_wall_factor": 1e300}},
        {"mjproxy": {"request_timeout_seconds": float("inf")}},
        {"mjproxy": {"gpu_per_wall": {"turbo": 1e300}}},
        {"mjproxy": {"account_cache_seconds": float("nan")}},
        {"max_prompt_length": 10**12},
        {"max_message_bytes": 10**12},
        {"dead_letter_max": 10**15},
    ],
)
def test_out_of_bounds_numbers_raise_validation_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BYOA_PLANS__PRO__FAST_HOURS", "inf"),
        ("BYOA_PLANS__PRO__FAST_HOURS", "1e13"),
        ("BYOA_GPU_SECONDS__IMAGINE", "nan"),
        ("BYOA_RUN_LEASE_SECONDS", "Infinity"),
    ],
)
def test_out_of_bounds_numbers_from_the_environment_raise_validation_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_out_of_bounds_numbers_in_toml_raise_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(write_toml(tmp_path, "[plans.basic]\nfast_hours = inf\n"))
    with pytest.raises(ValidationError):
        load_settings(write_toml(tmp_path, "[gpu_seconds]\nupscale = 1e13\n", name="b.toml"))


def test_the_largest_allowed_values_are_accepted() -> None:
    s = Settings(
        plans={"mega": {"fast_hours": 10_000, "fast_limit": 100, "relax_limit": 100}},
        gpu_seconds={"imagine": 3600},
        run_timeout_seconds={"relax": 86_400},
        dispatch_lease_seconds=86_400,
        run_lease_seconds=86_400,
        task_ttl_seconds=366 * 86_400,
    )
    assert s.plans[Plan.MEGA].fast_hours == 10_000
    assert s.estimate_ms(TaskType.IMAGINE) == 3_600_000


def test_a_plan_made_relax_less_gets_no_relax_slots_and_a_contradiction_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`relax = false` alone takes the plan's relax slots too (accounts of it can then be
    added); relax slots on a plan without relax time are refused when settings load."""
    monkeypatch.setenv("BYOA_PLANS__STANDARD__RELAX", "false")
    assert Settings().plans[Plan.STANDARD].relax_limit == 0
    monkeypatch.setenv("BYOA_PLANS__STANDARD__RELAX_LIMIT", "2")
    with pytest.raises(ValueError, match="relax_limit must be 0 on a plan without relax time"):
        Settings()
