"""Loads the Lua scripts kept in `router/commands/*.lua`, one file per script.

As in BullMQ's `src/commands`, each file starts with a header naming its KEYS and ARGV,
and shared functions live in `commands/includes/`, pulled in by a line
`--- @include "includes/<name>"` (each file at most once per script, where it is first
named). Each include names the includes it needs; each script names the ones it uses, and
luacheck (CI) reports a function or name a script pulls in but never uses. A few includes are
generated here from the Python that owns the values (`generated/keys` from
`router.keys`, `generated/constants` from `router.policy`, `generated/config` per
process), so a key name or a scoring constant is written in one place.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from router.costs import (
    HD_SCALED,
    MAX_ESTIMATE_MS,
    PROMPTS_MADE,
    VIDEO_CHILDREN,
    VIDEO_MADE,
    CostFactors,
)
from router.keys import lua_key_helpers
from router.models import Plan, Strategy, TaskType
from router.policy import (
    CHILD_HEADSTART_US,
    ROOMY_SCAN,
    SCORE_HOURS_SPAN,
    SCORE_LOAD_SCALE,
    UNDATED_SCORE,
    UPGRADE_REASON,
    URGENCY_BUCKET_US,
    US_PER_DAY,
    US_PER_HOUR,
)
from router.settings import DEFAULT_PLANS, MAX_SLOT_LIMIT, PlanLimits

COMMANDS = Path(__file__).with_name("commands")
OWNER_SCRIPTS = (
    "submit",
    "start",
    "settle",
    "cancel",
    "account_write",
    "renew",
    "reap",
    "wake",
)
"""Scripts on one owner's keys, with the convention of `includes/owner.lua`."""
PLAIN_SCRIPTS = (
    "intake_claim",
    "intake_takeover",
    "claim_due",
    "poll_round",
    "outbox_record",
    "rate_limit",
)
"""Scripts with their own KEYS and ARGV, named in their headers."""
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
"""Upper bounds (s) of the wait and run time histograms kept in each owner's stats hash."""

_INCLUDE = re.compile(r'^--- @include "([a-z_/]+)"\n', re.MULTILINE)


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _types(types: frozenset[TaskType]) -> str:
    """A Lua table of task types, each -> true."""
    return "{" + ", ".join(f"{t.value} = true" for t in sorted(types)) + "}"


def _plans(plans: Mapping[Plan, PlanLimits], flag: str) -> str:
    """A Lua table plan -> whether the plan has `flag` (a PlanLimits field)."""
    return ", ".join(f"{p.value} = {str(getattr(plans[p], flag)).lower()}" for p in Plan)


def generated(
    strategy: Strategy = Strategy.RENEWAL,
    clock_key: int | None = None,
    plans: Mapping[Plan, PlanLimits] = DEFAULT_PLANS,
    hd_factor: float = CostFactors().hd_video,
) -> dict[str, str]:
    """The generated includes: key helpers, constants, and this process's configuration
        (how accounts are chosen; which of KEYS is a simulation's virtual clock, read instead
    of TIME; what
        each plan allows, from the configured plan table; what HD costs against SD)."""
    buckets = ", ".join(_string(str(b)) for b in DURATION_BUCKETS)
    return {
        "generated/keys": lua_key_helpers(),
        "generated/constants": (
            f"local LOAD, SPAN = {SCORE_LOAD_SCALE}, {SCORE_HOURS_SPAN}\n"
            f"local URGENCY, UNDATED = {URGENCY_BUCKET_US}, {UNDATED_SCORE}\n"
            f"local HEADSTART = {CHILD_HEADSTART_US}\n"
            f"local MAX_VIDEO = {MAX_SLOT_LIMIT}  -- no video limit of its own\n"
            f"local ROOMY = {ROOMY_SCAN}\n"
            f"local HD_SCALED = {_types(HD_SCALED)}  -- inherited jobs an HD parent makes HD\n"
            f"local MAX_ESTIMATE = {MAX_ESTIMATE_MS}\n"
            "-- Which children act on which parents (`router.costs.parent_fits`).\n"
            f"local VIDEO_MADE = {_types(VIDEO_MADE)}\n"
            f"local PROMPTS_MADE = {_types(PROMPTS_MADE)}\n"
            f"local VIDEO_CHILDREN = {_types(VIDEO_CHILDREN)}\n"
            f"local UPGRADE_REASON = {_string(UPGRADE_REASON)}\n"
            f"local BUCKETS = {{\n  {buckets},\n}}\n"
            f"local US_HOUR, US_DAY, US_MONTH = {US_PER_HOUR}, {US_PER_DAY}, {30 * US_PER_DAY}\n"
        ),
        "generated/config": (
            f"local CLOCK = {f'KEYS[{clock_key}]' if clock_key else 'nil'}"
            "  -- a simulation's virtual clock key, else the Redis clock\n"
            f"local STRATEGY = {_string(Strategy(strategy).value)}"
            "  -- how a task's account is chosen\n"
            "-- What each plan allows, from the configured plan table: relax time (rule 2),\n"
            "-- relax video, HD video; and what an HD video costs against an SD one.\n"
            f"local RELAX_PLANS = {{{_plans(plans, 'relax')}}}\n"
            f"local RELAX_VIDEO_PLANS = {{{_plans(plans, 'relax_video')}}}\n"
            f"local HD_PLANS = {{{_plans(plans, 'hd_video')}}}\n"
            f"local HD_FACTOR = {float(hd_factor)!r}\n"
        ),
    }


def source(name: str, includes: Mapping[str, str] | None = None) -> str:
    """The text of script `name` with its includes expanded (each once)."""
    given = generated() if includes is None else includes
    seen: set[str] = set()

    def expand(path: str) -> str:
        if path in seen:
            return ""
        seen.add(path)
        if path in given:  # names for every script, each of which uses some: not linted
            return f"-- luacheck: push ignore 211\n{given[path]}-- luacheck: pop\n"
        text = (COMMANDS / f"{path}.lua").read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(name)


def main(argv: list[str]) -> int:
    """`python -m router.lua DIR`: write every script, expanded, to DIR (for a Lua linter)."""
    if len(argv) != 1:
        print("usage: python -m router.lua DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNER_SCRIPTS + PLAIN_SCRIPTS:
        (out / f"{name}.lua").write_text(source(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
