"""`BYOA_*` environment variables that are no setting: a typo (`BYOA_REDIS_ULR`) is
otherwise silently ignored, and the process talks to another Redis than meant."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from router.settings import CONFIG_ENV, Settings

PREFIX = "BYOA_"
NOT_SETTINGS = frozenset(
    {
        CONFIG_ENV,
        "BYOA_TEST_REDIS_URL",  # the test suite's Redis
        "BYOA_BENCH_REDIS_URL",  # the benchmarks' Redis
        "BYOA_FUZZ_EXAMPLES",  # the test suite's example counts and steps
        "BYOA_STATEFUL_EXAMPLES",
        "BYOA_STATEFUL_STEPS",
        "BYOA_STATEFUL_CHECK",
    }
)
"""Variables the project reads that are not `Settings` fields."""


def setting_names() -> list[str]:
    """Every `Settings` field as its environment variable (`BYOA_REDIS_URL`)."""
    return [f"{PREFIX}{name.upper()}" for name in Settings.model_fields]


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(name, the known name it most looks like, if any) for each `BYOA_*` variable that
    names no setting. Names are matched as pydantic-settings matches them: whatever the
    case, and a nested one (`BYOA_SIM__JITTER`) by its first part (the nested model
    refuses an unknown rest itself)."""
    known = set(setting_names())
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in NOT_SETTINGS:
            continue
        if upper.partition("__")[0] in known:
            continue
        close = difflib.get_close_matches(upper, sorted(known | NOT_SETTINGS), n=1, cutoff=0.8)
        found.append((name, close[0] if close else None))
    return found


def warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per unknown variable, naming it (never its value: it may be a secret)."""
    lines = []
    for name, close in unknown_variables(environ):
        hint = f" (did you mean {close}?)" if close else ""
        lines.append(f"warning: {name} is not a byoa setting and is ignored{hint}")
    return lines
