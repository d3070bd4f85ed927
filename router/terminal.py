"""Text for an operator's terminal: characters a terminal acts on instead of showing
(ESC and the other C0 and C1 controls, DEL, bidi overrides and other format characters,
line and paragraph separators, lone surrogates) written as visible escapes (`\\x1b`,
`\\u202e`), so a prompt, a backend's message or a dead letter cannot write the clipboard
(OSC 52), retitle the window or reorder what the operator reads."""

from __future__ import annotations

import logging
import unicodedata

HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories escaped: controls, format characters (bidi embeddings, overrides
and isolates, zero-width characters), surrogates, line and paragraph separators."""


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str, keep: str = "") -> str:
    """`text` with every character of a HIDDEN category escaped, but those in `keep`
    (a whole screen keeps its line breaks: `keep="\\n"`). Backslashes are left as they
    are: the result is for reading, not for parsing back (that is what --json is for)."""
    if text.isprintable():  # the usual case: nothing to do (isprintable is stricter)
        return text
    return "".join(
        _escape(c) if c not in keep and unicodedata.category(c) in HIDDEN else c for c in text
    )


class VisibleFormatter(logging.Formatter):
    """Log lines as `visible` text: a backend's message or a task's prompt quoted in a log
    line (a worker's stderr is an operator's terminal too) cannot act on the terminal.
    Line breaks stay, for tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep="\n")
