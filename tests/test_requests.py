"""Validation of intake messages into routable tasks or clear rejections."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.models import CHILD_TYPES, ID_RE, ErrorCode, Mode, TaskType
from router.requests import NewTask, Rejection, check_message, parse_message
from router.settings import Settings

CFG = Settings(max_prompt_length=40, max_message_bytes=600)
"""Small limits so the boundaries are cheap to reach (no Redis: only validation is used)."""


def raw(**fields: Any) -> str:
    return json.dumps(fields)


def parsed(**fields: Any) -> NewTask | Rejection:
    return parse_message(raw(**fields), CFG)


def accepted(**fields: Any) -> NewTask:
    result = parsed(**fields)
    assert isinstance(result, NewTask), result
    assert result.rejection is None
    return result


def rejected(**fields: Any) -> Rejection:
    result = parsed(**fields)
    assert isinstance(result, Rejection), result
    return result


# --- not a task at all: dead letters ------------------------------------------------------


@pytest.mark.parametrize("message", [b"{not json", b"", "{'id': 'a'}", b"\xff\xfe{", "{"])
def test_not_json_is_invalid_json_without_a_task_id(message: bytes | str) -> None:
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.INVALID_JSON
    assert result.task_id is None
    assert result.as_failed_task() is None


@pytest.mark.parametrize("message", ['[{"id": "t1", "owner": "o1"}]', "42", "null", '"imagine"'])
def test_json_that_is_not_an_object_is_invalid_task(message: str) -> None:
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.INVALID_TASK
    assert result.as_failed_task() is None


@pytest.mark.parametrize("data", [[], None, "x", 3])
def test_check_message_rejects_a_non_dict(data: Any) -> None:
    result = check_message(data, CFG)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.INVALID_TASK


def test_a_message_over_max_message_bytes_is_too_large_and_not_stored() -> None:
    message = raw(id="t1", owner="o1", input={"prompt": "x", "pad": "y" * 600})
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.MESSAGE_TOO_LARGE
    assert result.as_failed_task() is None


def test_message_size_is_counted_in_bytes_not_characters() -> None:
    message = raw(id="t1", owner="o1", input={"pad": "é" * 400})
    text = json.dumps(json.loads(message), ensure_ascii=False)
    assert len(text) <= CFG.max_message_bytes < len(text.encode())
    result = parse_message(text, CFG)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.MESSAGE_TOO_LARGE


def test_a_message_of_exactly_max_message_bytes_is_accepted() -> None:
    empty = raw(id="t1", owner="o1", input={"pad": ""})
    message = raw(id="t1", owner="o1", input={"pad": "p" * (CFG.max_message_bytes - len(empty))})
    assert len(message.encode()) == CFG.max_message_bytes
    assert isinstance(parse_message(message.encode(), CFG), NewTask)


# --- rejected but stored as a failed task when the caller can look it up ---------------


def test_unknown_task_type_with_id_and_owner_is_stored_as_failed() -> None:
    result = rejected(id="t1", owner="o1", task_type="paint")
    assert result.code is ErrorCode.UNKNOWN_TASK_TYPE
    assert (result.task_id, result.owner) == ("t1", "o1")
    failed = result.as_failed_task()
    assert failed is not None
    assert (failed.id, failed.owner) == ("t1", "o1")
    assert failed.rejection == (ErrorCode.UNKNOWN_TASK_TYPE, result.message)
    assert failed.argv()[7] == "unknown_task_type"


def test_unknown_task_type_without_id_is_a_dead_letter() -> None:
    result = rejected(owner="o1", task_type="paint")
    assert result.code is ErrorCode.UNKNOWN_TASK_TYPE
    assert result.task_id is None
    assert result.as_failed_task() is None


def test_an_invalid_message_without_owner_is_a_dead_letter() -> None:
    result = rejected(id="t1", input={"prompt": "a cat"})
    assert result.code is ErrorCode.INVALID_TASK
    assert result.as_failed_task() is None


def test_a_prompt_over_the_limit_is_too_long_and_stored_as_failed() -> None:
    result = rejected(id="t1", owner="o1", input={"prompt": "x" * (CFG.max_prompt_length + 1)})
    assert result.code is ErrorCode.PROMPT_TOO_LONG
    failed = result.as_failed_task()
    assert failed is not None
    assert failed.id == "t1"


def test_a_prompt_at_the_limit_is_accepted() -> None:
    task = accepted(owner="o1", input={"prompt": "x" * CFG.max_prompt_length})
    assert task.prompt_base == "x" * CFG.max_prompt_length


@pytest.mark.parametrize("child", sorted(CHILD_TYPES))
def test_a_child_type_without_parent_id_is_invalid(child: TaskType) -> None:
    result = rejected(id="t1", owner="o1", task_type=child.value)
    assert result.code is ErrorCode.INVALID_TASK
    assert "parent_id" in result.message
    assert result.as_failed_task() is not None


def test_imagine_with_parent_id_is_invalid() -> None:
    result = rejected(id="t1", owner="o1", task_type="imagine", parent_id="p1")
    assert result.code is ErrorCode.INVALID_TASK
    assert "parent_id" in result.message


@pytest.mark.parametrize("mode", [m.value for m in Mode])
def test_a_child_with_process_mode_is_invalid(mode: str) -> None:
    result = rejected(
        id="t1", owner="o1", task_type="upscale", parent_id="p1", input={"process_mode": mode}
    )
    assert result.code is ErrorCode.INVALID_TASK
    assert "process_mode" in result.message


def test_an_unknown_top_level_field_is_invalid() -> None:
    result = rejected(id="t1", owner="o1", prompt="a cat")
    assert result.code is ErrorCode.INVALID_TASK
    assert "prompt" in result.message
    assert result.as_failed_task() is not None


@pytest.mark.parametrize("bad_id", ["a:b", "x\n", "", "-lead", "a b", "x" * 65, "é", 7])
def test_an_id_with_bad_characters_is_rejected_and_not_usable(bad_id: Any) -> None:
    result = rejected(id=bad_id, owner="o1", input={"prompt": "a cat"})
    assert result.code is ErrorCode.INVALID_TASK
    assert result.task_id is None
    assert result.as_failed_task() is None


@pytest.mark.parametrize("bad_owner", ["o:1", "o1\n", ""])
def test_an_owner_with_bad_characters_makes_the_rejection_not_usable(bad_owner: str) -> None:
    result = rejected(id="t1", owner=bad_owner, task_type="paint")
    assert result.owner is None
    assert result.as_failed_task() is None


def test_an_unknown_process_mode_is_invalid() -> None:
    result = rejected(id="t1", owner="o1", input={"process_mode": "warp"})
    assert result.code is ErrorCode.INVALID_TASK


# --- accepted ---------------------------------------------------------------------------


def test_a_good_message_becomes_a_new_task() -> None:
    task = accepted(
        id="t-1_a",
        owner="o1",
        task_type="imagine",
        input={"prompt": "a cat --relax --ar 16:9 --FAST", "process_mode": "", "index": 2},
    )
    assert (task.id, task.owner, task.task_type, task.parent_id) == ("t-1_a", "o1", "imagine", "")
    assert task.requested_mode == "fast"
    assert task.prompt_base == "a cat --ar 16:9"
    assert json.loads(task.input_json) == {"index": 2}
    assert task.estimate_ms == CFG.estimate_ms(TaskType.IMAGINE)


def test_process_mode_beats_the_prompt_flag() -> None:
    task = accepted(owner="o1", input={"prompt": "a cat --fast", "process_mode": "turbo"})
    assert task.requested_mode == "turbo"
    assert task.prompt_base == "a cat"


def test_a_message_without_input_is_an_imagine_in_relax() -> None:
    task = accepted(owner="o1")
    assert (task.task_type, task.requested_mode, task.prompt_base) == ("imagine", "relax", "")
    assert json.loads(task.input_json) == {}


def test_a_child_keeps_its_parent_and_extra_input_and_asks_for_no_mode() -> None:
    task = accepted(owner="o1", task_type="upscale", parent_id="p1", input={"index": 2})
    assert (task.task_type, task.parent_id, task.requested_mode) == ("upscale", "p1", "")
    assert json.loads(task.input_json) == {"index": 2}
    assert task.estimate_ms == CFG.estimate_ms(TaskType.UPSCALE)


def test_a_message_without_id_gets_a_generated_valid_id() -> None:
    first = accepted(owner="o1")
    second = accepted(owner="o1")
    assert ID_RE.fullmatch(first.id)
    assert ID_RE.fullmatch(second.id)
    assert first.id != second.id


def test_bytes_and_text_messages_parse_alike() -> None:
    message = raw(id="t1", owner="o1", input={"prompt": "a cat --fast", "index": 1})
    assert parse_message(message, CFG) == parse_message(message.encode(), CFG)


# --- hostile input: parse_message never raises ---------------------------------------


def test_deeply_nested_json_is_a_rejection_not_a_crash() -> None:
    result = parse_message(b"[" * 5000 + b"]" * 5000, Settings(max_message_bytes=20_000))
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.INVALID_JSON


def test_text_with_a_lone_surrogate_is_a_rejection_not_a_crash() -> None:
    result = parse_message('{"owner": "o1", "input": {"prompt": "\ud800"}}', CFG)
    assert isinstance(result, Rejection)


def test_a_unicode_look_alike_flag_in_a_prompt_does_not_crash_parsing() -> None:
    task = accepted(owner="o1", input={"prompt": "a cat --fa\u017ft"})
    assert task.requested_mode == "relax"


# --- generated messages --------------------------------------------------------------------

texts = st.text(max_size=10) | st.text(st.characters(categories=["Cs", "Ll"]), max_size=4)
"""Text, sometimes with lone surrogates."""
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
idents = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,8}", fullmatch=True)
maybe_ids = idents | st.sampled_from(["", "a:b", "x\n", "-x", "x" * 65]) | json_values
task_types = st.sampled_from([t.value for t in TaskType]) | st.text(max_size=8) | json_values
prompt_words = st.sampled_from(
    ["a", "cat", "--fast", "--RELAX", "--turbo", "--ar", "16:9", "x--fast"]
)
prompts_ = st.lists(prompt_words | st.text(max_size=6), max_size=8).map(" ".join) | json_values
inputs = (
    st.fixed_dictionaries(
        {},
        optional={
            "prompt": prompts_,
            "process_mode": st.sampled_from(["", "fast", "relax", "turbo", "FAST", None])
            | json_values,
            "index": json_values,
            "seed": json_values,
        },
    )
    | json_values
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "id": maybe_ids,
        "owner": maybe_ids,
        "task_type": task_types,
        "parent_id": maybe_ids,
        "input": inputs,
        "extra": json_values,
    },
)


def _strict_json(text: str) -> Any:
    """JSON as every consumer reads it: no NaN or Infinity, UTF-8 text."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in stored JSON")

    text.encode()
    return json.loads(text, parse_constant=refuse)


