"""Key layout: every key starts with the prefix; an owner's keys share one hash slot."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from redis import Redis

from router.core import Router
from router.daemon import IntakeDaemon
from router.keys import Keys
from router.models import Slot
from router.redis_server import purge
from router.scripts import text

AddAccount = Callable[..., None]

TEST_PREFIX = re.compile(r"\bt[0-9a-f]{10}(?=[:-])")
"""The key prefix of a test (see conftest), in our keys and in rq's."""


def test_every_key_written_starts_with_the_prefix_or_is_rqs_for_our_queue(
    router: Router, add_account: AddAccount, drain: Callable[[], None], redis_conn: Redis
) -> None:
    before = {text(k) for k in redis_conn.scan_iter(count=1000)}
    add_account("a-pro", "alice", "pro", fast_hours=0.02)
    add_account("b-std", "bob", "standard")
    for i in range(6):
        router.redis.lpush(
            router.keys.intake,
            json.dumps(
                {"id": f"k{i}", "owner": ["alice", "bob"][i % 2], "input": {"process_mode": "fast"}}
            ),
        )
    router.redis.lpush(router.keys.intake, b"junk")
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    drain()
    prefix = router.keys.prefix

    def written() -> set[str]:
        """Keys that appeared since `before`, less another test run's (same database)."""
        keys = {text(k) for k in redis_conn.scan_iter(count=1000)} - before
        return {k for k in keys if all(p == prefix for p in TEST_PREFIX.findall(k))}

    new = written()
    ours = {k for k in new if k.startswith(f"{prefix}:")}
    rq_keys = {k for k in new if k.startswith("rq:")}
    assert ours and new == ours | rq_keys
    rq_globals = {"rq:queues", "rq:workers", "rq:clean_groups"}
    assert all(f"{prefix}-" in k for k in rq_keys - rq_globals), rq_keys
    purge(redis_conn, prefix)
    left = written()
    assert left <= rq_globals


def test_owner_keys_share_one_hash_tag_and_intake_keys_another() -> None:
    keys = Keys("byoa")
    owner_keys = [
        keys.account("alice", "a1"),
        keys.task("alice", "t1"),
        keys.accounts("alice"),
        keys.line("alice", Slot.FAST),
        keys.pin("alice", "a1", Slot.RELAX),
        keys.pinned("alice"),
        keys.inflight("alice"),
        keys.credentials("alice", "a1"),
        keys.idempotency("alice", "t1"),
    ]
    assert {k[k.index("{") : k.index("}") + 1] for k in owner_keys} == {"{o:alice}"}
    processing = keys.intake_processing("r1")
    assert processing[processing.index("{") + 1 : processing.index("}")] == keys.intake
    assert all(k.startswith("byoa:") for k in [*owner_keys, processing, keys.intake])
