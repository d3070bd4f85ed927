"""The intake list: any language's JSON messages, bad ones stored or dead-lettered."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from router.core import Router
from router.daemon import IntakeDaemon
from router.models import Slot
from router.reaper import Reaper
from router.scripts import text
from router.tasks import Task
from router.webhooks import redact
from tests.conftest import TEST_REDIS_URL, terminal, wait_for

AddAccount = Callable[..., None]


def push(router: Router, *messages: Any) -> None:
    for m in messages:
        raw = m if isinstance(m, bytes) else json.dumps(m).encode()
        router.redis.lpush(router.keys.intake, raw)


def dead_letters(router: Router) -> list[dict[str, Any]]:
    return [json.loads(x) for x in router.redis.lrange(router.keys.dead_letters, 0, -1)]


def tasks_of(router: Router, owner: str) -> list[Task]:
    """Every task record of `owner`, found by its keys (ids the router made included)."""
    found = []
    for key in router.redis.scan_iter(match=router.keys.task(owner, "*"), _type="hash"):
        task = router.tasks.get(text(key).rsplit(":", 1)[1], owner)
        assert task is not None
        found.append(task)
    return found


def test_documented_message_is_routed_and_dispatched(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        {
            "id": "m1",
            "owner": "alice",
            "task_type": "imagine",
            "input": {"prompt": "a fox --fast", "process_mode": ""},
        },
    )
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    task = router.tasks.get("m1")
    assert task is not None and (task.effective_mode, task.account_id) == ("fast", "a-pro")
    assert router.queue.count == 1
    assert router.redis.llen(router.keys.intake) == 0
    assert router.redis.exists(daemon.processing) == 0


def test_messages_are_taken_oldest_first_in_batches(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_limit=1)  # one starts, the rest wait in line
    push(
        router,
        *({"id": f"m{i}", "owner": "alice", "input": {"prompt": "x --fast"}} for i in range(450)),
    )
    daemon = IntakeDaemon(router)
    sizes = []
    while batch := daemon.claim():
        sizes.append(len(batch))
        daemon.handle(batch)
    assert sizes == [200, 200, 50]
    line = router.redis.lrange(router.keys.line("alice", Slot.FAST), 0, -1)
    assert [x.decode() for x in line] == [f"m{i}" for i in range(1, 450)]
    assert router.tasks.get("m0").account_id == "a-pro"  # type: ignore[union-attr]


def test_bad_messages_with_a_usable_id_are_stored_as_failed_tasks(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        {"id": "bad-type", "owner": "alice", "task_type": "paint", "input": {"prompt": "x"}},
        {"id": "too-long", "owner": "alice", "input": {"prompt": "x" * 501}},
        {"id": "no-parent", "owner": "alice", "task_type": "upscale"},
        {"id": "bad-mode", "owner": "alice", "input": {"prompt": "x", "process_mode": "warp"}},
        {"id": "extra", "owner": "alice", "input": {}, "colour": "blue"},
        {"id": "orphan", "owner": "alice", "task_type": "pan", "parent_id": "ghost"},
    )
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    expected = {
        "bad-type": "unknown_task_type",
        "too-long": "prompt_too_long",
        "no-parent": "invalid_task",
        "bad-mode": "invalid_task",
        "extra": "invalid_task",
        "orphan": "parent_not_found",
    }
    for task_id, code in expected.items():
        task = router.tasks.get(task_id)
        assert task is not None and task.status == "failed", task_id
        assert task.error is not None and task.error.code == code, task_id
        assert task.error.message
    assert dead_letters(router) == []


def test_messages_without_a_usable_id_go_to_dead_letters_with_the_reason(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(
        router,
        b"{not json",
        b"\xff\xfe",
        [1, 2, 3],
        {"owner": "alice", "task_type": "paint"},
        {"id": "bad:id", "owner": "alice"},
        b"x" * (router.settings.max_message_bytes + 1),
        {"id": "fine", "owner": "alice", "input": {"prompt": "ok"}},
    )
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    codes = sorted(d["code"] for d in dead_letters(router))
    assert codes == sorted(
        [
            "invalid_json",
            "invalid_json",
            "invalid_task",
            "unknown_task_type",
            "invalid_task",
            "message_too_large",
        ]
    )
    assert all(d["message"] and "at" in d for d in dead_letters(router))
    assert any(d["raw"] == "{not json" for d in dead_letters(router))
    assert router.tasks.get("fine") is not None


def test_id_of_another_owner_is_dead_lettered_not_overwritten(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    add_account("b-pro", "bob", "pro")
    push(router, {"id": "shared", "owner": "alice", "input": {"prompt": "alice's"}})
    push(router, {"id": "shared", "owner": "bob", "input": {"prompt": "bob's"}})
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    task = router.tasks.get("shared")
    assert task is not None and task.owner == "alice" and task.prompt == "alice's --relax"
    assert [d["code"] for d in dead_letters(router)] == ["duplicate_id"]


def test_resubmitting_the_same_message_is_idempotent(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    message = {"id": "once", "owner": "alice", "input": {"prompt": "x", "process_mode": "fast"}}
    push(router, message, message, message)
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).created == 1
    assert router.queue.count == 1


def test_daemon_keeps_running_through_bad_input(
    router: Router, add_account: AddAccount, spawn: Callable[..., object]
) -> None:
    add_account("a-pro", "alice", "pro")
    spawn("run")
    spawn("worker")
    push(
        router,
        b"garbage",
        {"owner": 5},
        {"id": "ok-1", "owner": "alice", "input": {"prompt": "a fox --fast"}},
    )
    push(
        router,
        {"id": "ok-2", "owner": "alice", "input": {"prompt": "a fox", "process_mode": "turbo"}},
    )
    done = wait_for(terminal(router, ["ok-1", "ok-2"]), timeout=60, what="tasks after bad input")
    assert [t.status for t in done] == ["completed", "completed"]
    # A batch's dead letters are written after its tasks are submitted (and so may be after
    # a worker ended them): wait for those too.
    wait_for(lambda: len(dead_letters(router)) == 2, timeout=10, what="the dead letters")


# --- poison messages: what Python's JSON accepts but Redis, Lua or JSON itself cannot take ---

DEEP_INPUT = '{"id": "deep", "owner": "alice", "input": {"x": ' + "[" * 1000 + "]" * 1000 + "}}"
POISON: list[tuple[bytes, str | None]] = [
    # (raw message, the id of the failed task it must become; None: a dead letter)
    (rb'{"id": "surrogate", "owner": "alice", "input": {"prompt": "a \ud800 fox"}}', "surrogate"),
    (rb'{"owner": "alice", "input": {"prompt": "a \udfff fox"}}', None),
    (rb'{"id": "sur-key", "owner": "alice", "input": {"\ud83d": 1}}', "sur-key"),
    (DEEP_INPUT.encode(), "deep"),
    (b'{"id": "huge", "owner": "alice", "input": {"seed": 1e999}}', "huge"),
    (b'{"id": "nan", "owner": "alice", "input": {"seed": NaN}}', "nan"),
    (b'{"id": "inf", "owner": "alice", "input": {"seed": Infinity}}', "inf"),
    (b'{"id": "minus-inf", "owner": "alice", "input": {"seed": -Infinity}}', "minus-inf"),
    (b'{"id": "dup-key", "owner": "alice", "input": {"prompt": "a", "prompt": "b"}}', "dup-key"),
    (b'{"id": "one", "id": "two", "owner": "alice"}', None),  # which id? ambiguous
    (b'{"id": "latin1", "owner": "alice", "input": {"prompt": "caf\xe9"}}', None),
    ('{"id": "utf16", "owner": "alice"}'.encode("utf-16"), None),
]


def test_poison_messages_become_failed_tasks_or_dead_letters_and_the_rest_is_routed(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    good = {"id": "fine", "owner": "alice", "input": {"prompt": "a fox"}}
    push(router, *(raw for raw, _ in POISON), good)
    push(router, b'\xef\xbb\xbf{"id": "bom", "owner": "alice"}')  # RFC 8259: a BOM may be ignored
    daemon = IntakeDaemon(router)
    handled = daemon.handle(daemon.claim())
    stored = [task_id for _, task_id in POISON if task_id]
    assert handled.created == len(stored) + 2
    assert handled.dead_letters == len(POISON) - len(stored)
    for task_id in stored:
        task = router.tasks.get(task_id)
        assert task is not None and task.status == "failed", task_id
        assert task.error is not None and task.error.code == "invalid_json", task_id
        assert task.error.message, task_id
    letters = dead_letters(router)
    assert [d["code"] for d in letters] == ["invalid_json"] * len(letters)
    messages = " | ".join(d["message"] for d in letters)
    assert "appears twice" in messages and "not UTF-8" in messages and "surrogate" in messages
    assert router.tasks.get("one") is None and router.tasks.get("two") is None
    for task_id in ("fine", "bom"):
        task = router.tasks.get(task_id)
        assert task is not None and task.account_id == "a-pro", task_id
    assert router.redis.llen(daemon.processing) == 0


def test_routers_survive_poison_and_route_what_comes_after(
    router: Router, add_account: AddAccount, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    add_account("a-pro", "alice", "pro")
    routers = [spawn("run"), spawn("run")]
    for raw, _ in POISON:
        push(router, raw)
    push(router, {"id": "after", "owner": "alice", "input": {"prompt": "a fox"}})
    wait_for(lambda: router.tasks.get("after"), timeout=30, what="the message after the poison")
    wait_for(lambda: len(dead_letters(router)) == 4, timeout=10, what="the dead letters")
    assert [p.poll() for p in routers] == [None, None]


def test_a_batch_held_by_a_dead_router_does_not_kill_the_router_that_takes_it_over(
    router: Router, add_account: AddAccount, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    add_account("a-pro", "alice", "pro")
    dead = IntakeDaemon(router)
    held = [raw for raw, _ in POISON] + [json.dumps({"id": "held", "owner": "alice"}).encode()]
    for raw in held:
        router.redis.lpush(router.keys.intake, raw)
    assert len(dead.claim()) == len(held)  # claimed and numbered, then the router died
    router.redis.zadd(router.keys.routers, {dead.router_id: 0})
    taker = spawn("run")
    wait_for(lambda: router.tasks.get("held"), timeout=30, what="the held message routed")
    wait_for(lambda: not router.redis.exists(dead.processing), timeout=10, what="takeover")
    # The takeover moves the batch first and handles it after: its tasks are written
    # before its dead letters, so wait for those too.
    wait_for(lambda: len(dead_letters(router)) == 4, timeout=10, what="the dead letters")
    assert taker.poll() is None
    assert router.tasks.get("deep") is not None


def test_a_message_whose_submission_fails_is_dead_lettered_and_the_batch_goes_on(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", relax_limit=10)
    add_account("b-pro", "bob", "pro")
    router.redis.set(router.keys.task("alice", "corrupt"), "not a task record")  # WRONGTYPE
    push(
        router,
        {"owner": "alice", "input": {"prompt": "no id 1"}},
        {"id": "a-before", "owner": "alice"},
        {"id": "corrupt", "owner": "alice"},
        {"id": "a-after", "owner": "alice"},
        {"owner": "alice", "input": {"prompt": "no id 2"}},
        {"id": "b-1", "owner": "bob"},
    )
    daemon = IntakeDaemon(router)
    handled = daemon.handle(daemon.claim())
    # alice's SUBMIT made what came before "corrupt", then failed: tried again one by one,
    # those are duplicates of the tasks the batch made
    assert (handled.created + handled.duplicates, handled.dead_letters) == (5, 1)
    [letter] = dead_letters(router)
    assert letter["code"] == "internal_error" and "WRONGTYPE" in letter["message"]
    assert '"corrupt"' in letter["raw"]
    ids = {text(k) for k in router.redis.scan_iter(match=f"{router.keys.prefix}:id:*")}
    assert len(ids) == 6  # 5 tasks and the corrupt one's claimed id: nothing doubled
    tasks = tasks_of(router, "alice") + tasks_of(router, "bob")
    prompts = sorted(t.prompt for t in tasks if t.id[:2] not in ("a-", "b-"))
    assert prompts == ["no id 1 --relax", "no id 2 --relax"]
    assert all(t.account_id for t in tasks)  # placed at once

    def dispatched() -> set[str]:
        jobs = set(router.queue.job_ids)
        return {t.id for t in tasks if router.rq_job_id(t.owner, t.id, t.attempt) in jobs}

    assert {"a-after", "b-1"} <= dispatched()
    # alice's failed call placed what came before "corrupt" but could not say so: as when a
    # router dies after SUBMIT, their dispatch lease runs out and the reaper dispatches them
    for t in tasks:
        if t.id not in dispatched():
            router.redis.zadd(router.keys.inflight(t.owner), {t.id: 0})
    reaper = Reaper(router)
    reaper.grace = False
    reaper.reap_leases()
    carried = [t for job in router.queue.jobs for (_, t, *_) in job.args[0]]
    assert len(dispatched()) == len(carried) == len(set(carried)) == 5  # each once
    assert router.redis.llen(daemon.processing) == 0


def test_a_raw_message_that_starts_like_a_claim_number_is_its_own_message(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    forged = b'1:{"owner": "alice", "input": {"prompt": "forged"}}'
    push(router, forged, {"owner": "alice", "input": {"prompt": "genuine"}})
    daemon = IntakeDaemon(router)
    handled = daemon.handle(daemon.claim())
    assert (handled.created, handled.duplicates, handled.dead_letters) == (1, 0, 1)
    [letter] = dead_letters(router)
    assert letter["code"] == "invalid_json" and letter["raw"] == forged.decode()
    [task] = tasks_of(router, "alice")
    assert task.prompt == "genuine --relax"


def test_a_claim_number_cannot_be_forged_through_the_blocking_claim(
    router: Router, add_account: AddAccount, prefix: str
) -> None:
    add_account("a-pro", "alice", "pro")
    name = f"{prefix}-blocked"
    own = Router(router.settings, Redis.from_url(TEST_REDIS_URL, client_name=name))
    daemon = IntakeDaemon(own, block_seconds=20)
    claimed: list[list[bytes]] = []
    waiting = threading.Thread(target=lambda: claimed.append(daemon.claim()))
    waiting.start()

    def blocked() -> bool:
        return any(
            c.get("name") == name and c.get("cmd") == "blmove" for c in router.redis.client_list()
        )

    wait_for(blocked, timeout=10, what="the claim to block on the empty intake list")
    push(router, b'7:{"owner": "alice", "input": {"prompt": "forged"}}')
    waiting.join(timeout=20)
    daemon.handle(claimed[0])
    for i in range(8):
        push(router, {"owner": "alice", "input": {"prompt": f"genuine {i}"}})
        daemon.handle(daemon.claim())
    prompts = sorted(t.prompt for t in tasks_of(router, "alice"))
    assert prompts == [f"genuine {i} --relax" for i in range(8)]
    assert [d["code"] for d in dead_letters(router)] == ["invalid_json"]


# --- webhook secrets ----------------------------------------------------------------------

CANARY = "whsec-CANARY-7731"
HOOK = {"endpoint": "https://example.com/hook", "secret": CANARY}


def test_no_dead_letter_echoes_a_webhook_secret_wherever_it_sits(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    task = {"owner": "alice", "input": {"prompt": "x"}, "webhook": HOOK}
    push(
        router,
        [task],  # an array
        {"task": task},  # wrapped
        {"owner": "alice", "colour": {"deep": [{"webhook": HOOK}]}},  # deeper
        {"owner": 5, "webhook": {"endpoint": "https://e.com/", "SECRET": CANARY}},  # any case
        {"owner": 5, "password": CANARY, "api_key": CANARY, "auth_token": [CANARY]},
        json.dumps(json.dumps(task)).encode(),  # encoded twice: a JSON string of JSON
        ('{"owner": "alice", "webhook": {"secret": "' + CANARY + '"').encode(),  # cut short
        ("{'owner': 'alice', 'webhook': {'secret': '" + CANARY + "'}}").encode(),  # a repr
        ('{"owner": "alice", "webhook": {"se\\u0063ret": "' + CANARY + '"} x').encode(),
        ('{"owner": 5, "webhook": {"secret": "' + CANARY + '"}}').encode("utf-16"),
        ('secret="' + CANARY + '"\xff').encode("latin-1"),
    )
    daemon = IntakeDaemon(router)
    assert daemon.handle(daemon.claim()).dead_letters == 11
    letters = dead_letters(router)
    assert len(letters) == 11
    for letter in letters:
        assert CANARY not in json.dumps(letter), letter
        assert CANARY not in letter["raw"], letter
    kept = " ".join(d["raw"] for d in letters)
    assert kept.count("**********") >= 11  # each says where something was hidden
    assert '"endpoint": "https://example.com/hook"' in kept  # the rest is still there to read


def test_a_retry_cannot_add_a_secret_to_a_task_that_had_none(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    push(router, {"id": "h1", "owner": "alice", "webhook": {"endpoint": "https://a.example/"}})
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    retry_hook = {"endpoint": "https://b.example/", "secret": CANARY}
    push(router, {"id": "h1", "owner": "alice", "webhook": retry_hook})
    assert daemon.handle(daemon.claim()).duplicates == 1
    task = router.tasks.get("h1")
    assert task is not None and task.webhook_endpoint == "https://a.example/"
    assert router.redis.get(router.keys.webhook_secret("alice", "h1")) is None


def test_a_retry_in_the_same_batch_cannot_add_a_secret_either(
    router: Router, add_account: AddAccount
) -> None:
    """The secret is staged per submission and kept only by the one that creates the task:
    a retry whose secret was written before the first submission ran adds nothing."""
    add_account("a-pro", "alice", "pro")
    push(router, {"id": "h2", "owner": "alice", "webhook": {"endpoint": "https://a.example/"}})
    push(
        router,
        {
            "id": "h2",
            "owner": "alice",
            "webhook": {"endpoint": "https://b.example/", "secret": CANARY},
        },
    )
    daemon = IntakeDaemon(router)
    handled = daemon.handle(daemon.claim())
    assert (handled.created, handled.duplicates) == (1, 1)
    task = router.tasks.get("h2")
    assert task is not None and task.webhook_endpoint == "https://a.example/"
    assert router.redis.get(router.keys.webhook_secret("alice", "h2")) is None
    assert not [
        k
        for k in router.redis.scan_iter(f"{router.keys.prefix}:*")
        if CANARY.encode() in (router.redis.get(k) if router.redis.type(k) == b"string" else b"")
    ]


def test_the_first_submissions_secret_is_the_tasks(router: Router, add_account: AddAccount) -> None:
    add_account("a-pro", "alice", "pro")
    first = {"endpoint": "https://a.example/", "secret": "first-secret"}
    push(router, {"id": "h3", "owner": "alice", "webhook": first})
    push(router, {"id": "h3", "owner": "alice", "webhook": {**first, "secret": CANARY}})
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    assert router.redis.get(router.keys.webhook_secret("alice", "h3")) == b"first-secret"
    assert router.redis.ttl(router.keys.webhook_secret("alice", "h3")) == -1  # the task's life
    staged = list(router.redis.scan_iter(router.keys.webhook_secret("alice", "h3") + ":*"))
    assert staged == []


secret_keys = st.sampled_from(["secret", "Secret", "webhook_secret", "password", "api_key"])
wrappers = st.recursive(
    st.just("@"),
    lambda inner: st.one_of(
        inner.map(lambda s: "[" + s + "]"),
        st.tuples(st.text(max_size=5), inner).map(
            lambda p: "{" + json.dumps(p[0]) + ": " + p[1] + "}"
        ),
        inner.map(lambda s: json.dumps(s)),  # JSON text held in a string
    ),
    max_leaves=6,
)


@given(
    key=secret_keys,
    wrapper=wrappers,
    cut=st.integers(0, 400),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-32", "utf-16-be"]),
)
def test_redaction_hides_a_secret_wherever_it_sits_and_however_the_text_is_cut(
    key: str, wrapper: str, cut: int, encoding: str
) -> None:
    inner = json.dumps({"owner": "alice", "webhook": {"endpoint": "https://e.com/", key: CANARY}})
    message = wrapper.replace('"@"', json.dumps(inner)).replace("@", inner)
    for raw in (message.encode(encoding), message.encode(encoding)[:cut]):
        kept = redact(raw)
        assert CANARY.encode() not in kept.replace(b"\x00", b"")
        assert CANARY not in kept.decode("utf-8", "replace")


@given(st.binary(max_size=300))
def test_redaction_never_raises(raw: bytes) -> None:
    assert isinstance(redact(raw), bytes)
