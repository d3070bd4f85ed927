"""Generated bad input: every message ends stored or dead-lettered, nothing crashes or leaks."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from router.accounts import AccountSpec, read_accounts_file
from router.core import Router
from router.daemon import IntakeDaemon
from router.errors import AccountError
from router.models import ID_RE
from router.scripts import text
from router.settings import Settings
from router.status import snapshot

CANARY = "sk-FUZZ-CANARY-0042"
texts = st.text(max_size=30) | st.text(st.characters(categories=["Cs", "Ll", "So"]), max_size=6)
"""Text, sometimes with lone surrogates (which JSON escapes and UTF-8 cannot encode)."""
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.sampled_from(["t1", "t-2", "bad id", "", "x" * 70, "a:b", "ok_3"]) | st.text(max_size=8)
messages = st.fixed_dictionaries(
    {},
    optional={
        "id": ids,
        "owner": st.sampled_from(["alice", "bob", "", "a b"]) | json_values,
        "task_type": st.sampled_from(["imagine", "upscale", "paint", ""]) | json_values,
        "parent_id": ids | json_values,
        "input": st.fixed_dictionaries(
            {},
            optional={
                "prompt": texts | st.just("y" * 600) | json_values,
                "process_mode": st.sampled_from(["", "fast", "relax", "turbo", "warp"]),
                "index": json_values,
            },
        )
        | json_values,
        "extra": json_values,
    },
)
raw_messages = (
    messages.map(lambda m: json.dumps(m).encode())
    | st.binary(max_size=60)
    | json_values.map(lambda v: json.dumps(v).encode())
)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(batch=st.lists(raw_messages, min_size=1, max_size=12))
def test_every_generated_message_is_a_task_or_a_dead_letter(
    router: Router, batch: list[bytes]
) -> None:
    if router.pool.get("fz-1") is None:
        spec = AccountSpec(id="fz-1", owner="alice", plan="pro", credentials=SecretStr(CANARY))
        router.apply(router.pool.add(spec))
    keys = router.keys
    router.redis.delete(keys.dead_letters)
    for raw in batch:
        router.redis.lpush(keys.intake, raw)
    daemon = IntakeDaemon(router)
    claimed = daemon.claim()
    assert len(claimed) == len(batch)
    handled = daemon.handle(claimed)
    assert handled.created + handled.duplicates + handled.dead_letters == len(batch)
    assert router.redis.llen(keys.intake) == router.redis.llen(daemon.processing) == 0
    assert router.redis.llen(keys.dead_letters) == handled.dead_letters
    for entry in router.redis.lrange(keys.dead_letters, 0, -1):
        letter = json.loads(entry)
        assert letter["code"] and letter["message"]
    everything = json.dumps(snapshot(router)) + "".join(
        text(x) for x in router.redis.lrange(keys.dead_letters, 0, -1)
    )
    for key in router.redis.scan_iter(match=f"{keys.prefix}:*task:*"):
        everything += json.dumps({text(k): text(v) for k, v in router.redis.hgetall(key).items()})
    assert CANARY not in everything


accounts_files = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": ids,
            "owner": ids,
            "plan": st.sampled_from(["basic", "pro", "gold", ""]),
            "setting": st.sampled_from(["fast", "relax", "x"]),
            "fast_hours": st.floats(-5, 100, allow_nan=False) | st.text(max_size=3),
            "fast_limit": st.integers(-2, 20),
            "enabled": st.booleans() | st.integers(),
            "credentials": st.just(CANARY),
            "colour": st.text(max_size=3),
        },
    ),
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(accounts=accounts_files, as_json=st.booleans())
def test_generated_accounts_files_load_or_fail_with_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, accounts: list[dict[str, Any]], as_json: bool
) -> None:
    d = tmp_path_factory.mktemp("accounts")
    path = d / ("accounts.json" if as_json else "accounts.toml")
    path.write_text(json.dumps(accounts) if as_json else _toml(accounts))
    try:
        specs = read_accounts_file(path)
    except AccountError as e:
        assert e.code == "invalid_accounts_file" and CANARY not in e.message
        return
    assert len(specs) == len(accounts)
    assert all(CANARY not in repr(s) for s in specs)


def _toml(accounts: list[dict[str, Any]]) -> str:
    out = []
    for a in accounts:
        out.append("[[accounts]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in a.items()]
    text_ = "\n".join(out) + "\n"
    try:
        tomllib.loads(text_)
    except tomllib.TOMLDecodeError:
        return "not = [valid toml\n"
    return text_


@settings(max_examples=60, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "key_prefix",
                "sim_speed",
                "intake_batch",
                "max_prompt_length",
                "driver",
                "plans",
                "run_timeout_seconds",
                "redis_url",
            ]
        ),
        json_values,
        max_size=3,
    )
)
def test_generated_settings_are_accepted_or_rejected_by_validation(
    values: dict[str, Any],
) -> None:
    try:
        accepted = Settings(**values)
    except ValidationError as e:
        assert e.errors()
        return
    assert ID_RE.fullmatch(accepted.key_prefix)
    assert accepted.intake_batch > 0 and accepted.sim_speed > 0
    assert all(t > 0 for t in accepted.run_timeout_seconds.values())
