"""The account pool in Redis: add, change, remove, list; credentials kept apart."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
)
from redis import Redis
from redis.exceptions import WatchError

from router.errors import AccountError
from router.models import ID_RE, Ident, Plan, Setting
from router.policy import US_PER_DAY, AccountState
from router.scripts import Outcome, Scripts, text, text_hash
from router.settings import DAY_SECONDS, MAX_FAST_HOURS, MAX_SLOT_LIMIT, Settings

MS_PER_HOUR = 3_600_000
US_PER_MONTH = 30 * US_PER_DAY
"""A plan's cycle: an account renews every 30 days from its renewal date (the scripts'
`renew_if_due` steps the same way)."""
MAX_DAILY_CAP = 100_000
"""Job starts per UTC day: more than one a second all day long is a typo."""
RENEWAL_YEARS = (2000, 2099)
"""Renewal dates outside these years are typos (and stay far inside the scripts' exact
microsecond range, which ends in 2255)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _work_hours(value: Any) -> Any:
    if isinstance(value, str):
        start, sep, end = value.partition("-")
        if not sep or not start.strip().isdigit() or not end.strip().isdigit():
            raise ValueError("work hours look like START-END in UTC hours, e.g. 8-20")
        value = (int(start), int(end))
    return value


WorkHours = Annotated[
    tuple[Annotated[int, Field(ge=0, le=23)], Annotated[int, Field(ge=0, le=23)]],
    BeforeValidator(_work_hours),
]


def check_backend_url(value: str) -> str:
    """An http(s) base URL without credentials (those go in the account's credentials)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("backend URL must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("backend URL takes no user, password, query or fragment")
    return value.strip().rstrip("/")


BackendUrl = Annotated[str, AfterValidator(check_backend_url)]
BackendServer = Literal["trueai", "novicezk"]
"""Which midjourney-proxy server an account's backend is (its answers are read by that
server's rules); unset: the driver asks the server."""


def _renewal_date(value: datetime) -> datetime:
    """UTC unless the value carries an offset: never the host's time zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    first, last = RENEWAL_YEARS
    try:
        year = value.astimezone(UTC).year
    except OverflowError:  # its offset takes it past year 1 or 9999: no datetime holds it
        year = None
    if year is None or not first <= year <= last:
        raise ValueError(f"renewal date must fall in the years {first} to {last}")
    return value


def _clean_credentials(value: SecretStr) -> SecretStr:
    """Surrounding whitespace (a file's or a Secret's trailing newline) goes; any other
    control or non-printable character is refused. The message never holds the value."""
    raw = value.get_secret_value().strip()
    if not raw:
        raise ValueError("credentials are empty")
    if not raw.isprintable():
        raise ValueError("credentials hold a control or non-printable character")
    return SecretStr(raw)


FastHours = Annotated[float, Field(ge=0, le=MAX_FAST_HOURS, allow_inf_nan=False)]
SlotLimit = Annotated[int, Field(ge=0, le=MAX_SLOT_LIMIT)]
MinGapSeconds = Annotated[float, Field(ge=0, le=DAY_SECONDS, allow_inf_nan=False)]
DailyCap = Annotated[int, Field(ge=0, le=MAX_DAILY_CAP)]
RenewalDate = Annotated[datetime, AfterValidator(_renewal_date)]
Credentials = Annotated[SecretStr, AfterValidator(_clean_credentials)]


class AccountChange(BaseModel):
    """What an operator changes on an account; every field optional, every one bounded."""

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    plan: Plan | None = None
    """A new plan: its fast allowance from the next renewal, its limits unless given."""
    setting: Setting | None = None
    fast_hours: FastHours | None = None
    """Fast hours remaining (at most MAX_FAST_HOURS)."""
    fast_limit: SlotLimit | None = None
    relax_limit: SlotLimit | None = None
    enabled: bool | None = None
    credentials: Credentials | None = None
    """Stripped of surrounding whitespace; refused with any other control character."""
    min_gap_seconds: MinGapSeconds | None = None
    """Pacing: at least this long between two job starts (at most a day)."""
    daily_cap: DailyCap | None = None
    """At most this many job starts per UTC day (0: no cap)."""
    work_hours: WorkHours | None = None
    """UTC hours in which it may start jobs, `START-END` (e.g. "8-20", "22-6")."""
    renews_at: RenewalDate | None = None
    """A date of the plan's 30-day cycle (UTC unless it carries an offset); a date in the
    past stands for the cycle's next date, so setting it never renews the account."""
    backend_url: BackendUrl | None = None
    """Base URL of the account's backend, for drivers that call one over HTTP."""
    backend_server: BackendServer | None = None
    """Which server the backend is (`trueai`, `novicezk`); unset: found by asking it."""


