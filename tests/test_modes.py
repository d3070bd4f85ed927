"""Mode resolution (docs/rules.md, "Mode of a new task") and the prompt the account sees."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.client import Client
from router.core import Router
from router.daemon import IntakeDaemon
from router.models import Mode
from router.modes import prompt_flag, prompt_flags, resolve_mode, strip_flags, with_flag

FLAG_OF = {None: "", Mode.RELAX: "--relax", Mode.FAST: "--fast", Mode.TURBO: "--turbo"}


# --- the mode table of docs/rules.md --------------------------------------------------


@pytest.mark.parametrize(
    ("process_mode", "flag", "expected"),
    [
        (None, Mode.RELAX, Mode.RELAX),
        (None, Mode.FAST, Mode.FAST),
        (None, None, Mode.RELAX),
        (Mode.FAST, Mode.RELAX, Mode.FAST),
        (Mode.RELAX, Mode.FAST, Mode.RELAX),
        (Mode.TURBO, None, Mode.TURBO),
        (Mode.TURBO, Mode.RELAX, Mode.TURBO),
        (Mode.TURBO, Mode.FAST, Mode.TURBO),
        (Mode.TURBO, Mode.TURBO, Mode.TURBO),
    ],
)
def test_resolve_mode_follows_the_design_table(
    process_mode: Mode | None, flag: Mode | None, expected: Mode
) -> None:
    prompt = f"a red fox {FLAG_OF[flag]} --ar 16:9"
    assert resolve_mode(process_mode, prompt) is expected


@pytest.mark.parametrize("process_mode", list(Mode))
@pytest.mark.parametrize("flag", [None, *Mode])
def test_process_mode_always_wins_over_the_flag(process_mode: Mode, flag: Mode | None) -> None:
    assert resolve_mode(process_mode, f"a cat {FLAG_OF[flag]}") is process_mode


def test_turbo_flag_without_process_mode_resolves_to_turbo() -> None:
    assert resolve_mode(None, "a cat --turbo") is Mode.TURBO


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("a --FAST", Mode.FAST), ("a --Relax", Mode.RELAX), ("--TuRbO a", Mode.TURBO)],
)
def test_flags_are_case_insensitive(prompt: str, expected: Mode) -> None:
    assert resolve_mode(None, prompt) is expected
    assert prompt_flags(prompt) == [expected]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a --fast b --relax", Mode.RELAX),
        ("--relax --turbo c --fast", Mode.FAST),
        ("--turbo --fast --turbo", Mode.TURBO),
    ],
)
def test_the_last_flag_wins(prompt: str, expected: Mode) -> None:
    assert prompt_flag(prompt) is expected
    assert resolve_mode(None, prompt) is expected


@pytest.mark.parametrize(
    "prompt",
    [
        "a --fastest cat",
        "x--fast",
        "a --fast. b",
        "a --fast:1",
        "---fast",
        "--fast--relax",
        "\u2014\u2014fast",
        "-\u2014fast",
        "\u2014-fast",
        "a\u2014fast",
        "\u2014fastest",
        "\u2015fast",
        "\u2212\u2212fast",
        "-fast",
    ],
)
def test_words_that_only_look_like_flags_are_not_flags(prompt: str) -> None:
    assert prompt_flags(prompt) == []
    assert resolve_mode(None, prompt) is Mode.RELAX
    assert strip_flags(prompt) == " ".join(prompt.split())


@pytest.mark.parametrize("prompt", ["--fast", "a\t--fast", "a\n--fast\nb", "a --fast  "])
def test_flags_are_found_between_any_white_space(prompt: str) -> None:
    assert prompt_flags(prompt) == [Mode.FAST]


def test_a_unicode_look_alike_of_a_flag_is_not_a_flag() -> None:
    assert prompt_flags("a --fa\u017ft") == []


# --- em and en dash flags (issue 11, defect 15) -------------------------------------------
# Phones and word processors turn `--` into an em dash (U+2014), or an en dash (U+2013), and
# Midjourney is widely reported to read either as `--`. Whether or not it does, the account
# must never see a mode flag the router did not choose: a single em or en dash before a mode
# word is a flag, read and stripped like `--`.

DASHES = ["\u2014", "\u2013"]


@pytest.mark.parametrize("dash", DASHES)
@pytest.mark.parametrize("mode", list(Mode))
def test_an_em_or_en_dash_flag_is_read_like_two_hyphens(dash: str, mode: Mode) -> None:
    prompt = f"a red fox {dash}{mode.value.upper()} --ar 16:9"
    assert prompt_flags(prompt) == [mode]
    assert resolve_mode(None, prompt) is mode
    assert strip_flags(prompt) == "a red fox --ar 16:9"


@pytest.mark.parametrize("dash", DASHES)
def test_the_last_flag_wins_whatever_its_dashes(dash: str) -> None:
    assert prompt_flags(f"a {dash}fast b --relax c {dash}turbo") == [
        Mode.FAST,
        Mode.RELAX,
        Mode.TURBO,
    ]
    assert resolve_mode(None, f"a --relax {dash}fast") is Mode.FAST
    assert resolve_mode(Mode.RELAX, f"a {dash}fast") is Mode.RELAX


def test_the_sent_prompt_of_an_em_dash_flag_and_another_mode_has_one_flag() -> None:
    sent = with_flag(strip_flags("a red fox \u2014fast"), Mode.RELAX)
    assert sent == "a red fox --relax"
    assert prompt_flags(sent) == [Mode.RELAX]


def test_an_em_dash_flag_through_the_client_reaches_the_account_as_one_flag(
    client: Client, add_account: Callable[..., None], drain: Callable[[], None]
) -> None:
    add_account("a-pro", "alice", "pro")
    task = client.submit("alice", "a red fox \u2014fast", mode="relax")
    assert task.requested_mode == "relax"
    assert task.prompt == "a red fox --relax"
    flagged = client.submit("alice", "a red fox \u2013turbo")
    assert (flagged.requested_mode, flagged.prompt) == ("turbo", "a red fox --turbo")
    drain()  # the simulated account refuses a prompt whose flags are not exactly its mode's
    for t in (task, flagged):
        done = client.get(t.id)
        assert done is not None and done.status == "completed", done


def test_an_em_dash_flag_through_the_intake_list_is_read_and_stripped(
    router: Router, add_account: Callable[..., None]
) -> None:
    add_account("a-pro", "alice", "pro")
    message = {"id": "em-1", "owner": "alice", "input": {"prompt": "a red fox \u2014fast"}}
    router.redis.lpush(router.keys.intake, json.dumps(message))
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    task = router.tasks.get("em-1")
    assert task is not None and task.requested_mode == "fast"
    assert task.prompt == "a red fox --fast"


# --- strip_flags and with_flag -----------------------------------------------------------


def test_strip_flags_removes_every_flag_and_keeps_other_parameters() -> None:
    prompt = "  a cat --fast  --ar 16:9\t--RELAX \n on a mat --turbo --fastest --v 6 "
    assert strip_flags(prompt) == "a cat --ar 16:9 on a mat --fastest --v 6"


def test_strip_flags_of_a_prompt_made_only_of_flags_is_empty() -> None:
    assert strip_flags(" --fast --relax\t--turbo ") == ""


@pytest.mark.parametrize("mode", list(Mode))
def test_with_flag_on_an_empty_base_is_just_the_flag(mode: Mode) -> None:
    assert with_flag("", mode) == f"--{mode.value}"


@pytest.mark.parametrize("mode", list(Mode))
def test_with_flag_appends_exactly_the_chosen_flag(mode: Mode) -> None:
    sent = with_flag(strip_flags("a cat --fast --ar 2:3 --relax"), mode)
    assert sent == f"a cat --ar 2:3 --{mode.value}"
    assert prompt_flags(sent) == [mode]


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda ups: "".join(c.upper() if up else c for c, up in zip(word, ups, strict=True))
    )


FLAGS = st.tuples(
    st.sampled_from(["--", "\u2014", "\u2013"]),
    st.sampled_from([m.value for m in Mode]).flatmap(_cased),
).map("".join)
LOOK_ALIKES = st.sampled_from(
    [
        "--fastest",
        "x--fast",
        "---relax",
        "--turbo--fast",
        "--ar 16:9",
        "--",
        "-",
        "--v 6",
        "\u2014\u2014fast",
        "\u2014-relax",
        "x\u2014turbo",
        "\u2014",
    ]
)
FRAGMENTS = st.one_of(st.text(max_size=8), FLAGS, LOOK_ALIKES)
SEPARATORS = st.sampled_from(["", " ", "  ", "\t", "\n", "\u3000"])


@st.composite
def prompts(draw: st.DrawFn) -> str:
    """Text that may contain flags, look-alikes and odd white space, glued or spaced."""
    parts = draw(st.lists(st.tuples(FRAGMENTS, SEPARATORS), max_size=12))
    return "".join(fragment + sep for fragment, sep in parts)


@given(prompts(), st.sampled_from(list(Mode)))
def test_the_sent_prompt_carries_exactly_one_flag_the_chosen_mode(prompt: str, mode: Mode) -> None:
    sent = with_flag(strip_flags(prompt), mode)
    assert prompt_flags(sent) == [mode]
    assert resolve_mode(None, sent) is mode


@given(prompts())
def test_strip_flags_leaves_no_flag_is_idempotent_and_folds_white_space(prompt: str) -> None:
    base = strip_flags(prompt)
    assert prompt_flags(base) == []
    assert strip_flags(base) == base
    assert base == base.strip()
    assert "  " not in base
    assert not any(c.isspace() and c != " " for c in base)


@given(prompts(), st.sampled_from(list(Mode)))
def test_stripping_the_sent_prompt_gives_back_the_base(prompt: str, mode: Mode) -> None:
    base = strip_flags(prompt)
    assert strip_flags(with_flag(base, mode)) == base


WORDS = st.from_regex(r"[a-z0-9:.]{1,8}", fullmatch=True)


@given(st.lists(st.one_of(WORDS, FLAGS), max_size=10))
def test_flags_in_a_spaced_prompt_are_found_in_order_and_the_last_wins(parts: list[str]) -> None:
    prompt = " ".join(parts)
    flags = [Mode(p.lstrip("-\u2014\u2013").lower()) for p in parts if p[0] in "-\u2014\u2013"]
    assert prompt_flags(prompt) == flags
    assert resolve_mode(None, prompt) is (flags[-1] if flags else Mode.RELAX)
    assert strip_flags(prompt) == " ".join(p for p in parts if p[0] not in "-\u2014\u2013")
