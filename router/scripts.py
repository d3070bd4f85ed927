"""Registers the Lua scripts once per connection and decodes what the owner scripts return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

from router import lua
from router.keys import OWNER_KEYS, Keys, owner_keys
from router.models import Setting, Slot
from router.settings import Settings


@dataclass(frozen=True)
class Placement:
    """A task that was given a slot and must now be dispatched to rq."""

    owner: str
    task_id: str
    account_id: str
    attempt: int
    slot: Slot


@dataclass
class Outcome:
    """What an owner script did besides its own results."""

    placed: list[Placement] = field(default_factory=list)
    switches: list[tuple[str, str, Setting]] = field(default_factory=list)
    """(owner, account, new setting) for the drivers."""
    finished: list[tuple[str, str]] = field(default_factory=list)
    """(owner, task id) of tasks that reached a terminal state."""

    def merge(self, other: Outcome) -> None:
        self.placed += other.placed
        self.switches += other.switches
        self.finished += other.finished


def text(v: bytes | str) -> str:
    """A reply of a bytes client (rq needs one) as text."""
    return v.decode() if isinstance(v, bytes) else v


def text_hash(h: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """A hash reply as text."""
    return {text(k): text(v) for k, v in h.items()}


def _groups(flat: Sequence[Any], size: int) -> list[list[str]]:
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    return [items[i : i + size] for i in range(0, len(items), size)]


class Scripts:
    """The product's Lua scripts (`router/commands`), registered with one client."""

    submit: Script
    start: Script
    settle: Script
    cancel: Script
    account_write: Script
    renew: Script
    poll_round: Script
    reap: Script
    wake: Script
    intake_claim: Script
    intake_takeover: Script
    claim_due: Script
    outbox_record: Script
    rate_limit: Script

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self._common = [
            settings.task_ttl_seconds,
            round(settings.dispatch_lease_seconds * 1e6),
            round(settings.run_lease_seconds * 1e6),
        ]
        self._clock = [self.keys.clock] if settings.sim_clock else []
        """A simulation's virtual clock, declared after the owner's keys (single-node only:
        it is one key for every owner)."""
        clock = len(OWNER_KEYS) + 1 if settings.sim_clock else None
        includes = lua.generated(settings.strategy, clock, settings.plans, settings.costs.hd_video)
        for name in lua.OWNER_SCRIPTS + lua.PLAIN_SCRIPTS:
            setattr(self, name, redis.register_script(lua.source(name, includes)))

    def load_all(self) -> None:
        """Load every script into Redis (redis-py also does so on a NOSCRIPT reply)."""
        for script in vars(self).values():
            if isinstance(script, Script):
                self.redis.script_load(script.script)

    def owner_call(
        self,
        script: Script,
        owner: str,
        args: Sequence[str | int],
        pipe: Pipeline | None = None,
    ) -> Any:
        """Run an owner script (convention: `router/commands/includes/owner.lua`)."""
        argv = [self.keys.owner_base(owner), self.keys.prefix, owner, *self._common, *args]
        keys = [*owner_keys(self.keys, owner), *self._clock]
        return script(keys=keys, args=argv, client=pipe or self.redis)

    @staticmethod
    def decode(owner: str, raw: Sequence[Any]) -> tuple[list[str], Outcome]:
        """Split an owner script's reply into its results and its Outcome."""
        results, placed, switches, finished = raw
        outcome = Outcome(
            placed=[Placement(owner, t, a, int(n), Slot(s)) for t, a, n, s in _groups(placed, 4)],
            switches=[(owner, a, Setting(s)) for a, s in _groups(switches, 2)],
            finished=[(owner, t) for (t,) in _groups(finished, 1)],
        )
        return [r for g in _groups(results, 1) for r in g], outcome
