"""The account pool in Redis: add, change, remove, list; credentials kept apart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from redis import Redis
from redis.exceptions import WatchError

from router.accounts import (
    MS_PER_HOUR,
    AccountChange,
    AccountSpec,
    AccountView,
    OwnerOptions,
    account_error,
    epoch_us,
    next_renewal,
    read_accounts_file,
)
from router.errors import (
    AccountBusy,
    AccountError,
    AccountExists,
    InvalidAccount,
    InvalidAccountsFile,
    UnknownAccount,
)
from router.models import ID_RE, Plan, Setting
from router.scripts import Outcome, Scripts, text, text_hash
from router.settings import Settings

__all__ = [
    "AccountChange",
    "AccountSpec",
    "AccountView",
    "OwnerOptions",
    "Pool",
    "read_accounts_file",
]


def _health_fields(change: AccountChange) -> dict[str, str]:
    """Account-health settings as account hash fields (only those given; not renewal)."""
    fields: dict[str, str] = {}
    if change.min_gap_seconds is not None:
        fields["min_gap_ms"] = str(round(change.min_gap_seconds * 1000))
    if change.daily_cap is not None:
        fields["daily_cap"] = str(change.daily_cap)
    if change.work_hours is not None:
        fields["work_start_h"], fields["work_end_h"] = map(str, change.work_hours)
    return fields


class Pool:
    """Accounts of every owner, changed only through the ACCOUNT_WRITE script.

    An account is two things in two places: its entry in the global index
    (`account_owners`, id -> owner, which keeps ids unique across owners) and its hash
    under its owner's keys (plus its credentials). They cannot be written in one step (they
    live in different cluster slots), so they are written in a fixed order: `add` claims
    the index entry, stores the credentials, then writes the account; `remove` removes the
    account, then its credentials, then the index entry.
    Every step tolerates what a process killed between two steps leaves: an index entry with
    no account behind it is finished off by `remove` and taken over by its owner's
    `add`/`upsert`; an account whose index entry is missing gets it back from its owner's
    `add`/`upsert`.
    """

    def __init__(self, redis: Redis, settings: Settings, scripts: Scripts) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = scripts.keys
        self.scripts = scripts

    def owner_of(self, account_id: str) -> str | None:
        owner = self.redis.hget(self.keys.account_owners, account_id)
        return text(owner) if owner else None

    def _exists(self, owner: str, account_id: str) -> bool:
        return bool(self.redis.exists(self.keys.account(owner, account_id)))

    def _owner_or_raise(self, account_id: str) -> str:
        owner = self.owner_of(account_id)
        if owner is None:
            raise UnknownAccount(f"no account {account_id}")
        return owner

    def _write(
        self,
        owner: str,
        op: str,
        account_id: str,
        fields: dict[str, str],
        *,
        unless_attention: bool = False,
    ) -> Outcome:
        """Run ACCOUNT_WRITE. `unless_attention`: the write enables the account only if no
        attention episode is open when it runs (checked and written in one transaction)."""
        if unless_attention and fields.get("enabled") == "1":
            raw = self._write_unless_attention(owner, account_id, fields)
        else:
            flat = [x for kv in fields.items() for x in kv]
            args = [op, account_id, *flat]
            raw = self.scripts.owner_call(self.scripts.account_write, owner, args)
        results, outcome = Scripts.decode(owner, raw)
        status = results[0]
        if status == "invalid":  # the script's own check; the bounds here should come first
            field = results[1] if len(results) > 1 else "a number"
            raise InvalidAccount(f"{field} is out of range")
        if status == "exists":
            raise AccountExists(f"account {account_id} exists")
        if status == "missing":
            raise UnknownAccount(f"no account {account_id}")
        if status == "busy":
            raise AccountBusy(
                f"account {account_id} has jobs in flight: disable it, then remove it "
                "once they have ended",
            )
        return outcome

    def _write_unless_attention(self, owner: str, account_id: str, fields: dict[str, str]) -> Any:
        """'set' `fields`, leaving `enabled` out if a driver has the account out of rotation;
        WATCH makes the check and the write one step (a driver's SETTLE in between retries)."""
        key = self.keys.account(owner, account_id)
        with self.redis.pipeline() as pipe:
            for _ in range(100):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    given = dict(fields)
                    if pipe.hget(key, "attention_reason"):
                        del given["enabled"]
                    flat = [x for kv in given.items() for x in kv]
                    pipe.multi()
                    self.scripts.owner_call(
                        self.scripts.account_write, owner, ["set", account_id, *flat], pipe=pipe
                    )
                    return pipe.execute()[0]
                except WatchError:
                    continue
        raise AccountBusy(f"account {account_id} kept changing: try again")

    def _now_us(self) -> int:
        """The clock the scripts read: Redis's, or a simulation's virtual clock."""
        if self.settings.sim_clock:
            virtual = self.redis.get(self.keys.clock)
            if virtual is not None:
                return int(virtual)
        seconds, micros = self.redis.time()
        return int(seconds) * 1_000_000 + int(micros)

    def _renewal(self, renews_at: datetime) -> str:
        """The stored next renewal for a declared date: the next date of its cycle after now,
        so that writing a date never renews an account (only a date that comes does)."""
        return str(next_renewal(epoch_us(renews_at), self._now_us()))

    def _check_relax(self, plan: Plan, relax_limit: int) -> None:
        """Plans without relax time (Basic) never get relax slots (rule 2)."""
        if relax_limit > 0 and not self.settings.plans[plan].relax:
            raise InvalidAccount(f"plan {plan} has no relax time")

    def add(self, spec: AccountSpec) -> Outcome:
        """Add an account; its id must be new across all owners."""
        plan = self.settings.plans[spec.plan]
        hours = plan.fast_hours if spec.fast_hours is None else spec.fast_hours
        relax_limit = plan.relax_limit if spec.relax_limit is None else spec.relax_limit
        self._check_relax(spec.plan, relax_limit)
        health = AccountChange(
            min_gap_seconds=spec.min_gap_seconds,
            daily_cap=spec.daily_cap,
            work_hours=spec.work_hours,
        )
        setting = spec.setting or Setting.FAST
        fields = {
            "id": spec.id,
            "owner": spec.owner,
            "plan": spec.plan.value,
            "setting": setting.value,
            "fast_ms": str(round(hours * MS_PER_HOUR)),
            "fast_reserved_ms": "0",
            "fast_limit": str(plan.fast_limit if spec.fast_limit is None else spec.fast_limit),
            "relax_limit": str(relax_limit),
            "video_limit": str(plan.video_limit if spec.video_limit is None else spec.video_limit),
            "fast_inflight": "0",
            "relax_inflight": "0",
            "video_inflight": "0",
            "enabled": "0" if spec.enabled is False else "1",
            "plan_fast_ms": str(round(plan.fast_hours * MS_PER_HOUR)),
            # What was declared, for `upsert` to tell a changed declaration from a re-read.
            "declared_fast_ms": str(round(hours * MS_PER_HOUR)),
            "declared_setting": setting.value,
            "declared_enabled": "0" if spec.enabled is False else "1",
            **_health_fields(health),
        }
        if spec.renews_at is not None:
            fields["renews_at"] = self._renewal(spec.renews_at)
            fields["declared_renews_at"] = str(epoch_us(spec.renews_at))
        if spec.backend_url is not None:
            fields["backend_url"] = spec.backend_url
        if spec.backend_server is not None:
            fields["backend_server"] = spec.backend_server
        self._claim(spec.owner, spec.id)
        if self._exists(spec.owner, spec.id):
            # An account whose index entry was lost: the claim gave it back; nothing else.
            raise AccountExists(f"account {spec.id} exists")
        cred_key = self.keys.credentials(spec.owner, spec.id)
        if spec.credentials is not None:
            self.redis.set(cred_key, spec.credentials.get_secret_value())
        try:
            outcome = self._write(spec.owner, "add", spec.id, fields)
        except AccountError:
            if not self._exists(spec.owner, spec.id):  # not added by a concurrent add
                self.redis.delete(cred_key)
                self.redis.hdel(self.keys.account_owners, spec.id)
            raise
        # A concurrent `remove` may have taken the claim for a crash's leftover while this
        # add was between its steps, dropping the credentials too: put both back.
        reclaimed = self.redis.hsetnx(self.keys.account_owners, spec.id, spec.owner)
        if reclaimed and spec.credentials is not None:
            self.redis.set(cred_key, spec.credentials.get_secret_value())
        return outcome

    def _claim(self, owner: str, account_id: str) -> None:
        """Claim the id for `owner` in the global index, the first step of `add`.

        An entry of the same owner with no account behind it was left by an `add` or a
        `remove` that never finished: it is taken over. An entry of another owner is theirs,
        with or without an account (that owner's `remove` or `add` finishes it).
        """
        if self.redis.hsetnx(self.keys.account_owners, account_id, owner):
            return
        holder = self.owner_of(account_id)
        if holder == owner and not self._exists(owner, account_id):
            return
        if holder is None:  # removed in between: claim it now
            return self._claim(owner, account_id)
        raise AccountExists(f"account {account_id} exists")

    def update(
        self,
        account_id: str,
        *,
        plan: Plan | None = None,
        fast_hours: float | None = None,
        setting: Setting | None = None,
        enabled: bool | None = None,
        fast_limit: int | None = None,
        relax_limit: int | None = None,
        credentials: SecretStr | None = None,
        min_gap_seconds: float | None = None,
        daily_cap: int | None = None,
        work_hours: tuple[int, int] | None = None,
        renews_at: datetime | None = None,
        backend_url: str | None = None,
        backend_server: str | None = None,
    ) -> Outcome:
        """An operator's change: every value given applies (bounded like `AccountChange`).

        Topping up fast hours undoes an automatic flip to relax; `enabled=True` ends an
        attention episode. A new plan brings its limits (unless given) and, from the next
        renewal, its fast hours; jobs running finish normally, while waiting work the
        account can no longer take fails or goes elsewhere as the routing rules say.
        """
        given = {
            "plan": plan,
            "fast_hours": fast_hours,
            "setting": setting,
            "enabled": enabled,
            "fast_limit": fast_limit,
            "relax_limit": relax_limit,
            "credentials": credentials,
            "min_gap_seconds": min_gap_seconds,
            "daily_cap": daily_cap,
            "work_hours": work_hours,
            "renews_at": renews_at,
            "backend_url": backend_url,
            "backend_server": backend_server,
        }
        try:
            change = AccountChange.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as e:
            raise account_error(e) from None
        return self._change(self._owner_or_raise(account_id), account_id, change)

    def _change(
        self,
        owner: str,
        account_id: str,
        change: AccountChange,
        declared: dict[str, str] | None = None,
        *,
        unless_attention: bool = False,
    ) -> Outcome:
        """Write `change` (plus the `declared` bookkeeping fields) through ACCOUNT_WRITE."""
        fields = {**(declared or {}), **_health_fields(change)}
        if change.renews_at is not None:
            fields["renews_at"] = self._renewal(change.renews_at)
        if change.fast_hours is not None:
            fields["fast_ms"] = str(round(change.fast_hours * MS_PER_HOUR))
        if change.setting is not None:
            fields["setting"] = change.setting.value
        if change.enabled is not None:
            fields["enabled"] = "1" if change.enabled else "0"
        fast_limit, relax_limit = change.fast_limit, change.relax_limit
        video_limit = change.video_limit
        if change.plan is not None or relax_limit:
            current = self.redis.hget(self.keys.account(owner, account_id), "plan")
            if current is None:
                raise UnknownAccount(f"no account {account_id}")
            plan = Plan(text(current))
            if change.plan is not None and change.plan is not plan:
                plan = change.plan
                limits = self.settings.plans[plan]
                fields["plan"] = plan.value
                fields["plan_fast_ms"] = str(round(limits.fast_hours * MS_PER_HOUR))
                fast_limit = limits.fast_limit if fast_limit is None else fast_limit
                relax_limit = limits.relax_limit if relax_limit is None else relax_limit
                video_limit = limits.video_limit if video_limit is None else video_limit
            self._check_relax(plan, relax_limit or 0)
        if fast_limit is not None:
            fields["fast_limit"] = str(fast_limit)
        if video_limit is not None:
            fields["video_limit"] = str(video_limit)
        if relax_limit is not None:
            fields["relax_limit"] = str(relax_limit)
        if change.backend_url is not None:
            fields["backend_url"] = change.backend_url
        if change.backend_server is not None:
            fields["backend_server"] = change.backend_server
        if change.credentials is not None:
            cred_key = self.keys.credentials(owner, account_id)
            self.redis.set(cred_key, change.credentials.get_secret_value())
        return self._write(owner, "set", account_id, fields, unless_attention=unless_attention)

    def remove(self, account_id: str) -> Outcome:
        """Remove an account; children pinned to it fail, running jobs settle normally."""
        owner = self._owner_or_raise(account_id)
        try:
            outcome = self._write(owner, "remove", account_id, {})
        except UnknownAccount:
            # Only the index entry (and maybe credentials) left by an `add` or a `remove`
            # that was killed between its steps: finish removing them.
            outcome = Outcome()
        self.redis.delete(self.keys.credentials(owner, account_id))
        self.redis.hdel(self.keys.account_owners, account_id)
        return outcome

    def upsert(self, spec: AccountSpec) -> Outcome:
        """Add the account, or bring an existing one (same owner) to what `spec` declares.

        The rule for a file read again (a re-sync): what only operators change (plan,
        limits, health settings, backend, credentials) is applied as the file states it;
        what the router also changes is applied only when the file's declaration changed
        since it was last loaded: `fast_hours` (spent hours are not restored: a changed
        value is a top-up), `setting` (an automatic flip, or an operator's `--setting`,
        is not undone), `renews_at` (the cycle's anchor: a new one moves the next renewal,
        and no renewal ever happens because a file was read) and `enabled` (an operator's
        `--disable` stays; and a changed `enabled = true` still never ends an attention
        episode, which only `accounts set --enable` or `accounts reset` ends).
        """
        owner = self.owner_of(spec.id)
        if owner is None or (owner == spec.owner and not self._exists(owner, spec.id)):
            try:
                return self.add(spec)  # also takes over what a killed add or remove left
            except AccountExists:
                pass
            # The account exists after all: one whose index entry was lost (the add gave it
            # back), or one a concurrent load added first. Bring it to what `spec` declares.
            owner = self.owner_of(spec.id)
        if owner != spec.owner:
            raise AccountExists(f"account {spec.id} belongs to another owner")
        names = ("declared_fast_ms", "declared_setting", "declared_enabled", "declared_renews_at")
        raw = self.redis.hmget(self.keys.account(owner, spec.id), list(names))
        last = {n: text(v) for n, v in zip(names, raw, strict=True) if v is not None}
        last.setdefault("declared_setting", Setting.FAST.value)  # as `add` declares them
        last.setdefault("declared_enabled", "1")
        declared: dict[str, str] = {}
        apply: dict[str, Any] = {
            "plan": spec.plan,
            "fast_limit": spec.fast_limit,
            "relax_limit": spec.relax_limit,
            "video_limit": spec.video_limit,
            "credentials": spec.credentials,
            "min_gap_seconds": spec.min_gap_seconds,
            "daily_cap": spec.daily_cap,
            "work_hours": spec.work_hours,
            "backend_url": spec.backend_url,
            "backend_server": spec.backend_server,
        }
        if spec.fast_hours is not None:
            ms = str(round(spec.fast_hours * MS_PER_HOUR))
            if last.get("declared_fast_ms") != ms:
                declared["declared_fast_ms"], apply["fast_hours"] = ms, spec.fast_hours
        if spec.setting is not None and last["declared_setting"] != spec.setting.value:
            declared["declared_setting"], apply["setting"] = spec.setting.value, spec.setting
        if spec.enabled is not None:
            flag = "1" if spec.enabled else "0"
            if last["declared_enabled"] != flag:
                declared["declared_enabled"], apply["enabled"] = flag, spec.enabled
        if spec.renews_at is not None:
            anchor = str(epoch_us(spec.renews_at))
            if last.get("declared_renews_at") != anchor:
                declared["declared_renews_at"], apply["renews_at"] = anchor, spec.renews_at
        change = AccountChange.model_validate({k: v for k, v in apply.items() if v is not None})
        return self._change(owner, spec.id, change, declared, unless_attention=True)

    def check_load(self, specs: Sequence[AccountSpec], source: str | Path) -> None:
        """Refuse a whole file, before anything is written, if `upsert` would refuse any of
        its accounts: an id given twice, an id of another owner (with or without an account
        behind it), relax slots on a plan without relax time. Every problem is named by the
        account and field, never by a value (a file holds secrets)."""
        if not specs:
            return
        holders = self.redis.hmget(self.keys.account_owners, [s.id for s in specs])
        first: dict[str, int] = {}
        problems: list[str] = []
        for n, (spec, holder) in enumerate(zip(specs, holders, strict=True), start=1):
            which = f"account {n} ({spec.id})"
            if spec.id in first:
                problems.append(f"{which}: id: given twice (also account {first[spec.id]})")
            first.setdefault(spec.id, n)
            if holder is not None and text(holder) != spec.owner:
                problems.append(f"{which}: id: belongs to another owner")
            plan = self.settings.plans[spec.plan]
            relax = plan.relax_limit if spec.relax_limit is None else spec.relax_limit
            if relax > 0 and not plan.relax:
                problems.append(f"{which}: relax_limit: the plan has no relax time (0 only)")
        if problems:
            raise InvalidAccountsFile(f"{source}: {'; '.join(problems)}")

    def reset(self, account_id: str) -> Outcome:
        """Back into rotation: enabled, attention and cooldown cleared."""
        owner = self._owner_or_raise(account_id)
        fields = {"enabled": "1", "cooldown_until": "0", "fails": "0"}
        return self._write(owner, "set", account_id, fields)

    def get(self, account_id: str) -> AccountView | None:
        owner = self.owner_of(account_id)
        if owner is None:
            return None
        h = self.redis.hgetall(self.keys.account(owner, account_id))
        return AccountView.from_hash(text_hash(h)) if h else None

    def accounts(self, owner: str | None = None) -> list[AccountView]:
        """Every account (of one owner), sorted by owner then id."""
        index = text_hash(self.redis.hgetall(self.keys.account_owners))
        ids = sorted((o, a) for a, o in index.items() if owner is None or o == owner)
        pipe = self.redis.pipeline(transaction=False)
        for o, a in ids:
            pipe.hgetall(self.keys.account(o, a))
        return [AccountView.from_hash(text_hash(h)) for h in pipe.execute() if h]

    def owner_options(self, owner: str) -> OwnerOptions:
        """The owner's choices as stored (defaults where none is)."""
        raw = text_hash(self.redis.hgetall(self.keys.owner_options(owner)))
        return OwnerOptions(upgrade_expiring=raw.get("upgrade_expiring") == "1")

    def set_owner_options(self, owner: str, *, upgrade_expiring: bool | None = None) -> Outcome:
        """Change the owner's choices, then give its waiting work the slots that changes
        (an opt-in may start relax tasks fast at once): pass the Outcome to `Router.apply`."""
        if not ID_RE.fullmatch(owner):
            raise InvalidAccount(f"owner id {owner!r} is not valid")
        if upgrade_expiring is not None and not isinstance(upgrade_expiring, bool):
            # never read a truthy string ("false", "0", "no") as consent to spend fast hours
            raise InvalidAccount(
                f"upgrade_expiring must be True, False or None, not {upgrade_expiring!r}",
            )
        if upgrade_expiring is not None:
            # with the mark that the scripts' index of expiring hours is to be rebuilt: if
            # the wake below never runs, the next call that looks for an upgrade does it
            on = "1" if upgrade_expiring else "0"
            self.redis.hset(
                self.keys.owner_options(owner),
                items=["upgrade_expiring", on, "expiring_indexed", "0"],
            )
        raw = self.scripts.owner_call(self.scripts.wake, owner, ["all"])
        return Scripts.decode(owner, raw)[1]

    def owners(self) -> list[str]:
        return sorted({text(v) for v in self.redis.hvals(self.keys.account_owners)})

    def credentials(self, owner: str, account_id: str) -> SecretStr | None:
        """The account's credentials, for a driver only."""
        raw = self.redis.get(self.keys.credentials(owner, account_id))
        return SecretStr(text(raw)) if raw else None