def _check_result(result: NewTask | Rejection) -> None:
    assert isinstance(result, NewTask | Rejection)
    task = result.as_failed_task() if isinstance(result, Rejection) else result
    if task is not None:  # what goes to Redis is UTF-8 text and strict JSON
        for arg in task.argv():
            str(arg).encode()
        _strict_json(task.input_json)
    if isinstance(result, NewTask):
        assert result.rejection is None
        assert ID_RE.fullmatch(result.id)
        assert ID_RE.fullmatch(result.owner)
        assert result.requested_mode in ("", "relax", "fast", "turbo")
        assert (result.requested_mode == "") == (result.task_type in CHILD_TYPES)
        assert (result.parent_id != "") == (result.task_type in CHILD_TYPES)
        assert len(result.prompt_base) <= CFG.max_prompt_length
        assert isinstance(json.loads(result.input_json), dict)
    else:
        assert isinstance(result.code, ErrorCode)
        assert result.message
        if result.task_id is not None:
            assert ID_RE.fullmatch(result.task_id)
        failed = result.as_failed_task()
        assert (failed is None) == (result.task_id is None or result.owner is None)


@given(messages)
def test_generated_messages_always_give_a_task_or_a_rejection(message: dict[str, Any]) -> None:
    _check_result(parse_message(json.dumps(message), CFG))
    raw = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
    _check_result(parse_message(raw, CFG))


