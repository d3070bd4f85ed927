"""Validation of incoming tasks (intake messages and client calls) into routable form."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from router import webhooks
from router.costs import VIDEO_TYPES, batch_size_of, job_class
from router.job_inputs import input_problem
from router.models import CHILD_TYPES, ID_RE, ErrorCode, Ident, JobClass, Mode, TaskType
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
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)
    """Names this submission's staged webhook secret: SUBMIT keeps it only if it creates
    the task, so a retry (even in the same batch) never gives a task another's secret."""
    job_class: str = JobClass.IMAGE.value
    """What it needs of an account (`router.costs.job_class`); '': its parent's."""

    @property
    def has_secret(self) -> bool:
        return self.webhook is not None and self.webhook.secret is not None

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
            self.nonce if self.has_secret else "",
            self.job_class,
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


MAX_NESTING = 32
"""Deepest nesting of objects and arrays in a message (the message itself is level 1):
deeper is refused before anything that recurses (validation, `json.dumps`) walks it."""
MAX_INTEGER = 2**63 - 1
"""Largest whole number (in magnitude) a message may carry: every consumer reads 64 bits."""
MAX_ERROR_MESSAGE = 2000
"""Characters of a rejection's message that are kept (many bad fields make a long one)."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')
"""A JSON string (to its end if it is never closed: linear, whatever the text) or a bracket."""
_NOT_PLAIN = re.compile(r'[\s"\\.;:\[\]]')
"""Characters that make a key quoted in an error (it could be read as part of the path)."""


def new_task_id() -> str:
    return uuid.uuid4().hex


def _short(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE:
        return message
    return message[: MAX_ERROR_MESSAGE - 1] + "…"


def _describe(e: ValidationError) -> str:
    """The errors, each at its field; keys a sender made up are quoted (no raw newlines)."""
    return _short(
        "; ".join(
            f"{'.'.join(_loc(p) for p in x['loc']) or 'message'}: {x['msg']}" for x in e.errors()
        )
    )


def _loc(part: str | int) -> str:
    return _key_name(part) if isinstance(part, str) else str(part)


def _key_name(key: str) -> str:
    """A key as it is quoted in an error: plain keys as they are, others JSON-escaped (so a
    lone surrogate or a control character in a key never reaches Redis or a log raw)."""
    plain = 0 < len(key) <= 40 and key.isprintable() and not _NOT_PLAIN.search(key)
    return key if plain else json.dumps(key[:40])


def _where(path: str) -> str:
    return path[:200] or "the message"


def json_problem(data: Any) -> str | None:
    """Why `data` cannot travel as JSON text through Redis to every consumer, or None.

    Checked without recursion: nesting depth, strings and keys that are not Unicode text
    (lone surrogates, which UTF-8 cannot encode), keys that are not strings, numbers that
    are not finite (NaN, Infinity, 1e999) or whole numbers beyond 64 bits, and values that
    are not JSON at all (a set, bytes). A `Webhook` or `SecretStr` counts as JSON: the
    webhook's own validation checks it.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if value is None or isinstance(value, bool | Webhook | SecretStr):
            continue
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return (
                    f"{_where(path)} holds a lone surrogate (\\ud800 to \\udfff): not Unicode text"
                )
        elif isinstance(value, int):
            if abs(value) > MAX_INTEGER:
                return f"{_where(path)} is a whole number beyond ±{MAX_INTEGER}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{_where(path)} is not a finite number (NaN, Infinity or beyond ±1.8e308)"
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                return f"{_where(path)} is nested deeper than {MAX_NESTING} levels"
            if isinstance(value, list):
                for i in range(len(value) - 1, -1, -1):
                    stack.append((value[i], f"{path}[{i}]", depth + 1))
                continue
            items = list(value.items())
            for key, _ in items:
                if not isinstance(key, str):
                    return f"{_where(path)} has a key that is not a string"
                if _SURROGATE.search(key):
                    return f"{_where(path)} has a key with a lone surrogate: not Unicode text"
            for key, item in reversed(items):
                stack.append(
                    (item, f"{path}.{_key_name(key)}" if path else _key_name(key), depth + 1)
                )
        else:
            return f"{_where(path)} is a {type(value).__name__}, not a JSON value"
    return None


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
    extra: Mapping[str, Any] = msg.input.model_extra or {}
    if msg.task_type in VIDEO_TYPES:  # one batch size: the one estimated and sent
        prompt, extra = batch_size_of(prompt, extra)
    problem = input_problem(msg.task_type, extra, prompt)
    if problem:
        return Rejection(ErrorCode.INVALID_TASK, problem, task_id, msg.owner, msg.webhook)
    requested = "" if is_child else resolve_mode(msg.input.process_mode, prompt).value
    kind = job_class(msg.task_type, extra)
    return NewTask(
        id=task_id,
        owner=msg.owner,
        task_type=msg.task_type.value,
        requested_mode=requested,
        parent_id=msg.parent_id or "",
        prompt_base=strip_flags(prompt),
        input_json=json.dumps(dict(extra), separators=(",", ":"), allow_nan=False),
        estimate_ms=settings.estimate_ms(msg.task_type, prompt, extra),
        webhook=msg.webhook,
        job_class=kind.value if kind else "",
    )


