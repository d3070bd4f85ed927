"""Validation of incoming tasks (intake messages and client calls) into routable form."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from router.models import CHILD_TYPES, ID_RE, ErrorCode, Ident, Mode, TaskType
from router.modes import resolve_mode, strip_flags
from router.settings import Settings
from router.webhooks import Webhook


class TaskInput(BaseModel):
    """The task's input: prompt and mode, plus any driver parameters (e.g. `index`)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    process_mode: Mode | None = None

    @field_validator("process_mode", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value in ("", None) else value


class TaskMessage(BaseModel):
    """The documented JSON message, also built by the Python client."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: Ident | None = None
    owner: Ident
    task_type: TaskType = TaskType.IMAGINE
    parent_id: Ident | None = None
    input: TaskInput = Field(default_factory=TaskInput)
    webhook: Webhook | None = None


@dataclass(frozen=True)
class NewTask:
    """A task ready for the SUBMIT script; `rejection` makes it a stored failure."""

    id: str
    owner: str
    task_type: str
    requested_mode: str
    parent_id: str
    prompt_base: str
    input_json: str
    estimate_ms: int
    rejection: tuple[ErrorCode, str] | None = None
    webhook: Webhook | None = None
    """Its secret goes to its own key, never into the script's arguments."""

    def argv(self) -> list[str | int]:
        code, message = self.rejection or ("", "")
        hook = self.webhook
        return [
            self.id,
            self.task_type,
            self.requested_mode,
            self.parent_id,
            self.prompt_base,
            self.input_json,
            self.estimate_ms,
            str(code),
            message,
            hook.endpoint if hook else "",
            hook.events if hook else "",
        ]


@dataclass(frozen=True)
class Rejection:
    """A message that cannot become a routable task, with the id and owner if usable."""

    code: ErrorCode
    message: str
    task_id: str | None = None
    owner: str | None = None
    webhook: Webhook | None = None
    """A valid webhook of the message: told of the stored failure."""

    def as_failed_task(self) -> NewTask | None:
        """Stored as a failed task when the caller can look it up by its id, else None."""
        if self.task_id is None or self.owner is None:
            return None
        failure = (self.code, self.message)
        return NewTask(self.task_id, self.owner, "", "", "", "", "{}", 0, failure, self.webhook)


def new_task_id() -> str:
    return uuid.uuid4().hex


def _describe(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'message'}: {x['msg']}" for x in e.errors())


def from_message(
    msg: TaskMessage, settings: Settings, default_id: str | None = None
) -> NewTask | Rejection:
    """Check a parsed message against the rules that need settings; resolve its mode."""
    task_id = msg.id or default_id or new_task_id()
    prompt = msg.input.prompt
    if len(prompt) > settings.max_prompt_length:
        return Rejection(
            ErrorCode.PROMPT_TOO_LONG,
            f"prompt has {len(prompt)} characters; the limit is {settings.max_prompt_length}",
            task_id,
            msg.owner,
            msg.webhook,
        )
    is_child = msg.task_type in CHILD_TYPES
    if is_child and msg.parent_id is None:
        return Rejection(
            ErrorCode.INVALID_TASK,
            f"{msg.task_type} needs parent_id",
            task_id,
            msg.owner,
            msg.webhook,
        )
    if not is_child and msg.parent_id is not None:
        return Rejection(
            ErrorCode.INVALID_TASK,
            f"{msg.task_type} takes no parent_id",
            task_id,
            msg.owner,
            msg.webhook,
        )
    if is_child and msg.input.process_mode is not None:
        return Rejection(
            ErrorCode.INVALID_TASK,
            "child tasks inherit their parent's mode; process_mode is not accepted",
            task_id,
            msg.owner,
            msg.webhook,
        )
    extra = msg.input.model_extra or {}
    requested = "" if is_child else resolve_mode(msg.input.process_mode, prompt).value
    return NewTask(
        id=task_id,
        owner=msg.owner,
        task_type=msg.task_type.value,
        requested_mode=requested,
        parent_id=msg.parent_id or "",
        prompt_base=strip_flags(prompt),
        input_json=json.dumps(extra, separators=(",", ":")),
        estimate_ms=settings.estimate_ms(msg.task_type),
        webhook=msg.webhook,
    )


def parse_message(
    raw: bytes | str, settings: Settings, default_id: str | None = None
) -> NewTask | Rejection:
    """An intake message as a routable task, or why it cannot be one.

    `default_id` is the id a message without one gets (else a random one).
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as e:
            return Rejection(ErrorCode.INVALID_JSON, f"not valid UTF-8 text: {e.reason}")
    if len(raw) > settings.max_message_bytes:
        return Rejection(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message has {len(raw)} bytes; the limit is {settings.max_message_bytes}",
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        return Rejection(ErrorCode.INVALID_JSON, f"not valid JSON: {type(e).__name__}: {e}")
    return check_message(data, settings, default_id)


def check_message(
    data: Any, settings: Settings, default_id: str | None = None
) -> NewTask | Rejection:
    """A decoded message (from JSON or the client) as a routable task, or why not."""
    if not isinstance(data, dict):
        return Rejection(ErrorCode.INVALID_TASK, "a task message must be a JSON object")
    try:
        msg = TaskMessage.model_validate(data)
    except ValidationError as e:
        task_id, owner = data.get("id"), data.get("owner")
        usable = all(isinstance(x, str) and ID_RE.fullmatch(x) for x in (task_id, owner))
        code = ErrorCode.INVALID_TASK
        if any(x["loc"] == ("task_type",) for x in e.errors()):
            code = ErrorCode.UNKNOWN_TASK_TYPE
        if not usable:
            return Rejection(code, _describe(e))
        return Rejection(code, _describe(e), task_id, owner, _valid_webhook(data.get("webhook")))
    return from_message(msg, settings, default_id)


def _valid_webhook(value: Any) -> Webhook | None:
    """The message's webhook if it is valid on its own (to report another error to it)."""
    try:
        return None if value is None else Webhook.model_validate(value)
    except ValidationError:
        return None