@given(json_values)
def test_generated_json_values_always_give_a_task_or_a_rejection(value: Any) -> None:
    _check_result(parse_message(json.dumps(value), CFG))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(message: bytes) -> None:
    _check_result(parse_message(message, CFG))


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(message: str) -> None:
    _check_result(parse_message(message, CFG))


# --- JSON a router cannot carry: I-JSON (RFC 7493) at the wire ----------------------------

WIDE = Settings(max_prompt_length=40, max_message_bytes=1_000_000)


def test_a_leading_byte_order_mark_is_ignored() -> None:
    result = parse_message(b'\xef\xbb\xbf{"id": "t1", "owner": "o1"}', CFG)
    assert isinstance(result, NewTask) and result.id == "t1"


@pytest.mark.parametrize(
    ("fragment", "says"),
    [
        ('"prompt": "a \\ud800"', "input.prompt holds a lone surrogate"),
        ('"prompt": "\\udc00\\ud800"', "lone surrogate"),  # a pair the wrong way round
        ('"\\ud83d": 1', "key with a lone surrogate"),
        ('"seed": 1e999', "input.seed is not a finite number"),
        ('"seed": -1e999', "not a finite number"),
        ('"seed": NaN', "not a finite number"),
        ('"seed": Infinity', "not a finite number"),
        ('"seed": -Infinity', "not a finite number"),
        ('"seed": 9223372036854775808', "whole number beyond"),
        ('"prompt": "a", "prompt": "b"', 'the key "prompt" appears twice'),
        ('"x": ' + "[" * 40 + "]" * 40, "nested deeper than 32 levels"),
        ('"x": ' + "[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        ('"x": ' + "[" * 200_000 + "]" * 200_000, "nested deeper than 32 levels"),
    ],
)
def test_json_a_router_cannot_carry_is_invalid_json_stored_under_its_id(
    fragment: str, says: str
) -> None:
    message = '{"id": "t1", "owner": "o1", "input": {' + fragment + "}}"
    result = parse_message(message, WIDE)
    assert isinstance(result, Rejection), result
    assert result.code is ErrorCode.INVALID_JSON
    assert says in result.message, result.message
    assert (result.task_id, result.owner) == ("t1", "o1")
    failed = result.as_failed_task()
    assert failed is not None and failed.rejection == (ErrorCode.INVALID_JSON, result.message)
    _check_result(result)


@pytest.mark.parametrize(
    "message",
    [
        '{"id": "t1", "id": "t2", "owner": "o1"}',
        '{"id": "t1", "owner": "o1", "owner": "o2"}',
        '{"id": "t1", "owner": "\\ud800"}',
    ],
)
def test_an_ambiguous_or_unreadable_id_or_owner_is_a_dead_letter(message: str) -> None:
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection) and result.code is ErrorCode.INVALID_JSON
    assert result.as_failed_task() is None