def parse_message(
    raw: bytes | str, settings: Settings, default_id: str | None = None
) -> NewTask | Rejection:
    """An intake message as a routable task, or why it cannot be one.

    The message is UTF-8 JSON text (a leading byte order mark is ignored, as RFC 8259
    allows) that I-JSON (RFC 7493) accepts: no duplicate keys, no lone surrogates, finite
    numbers. Anything else is `invalid_json`, stored as a failed task when its `id` and
    `owner` are usable and unambiguous. `default_id` is the id a message without one gets
    (else a random one).
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
        text = raw.decode()
    except UnicodeDecodeError as e:
        return Rejection(
            ErrorCode.INVALID_JSON, f"not UTF-8 text: byte {e.start} is {raw[e.start]:#04x}"
        )
    duplicates: list[tuple[str, dict[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) < len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    duplicates.append((key, obj))
                seen.add(key)
        return obj

    text, too_deep = _prune(text.removeprefix("\ufeff"))
    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        return Rejection(ErrorCode.INVALID_JSON, f"not valid JSON: {type(e).__name__}: {e}")
    if too_deep:
        return _rejection(ErrorCode.INVALID_JSON, too_deep, data, settings)
    if duplicates:
        key = duplicates[0][0]
        twice = {k for k, obj in duplicates if obj is data}
        message = (
            f"the key {json.dumps(key[:40])} appears twice in one object: which value counts"
            " would be a guess"
        )
        return _rejection(ErrorCode.INVALID_JSON, message, data, settings, twice)
    problem = json_problem(data)
    if problem:
        return _rejection(ErrorCode.INVALID_JSON, problem, data, settings)
    return _checked(data, settings, default_id)


def _prune(text: str) -> tuple[str, str]:
    """JSON text with every array or object nested deeper than MAX_NESTING replaced by
    `null`, and why ('' if nothing was): so the message's id and owner can still be read,
    whatever the depth, without handing a recursive parser the deep part."""
    depth, deepest, cut_from = 0, 0, -1
    cuts: list[tuple[int, int]] = []
    for m in _STRING_OR_BRACKET.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if depth == MAX_NESTING + 1:
                cut_from = m.start()
        elif c in "]}":
            if depth == MAX_NESTING + 1 and cut_from >= 0:
                cuts.append((cut_from, m.end()))
                cut_from = -1
            depth -= 1
    if deepest <= MAX_NESTING:
        return text, ""
    if cut_from >= 0:
        cuts.append((cut_from, len(text)))  # never closed: invalid, json.loads says where
    kept, at = [], 0
    for start, end in cuts:
        kept += [text[at:start], "null"]
        at = end
    kept.append(text[at:])
    return "".join(kept), f"the message is nested deeper than {MAX_NESTING} levels"


def check_message(
    data: Any, settings: Settings, default_id: str | None = None
) -> NewTask | Rejection:
    """A decoded message (from JSON or the client) as a routable task, or why not."""
    problem = json_problem(data)
    if problem:
        return _rejection(ErrorCode.INVALID_TASK, problem, data, settings)
    return _checked(data, settings, default_id)


def _checked(data: Any, settings: Settings, default_id: str | None) -> NewTask | Rejection:
    """A message already known to be plain JSON data, validated."""
    if not isinstance(data, dict):
        return Rejection(ErrorCode.INVALID_TASK, "a task message must be a JSON object")
    try:
        msg = TaskMessage.model_validate(data, context=webhooks.context(settings))
    except ValidationError as e:
        code = ErrorCode.INVALID_TASK
        if any(x["loc"] == ("task_type",) for x in e.errors()):
            code = ErrorCode.UNKNOWN_TASK_TYPE
        return _rejection(code, _describe(e), data, settings)
    return from_message(msg, settings, default_id)


def _rejection(
    code: ErrorCode,
    message: str,
    data: Any,
    settings: Settings,
    ambiguous: Set[str] = frozenset(),
) -> Rejection:
    """A rejection with the message's id, owner and webhook where they are usable (then it is
    stored as a failed task and its webhook told); `ambiguous`: top-level keys given twice."""
    if not isinstance(data, dict) or {"id", "owner"} & ambiguous:
        return Rejection(code, message)
    task_id, owner = data.get("id"), data.get("owner")
    if not all(isinstance(x, str) and ID_RE.fullmatch(x) for x in (task_id, owner)):
        return Rejection(code, message)
    hook = None if "webhook" in ambiguous else _valid_webhook(data.get("webhook"), settings)
    return Rejection(code, message, str(task_id), str(owner), hook)


def _valid_webhook(value: Any, settings: Settings) -> Webhook | None:
    """The message's webhook if it is valid on its own (to report another error to it)."""
    if json_problem(value) is not None:
        return None
    try:
        return (
            None
            if value is None
            else Webhook.model_validate(value, context=webhooks.context(settings))
        )
    except ValidationError:
        return None
