"""The Python client refuses what cannot become a task with TaskRejected, never a crash."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from router.client import Client
from router.errors import TaskRejected
from router.webhooks import Webhook

AddAccount = Callable[..., None]


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("prompt", "input_", "says"),
    [
        ("a \ud800 fox", None, "surrogate"),
        ("a fox", {"note": "\udfff"}, "surrogate"),
        ("a fox", {"\ud83d": 1}, "surrogate"),
        ("a fox", {"x": deep(1000)}, "nested deeper"),
        ("a fox", {"seed": math.nan}, "finite"),
        ("a fox", {"seed": math.inf}, "finite"),
        ("a fox", {"seed": -math.inf}, "finite"),
        ("a fox", {"seed": 10**5000}, "whole number"),
        ("a fox", {"seed": {1, 2}}, "not a JSON value"),
        ("a fox", {"seed": b"bytes"}, "not a JSON value"),
        ("a fox", {"seed": {("a", 1): 2}}, "key"),
    ],
)
def test_input_json_cannot_carry_is_rejected_not_raised(
    client: Client, add_account: AddAccount, prompt: str, input_: dict[str, Any] | None, says: str
) -> None:
    add_account("a-pro", "alice", "pro")
    with pytest.raises(TaskRejected) as rejected:
        client.submit("alice", prompt, id="poison", input=input_)
    assert rejected.value.code == "invalid_task"
    assert says in rejected.value.message, rejected.value.message
    assert client.get("poison") is None


def test_ordinary_input_and_a_webhook_object_still_go_through(
    client: Client, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    hook = Webhook.model_validate({"endpoint": "https://example.com/h", "secret": "s3"})
    given = {"seed": 2**63 - 1, "weights": [0.5, -1e300, True, None], "opts": {"a": "b"}}
    task = client.submit("alice", "a fox é 🦊", id="fine", input=given, webhook=hook)
    assert task.status == "queued" and task.account_id == "a-pro"
    assert task.input == given
    assert task.webhook_endpoint == "https://example.com/h"