def test_a_duplicated_webhook_is_told_nothing() -> None:
    hook = '{"endpoint": "https://example.com/h"}'
    message = f'{{"id": "t1", "owner": "o1", "webhook": {hook}, "webhook": {hook}}}'
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection) and result.task_id == "t1" and result.webhook is None


@pytest.mark.parametrize(
    "message",
    [
        b'{"id": "t1", "owner": "o1", "input": {"prompt": "caf\xe9"}}',  # Latin-1
        b'{"id": "t1", "owner": "o1", "input": {"prompt": "\xed\xa0\x80"}}',  # a surrogate
        '{"id": "t1", "owner": "o1"}'.encode("utf-16"),
    ],
)
def test_bytes_that_are_not_utf8_are_invalid_json_without_an_id(message: bytes) -> None:
    result = parse_message(message, CFG)
    assert isinstance(result, Rejection) and result.code is ErrorCode.INVALID_JSON
    assert "not UTF-8" in result.message and result.as_failed_task() is None


@pytest.mark.parametrize(
    "text",
    ['"\\' * 30_000, '"' + "a" * 60_000, "[" * 60_000, '{"a": "' + '\\"' * 30_000],
)
def test_pathological_text_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    result = parse_message(text, WIDE)
    assert isinstance(result, Rejection) and result.code is ErrorCode.INVALID_JSON
    assert time.perf_counter() - started < 1.0  # quadratic scanning took seconds


@given(st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", ":", ",", "1", "a"]), max_size=80))
def test_bracket_soup_never_raises(parts: list[str]) -> None:
    _check_result(
        parse_message('{"id": "t1", "owner": "o1", "input": ' + "".join(parts) + "}", WIDE)
    )