class AccountSpec(BaseModel):
    """An account as an operator declares it (accounts file or CLI).

    Loading a file again (`Pool.upsert`) changes only what the file states, and of what the
    router itself also changes (fast hours spent, the automatic flip, the renewal date it
    advances, an account a driver took out of rotation) only what the file's declaration
    changed since it was last loaded.
    """

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    id: Ident
    owner: Ident
    plan: Plan
    """Changing it on an existing account applies the new plan's limits (unless given)."""
    setting: Setting | None = None
    """fast when adding; from a file, applied when the file's declaration changed."""
    fast_hours: FastHours | None = None
    """Fast hours remaining; the plan's monthly allowance when absent. From a file, applied
    when the file's declaration changed (a top-up), never because the file was read."""
    fast_limit: SlotLimit | None = None
    relax_limit: SlotLimit | None = None
    enabled: bool | None = None
    """True when adding; from a file, applied when the file's declaration changed, and even
    then it never ends an attention episode (a driver took the account out of rotation):
    only `accounts set --enable` or `accounts reset` does."""
    credentials: Credentials | None = None
    """Stripped of surrounding whitespace; refused with any other control character."""
    min_gap_seconds: MinGapSeconds | None = None
    """Pacing: at least this long between two job starts (at most a day)."""
    daily_cap: DailyCap | None = None
    """At most this many job starts per UTC day (0: no cap)."""
    work_hours: WorkHours | None = None
    """UTC hours in which it may start jobs, `START-END` (e.g. "8-20", "22-6")."""
    renews_at: RenewalDate | None = None
    """The anchor of the plan's 30-day cycle (UTC unless it carries an offset): fast hours
    go back to the plan's at each date of the cycle that comes, once. A date in the past
    stands for the cycle's next date. From a file, applied when the declaration changed."""
    backend_url: BackendUrl | None = None
    """Base URL of the account's backend, for drivers that call one over HTTP."""
    backend_server: BackendServer | None = None
    """Which server the backend is (`trueai`, `novicezk`); unset: found by asking it."""


def describe(e: ValidationError) -> str:
    """Where and why, without the offending values (they may be secrets)."""
    return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())


def account_error(e: ValidationError) -> AccountError:
    """A refused account change: `invalid_credentials` when the credentials are at fault."""
    bad_secret = any(x["loc"][:1] == ("credentials",) for x in e.errors())
    return AccountError("invalid_credentials" if bad_secret else "invalid_account", describe(e))


