"""A snapshot of the pool and the waiting lines, and plain-text tables for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.core import Router
from router.models import Slot
from router.presence import presence, redis_address, redis_url_shown
from router.tables import table


def snapshot(router: Router) -> dict[str, Any]:
    """The Redis read (never its credentials), the live routers, workers and API processes,
    accounts, per-owner queue depths and opt-ins, intake, dead letters and rq backlog."""
    keys, redis = router.keys, router.redis
    accounts = router.pool.accounts()
    owners = sorted({a.owner for a in accounts})
    pipe = redis.pipeline(transaction=False)
    for owner in owners:
        pipe.llen(keys.line(owner, Slot.FAST))
        pipe.llen(keys.line(owner, Slot.RELAX))
        pipe.zcard(keys.inflight(owner))
        pipe.smembers(keys.pinned(owner))
        pipe.hget(keys.owner_options(owner), "upgrade_expiring")
    replies = _chunks(pipe.execute(), 5)
    queues = {
        owner: {
            "waiting_fast": fast,
            "waiting_relax": relax,
            "waiting_children": 0,
            "in_flight": inflight,
            "upgrade_expiring": opted in (b"1", "1"),
        }
        for owner, (fast, relax, inflight, _, opted) in zip(owners, replies, strict=True)
    }
    pin_keys = [
        (owner, keys.pin(owner, acct.decode(), slot))
        for owner, (*_, pinned, _) in zip(owners, replies, strict=True)
        for acct in pinned
        for slot in Slot
    ]
    pipe = redis.pipeline(transaction=False)
    for _, key in pin_keys:
        pipe.llen(key)
    for (owner, _), n in zip(pin_keys, pipe.execute(), strict=True):
        queues[owner]["waiting_children"] += n
    return {
        "redis": {**redis_address(redis), "key_prefix": keys.prefix},
        **presence(router).as_dict(),
        "accounts": [a.public() for a in accounts],
        "owners": queues,
        "intake": redis.llen(keys.intake),
        "dead_letters": redis.llen(keys.dead_letters),
        "rq_queued": router.queue.count,
    }


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def render_accounts(accounts: Sequence[dict[str, Any]]) -> str:
    """Accounts (as in a snapshot) as a table."""
    return table(
        ["account", "owner", "plan", "setting", "enabled", "fast h left", "fast", "relax", "flips"],
        [
            [
                a["id"],
                a["owner"],
                a["plan"],
                a["setting"],
                "yes" if a["enabled"] else "no",
                f"{a['fast_hours_remaining']:.2f}",
                f"{a['inflight']['fast']}/{a['fast_limit']}",
                f"{a['inflight']['relax']}/{a['relax_limit']}",
                a["auto_flips"],
            ]
            for a in accounts
        ],
    )


def render(snap: dict[str, Any]) -> str:
    """The snapshot as two tables: accounts, then queues per owner."""
    queues = table(
        ["owner", "waiting fast", "waiting relax", "waiting children", "in flight", "upgrade"],
        [
            [
                o,
                q["waiting_fast"],
                q["waiting_relax"],
                q["waiting_children"],
                q["in_flight"],
                "expiring" if q["upgrade_expiring"] else "off",
            ]
            for o, q in snap["owners"].items()
        ],
    )
    tail = "  ".join(
        f"{label}: {snap[key]}"
        for label, key in (
            ("routers", "routers"),
            ("workers", "workers"),
            ("api", "api"),
            ("intake", "intake"),
            ("dead letters", "dead_letters"),
            ("rq queued", "rq_queued"),
        )
    )
    where = f"redis: {redis_url_shown(snap['redis'])}  prefix: {snap['redis']['key_prefix']}"
    lines = [where, "", render_accounts(snap["accounts"]), "", queues, "", tail, *hints(snap)]
    return "\n".join(lines)


def hints(snap: dict[str, Any]) -> list[str]:
    """What the counts mean when work waits for a process that is not running."""
    said = []
    if snap["rq_queued"] and not snap["workers"]:
        said.append(
            f"no worker is running: {snap['rq_queued']} dispatched job(s) wait for one "
            "(start `byoa worker`)"
        )
    if snap["intake"] and not snap["routers"]:
        said.append(
            f"no router is running: {snap['intake']} message(s) wait on the intake list "
            "(start `byoa run`)"
        )
    return said
