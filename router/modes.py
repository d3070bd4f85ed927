"""Mode resolution: `process_mode` against the in-prompt flag, and the prompt the account sees."""

from __future__ import annotations

import re

from router.models import Mode

_FLAG_RE = re.compile(r"(?<!\S)--((?ai:relax|fast|turbo))(?!\S)")
"""A mode flag: ASCII letters in any case (Unicode look-alikes of a letter do not match)."""
_SPACES_RE = re.compile(r"\s+")


def prompt_flags(prompt: str) -> list[Mode]:
    """Every mode flag written in a prompt, in order."""
    return [Mode(f.lower()) for f in _FLAG_RE.findall(prompt)]


def prompt_flag(prompt: str) -> Mode | None:
    """The mode flag a prompt asks for (the last one wins, as on Midjourney), or None."""
    found = prompt_flags(prompt)
    return found[-1] if found else None


def resolve_mode(process_mode: Mode | None, prompt: str) -> Mode:
    """The mode a new task asks for: `process_mode` wins when set, else the flag, else relax."""
    if process_mode is not None:
        return process_mode
    return prompt_flag(prompt) or Mode.RELAX


def strip_flags(prompt: str) -> str:
    """The prompt without any mode flag, white space folded."""
    return _SPACES_RE.sub(" ", _FLAG_RE.sub(" ", prompt)).strip()


def with_flag(base: str, mode: Mode) -> str:
    """The prompt sent to the account: the flag-free prompt plus exactly one flag, `mode`."""
    return f"{base} --{mode.value}" if base else f"--{mode.value}"