def epoch_us(at: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (at - _EPOCH) // _US


def next_renewal(anchor_us: int, now_us: int) -> int:
    """The first date of the 30-day cycle through `anchor_us` that is after `now_us`."""
    if anchor_us > now_us:
        return anchor_us
    return anchor_us + ((now_us - anchor_us) // US_PER_MONTH + 1) * US_PER_MONTH


class AccountView(BaseModel):
    """An account as stored, without its credentials."""

    id: str
    owner: str
    plan: Plan
    setting: Setting
    enabled: bool
    fast_hours_remaining: float
    fast_hours_reserved: float
    fast_limit: int
    relax_limit: int
    inflight: dict[str, int]
    gpu_seconds_used: dict[str, float]
    auto_flips: int
    flip_reason: str | None
    flipped_at_us: int | None
    min_gap_seconds: float
    daily_cap: int
    jobs_today: int
    work_hours: tuple[int, int] | None
    renews_at_us: int | None
    cooldown_until_us: int | None
    attention_reason: str | None
    """Why the account left rotation (banned, captcha...), set by a driver error."""
    backend_url: str | None = None
    backend_server: str | None = None
    backend_fast_ms: int | None = None
    """Fast time left by the backend's reckoning, where it tells (read by the workers)."""
    backend_synced_at_us: int | None = None
    raw_day: int = Field(default=0, exclude=True)
    raw_day_jobs: int = Field(default=0, exclude=True)
    paced_until_us: int = Field(default=0, exclude=True)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> AccountView:
        return cls(
            id=h["id"],
            owner=h["owner"],
            plan=Plan(h["plan"]),
            setting=Setting(h["setting"]),
            enabled=h["enabled"] == "1",
            fast_hours_remaining=max(int(h["fast_ms"]), 0) / MS_PER_HOUR,
            fast_hours_reserved=int(h["fast_reserved_ms"]) / MS_PER_HOUR,
            fast_limit=int(h["fast_limit"]),
            relax_limit=int(h["relax_limit"]),
            inflight={"fast": int(h["fast_inflight"]), "relax": int(h["relax_inflight"])},
            gpu_seconds_used={m: int(h.get(f"used_{m}_ms", 0)) / 1000 for m in _MODES},
            auto_flips=int(h.get("auto_flips", 0)),
            flip_reason=h.get("flip_reason") or None,
            flipped_at_us=int(h["flipped_at"]) if h.get("flipped_at") else None,
            min_gap_seconds=int(h.get("min_gap_ms") or 0) / 1000,
            daily_cap=int(h.get("daily_cap") or 0),
            jobs_today=int(h.get("day_jobs") or 0) if h.get("day") == str(_today()) else 0,
            work_hours=(int(h["work_start_h"]), int(h["work_end_h"]))
            if h.get("work_start_h")
            else None,
            renews_at_us=int(h["renews_at"]) if h.get("renews_at") else None,
            cooldown_until_us=int(h["cooldown_until"]) if h.get("cooldown_until") else None,
            attention_reason=h.get("attention_reason") or None,
            backend_url=h.get("backend_url") or None,
            backend_server=h.get("backend_server") or None,
            backend_fast_ms=int(h["backend_fast_ms"]) if h.get("backend_fast_ms") else None,
            backend_synced_at_us=int(h["backend_synced_at"])
            if h.get("backend_synced_at")
            else None,
            raw_day=int(h.get("day") or 0),
            raw_day_jobs=int(h.get("day_jobs") or 0),
            paced_until_us=int(h.get("paced_until") or 0),
        )

    def state(self) -> AccountState:
        """The view the routing rules take (hours back to milliseconds)."""
        return AccountState(
            id=self.id,
            plan=self.plan,
            setting=self.setting,
            fast_ms=round(self.fast_hours_remaining * MS_PER_HOUR),
            fast_reserved_ms=round(self.fast_hours_reserved * MS_PER_HOUR),
            fast_limit=self.fast_limit,
            relax_limit=self.relax_limit,
            fast_inflight=self.inflight["fast"],
            relax_inflight=self.inflight["relax"],
            enabled=self.enabled,
            paced_until=self.paced_until_us,
            cooldown_until=self.cooldown_until_us or 0,
            daily_cap=self.daily_cap,
            day=self.raw_day,
            day_jobs=self.raw_day_jobs,
            work_hours=self.work_hours,
            renews_at_us=self.renews_at_us,
        )


class OwnerOptions(BaseModel):
    """An owner's choices about how its work is placed."""

    upgrade_expiring: bool = False
    """Run relax tasks fast on an account whose fast time will surely expire unused before
    its renewal (`policy.surely_expires`); off by default: relax never uses fast hours."""


_MODES = ("fast", "turbo", "relax")


def _today() -> int:
    return int(time.time() // 86400)


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


def read_accounts_file(path: str | Path) -> list[AccountSpec]:
    """Accounts from a TOML (`[[accounts]]` tables) or JSON (a list) file.

    Every account is checked before any is loaded: one bad table refuses the whole file,
    with where and why (never a value: a file holds secrets).
    """
    p = Path(path)
    try:
        raw: Any
        if p.suffix == ".json":
            raw = json.loads(p.read_text())
        else:
            raw = tomllib.loads(p.read_text()).get("accounts", [])
    except OSError as e:
        raise AccountError("invalid_accounts_file", f"{p}: {e.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise AccountError("invalid_accounts_file", f"{p}: {e}") from None
    if not isinstance(raw, list):
        raise AccountError("invalid_accounts_file", f"{p}: expected a list of accounts")
    specs: list[AccountSpec] = []
    for i, item in enumerate(raw):
        try:
            specs.append(AccountSpec.model_validate(item))
        except ValidationError as e:
            name = item.get("id") if isinstance(item, dict) else None
            known = isinstance(name, str) and ID_RE.fullmatch(name)
            which = f"account {i + 1}" + (f" ({name})" if known else "")
            raise AccountError("invalid_accounts_file", f"{p}: {which}: {describe(e)}") from None
    return specs


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
            raise AccountError("account_not_found", f"no account {account_id}")
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
            raise AccountError("invalid_account", f"{field} is out of range")
        if status == "exists":
            raise AccountError("account_exists", f"account {account_id} exists")
        if status == "missing":
            raise AccountError("account_not_found", f"no account {account_id}")
        if status == "busy":
            raise AccountError(
                "account_busy",
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
        raise AccountError("account_busy", f"account {account_id} kept changing: try again")

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
            raise AccountError("invalid_account", f"plan {plan} has no relax time")

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
            "fast_inflight": "0",
            "relax_inflight": "0",
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
            raise AccountError("account_exists", f"account {spec.id} exists")
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
        raise AccountError("account_exists", f"account {account_id} exists")

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
        if change.plan is not None or relax_limit:
            current = self.redis.hget(self.keys.account(owner, account_id), "plan")
            if current is None:
                raise AccountError("account_not_found", f"no account {account_id}")
            plan = Plan(text(current))
            if change.plan is not None and change.plan is not plan:
                plan = change.plan
                limits = self.settings.plans[plan]
                fields["plan"] = plan.value
                fields["plan_fast_ms"] = str(round(limits.fast_hours * MS_PER_HOUR))
                fast_limit = limits.fast_limit if fast_limit is None else fast_limit
                relax_limit = limits.relax_limit if relax_limit is None else relax_limit
            self._check_relax(plan, relax_limit or 0)
        if fast_limit is not None:
            fields["fast_limit"] = str(fast_limit)
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
        except AccountError as e:
            if e.code != "account_not_found":
                raise
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
            except AccountError as e:
                if e.code != "account_exists":
                    raise
            # The account exists after all: one whose index entry was lost (the add gave it
            # back), or one a concurrent load added first. Bring it to what `spec` declares.
            owner = self.owner_of(spec.id)
        if owner != spec.owner:
            raise AccountError("account_exists", f"account {spec.id} belongs to another owner")
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
            raise AccountError("invalid_accounts_file", f"{source}: {'; '.join(problems)}")

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
            raise AccountError("invalid_account", f"owner id {owner!r} is not valid")
        if upgrade_expiring is not None and not isinstance(upgrade_expiring, bool):
            # never read a truthy string ("false", "0", "no") as consent to spend fast hours
            raise AccountError(
                "invalid_account",
                f"upgrade_expiring must be True, False or None, not {upgrade_expiring!r}",
            )
        if upgrade_expiring is not None:
            self.redis.hset(
                self.keys.owner_options(owner), "upgrade_expiring", "1" if upgrade_expiring else "0"
            )
        raw = self.scripts.owner_call(self.scripts.wake, owner, ["all"])
        return Scripts.decode(owner, raw)[1]

    def owners(self) -> list[str]:
        return sorted({text(v) for v in self.redis.hvals(self.keys.account_owners)})

    def credentials(self, owner: str, account_id: str) -> SecretStr | None:
        """The account's credentials, for a driver only."""
        raw = self.redis.get(self.keys.credentials(owner, account_id))
        return SecretStr(text(raw)) if raw else None
