"""Mode resolution: `process_mode` against the in-prompt flag, and the prompt the account sees."""

from __future__ import annotations

import re

from router.models import Mode

_FLAG_RE = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)((?ai:relax|fast|turbo))(?!\S)")
"""A mode flag: `--`, or one em dash (U+2014) or en dash (U+2013), then the mode in ASCII
letters of any case (Unicode look-alikes of a letter do not match), as a word of its own.

Phones and word processors turn a typed `--` into an em dash (or an en dash), and
Midjourney is widely reported to read `\u2014fast` as `--fast` (not confirmed here). Either
way the account must never see a mode flag the router did not choose, so a single em or
en dash counts as `--`: such a flag is read (it asks for that mode) and stripped like any
other. Longer or mixed runs of dashes (`---fast`, `\u2014-fast`, `\u2014\u2014fast`) are
not flags, as `---fast` is not, and stay in the prompt."""
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
