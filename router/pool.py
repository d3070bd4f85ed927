"""The account pool in Redis: add, change, remove, list; credentials kept apart."""

from __future__ import annotations

import json
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
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

from router.errors import AccountError
from router.models import Ident, Plan, Setting
from router.policy import AccountState
from router.scripts import Outcome, Scripts, text, text_hash
from router.settings import Settings

MS_PER_HOUR = 3_600_000


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


class AccountSpec(BaseModel):
    """An account as an operator declares it (accounts file or CLI)."""

    model_config = {"extra": "forbid"}

    id: Ident
    owner: Ident
    plan: Plan
    setting: Setting | None = None
    """fast when adding; when updating from a file, absent leaves the setting alone."""
    fast_hours: float | None = Field(default=None, ge=0)
    """Fast hours remaining; the plan's monthly allowance when absent."""
    fast_limit: int | None = Field(default=None, ge=0)
    relax_limit: int | None = Field(default=None, ge=0)
    enabled: bool | None = None
    """True when adding; when updating from a file, absent leaves it alone."""
    credentials: SecretStr | None = None
    min_gap_seconds: float | None = Field(default=None, ge=0)
    """Pacing: at least this long between two job starts."""
    daily_cap: int | None = Field(default=None, ge=0)
    """At most this many job starts per UTC day (0: no cap)."""
    work_hours: WorkHours | None = None
    """UTC hours in which it may start jobs, `START-END` (e.g. "8-20", "22-6")."""
    renews_at: datetime | None = None
    """When its plan renews: fast hours back to the plan's, then every 30 days."""
    backend_url: BackendUrl | None = None
    """Base URL of the account's backend, for drivers that call one over HTTP."""


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
        )


_MODES = ("fast", "turbo", "relax")


def _today() -> int:
    return int(time.time() // 86400)


def _health_fields(
    min_gap_seconds: float | None,
    daily_cap: int | None,
    work_hours: tuple[int, int] | None,
    renews_at: datetime | None,
) -> dict[str, str]:
    """Account-health settings as account hash fields (only those given)."""
    fields: dict[str, str] = {}
    if min_gap_seconds is not None:
        fields["min_gap_ms"] = str(round(min_gap_seconds * 1000))
    if daily_cap is not None:
        fields["daily_cap"] = str(daily_cap)
    if work_hours is not None:
        fields["work_start_h"], fields["work_end_h"] = map(str, work_hours)
    if renews_at is not None:
        fields["renews_at"] = str(round(renews_at.timestamp() * 1e6))
    return fields


def read_accounts_file(path: str | Path) -> list[AccountSpec]:
    """Accounts from a TOML (`[[accounts]]` tables) or JSON (a list) file."""
    p = Path(path)
    try:
        raw: Any
        if p.suffix == ".json":
            raw = json.loads(p.read_text())
        else:
            raw = tomllib.loads(p.read_text()).get("accounts", [])
        if not isinstance(raw, list):
            raise AccountError("invalid_accounts_file", f"{p}: expected a list of accounts")
        return [AccountSpec.model_validate(item) for item in raw]
    except OSError as e:
        raise AccountError("invalid_accounts_file", f"{p}: {e.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        if isinstance(e, ValidationError):
            msg = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        else:
            msg = str(e)
        raise AccountError("invalid_accounts_file", f"{p}: {msg}") from None


class Pool:
    """Accounts of every owner, changed only through the ACCOUNT_WRITE script."""

    def __init__(self, redis: Redis, settings: Settings, scripts: Scripts) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = scripts.keys
        self.scripts = scripts

    def owner_of(self, account_id: str) -> str | None:
        owner = self.redis.hget(self.keys.account_owners, account_id)
        return text(owner) if owner else None

    def _owner_or_raise(self, account_id: str) -> str:
        owner = self.owner_of(account_id)
        if owner is None:
            raise AccountError("account_not_found", f"no account {account_id}")
        return owner

    def _write(self, owner: str, op: str, account_id: str, fields: dict[str, str]) -> Outcome:
        flat = [x for kv in fields.items() for x in kv]
        raw = self.scripts.owner_call(self.scripts.account_write, owner, [op, account_id, *flat])
        (status,), outcome = Scripts.decode(owner, raw)
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
        if not self.redis.hsetnx(self.keys.account_owners, spec.id, spec.owner):
            raise AccountError("account_exists", f"account {spec.id} exists")
        fields = {
            "id": spec.id,
            "owner": spec.owner,
            "plan": spec.plan.value,
            "setting": (spec.setting or Setting.FAST).value,
            "fast_ms": str(round(hours * MS_PER_HOUR)),
            "fast_reserved_ms": "0",
            "fast_limit": str(plan.fast_limit if spec.fast_limit is None else spec.fast_limit),
            "relax_limit": str(relax_limit),
            "fast_inflight": "0",
            "relax_inflight": "0",
            "enabled": "0" if spec.enabled is False else "1",
            "declared_fast_ms": str(round(hours * MS_PER_HOUR)),
            "plan_fast_ms": str(round(plan.fast_hours * MS_PER_HOUR)),
            **_health_fields(spec.min_gap_seconds, spec.daily_cap, spec.work_hours, spec.renews_at),
        }
        if spec.backend_url is not None:
            fields["backend_url"] = spec.backend_url
        if spec.credentials is not None:
            cred_key = self.keys.credentials(spec.owner, spec.id)
            self.redis.set(cred_key, spec.credentials.get_secret_value())
        try:
            return self._write(spec.owner, "add", spec.id, fields)
        except AccountError:
            self.redis.hdel(self.keys.account_owners, spec.id)
            raise

    def update(
        self,
        account_id: str,
        *,
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
        declared: bool = False,
    ) -> Outcome:
        """Change an account; topping up fast hours undoes an automatic flip to relax.

        `declared`: the fast hours come from an accounts file (see `upsert`).
        """
        owner = self._owner_or_raise(account_id)
        fields = _health_fields(min_gap_seconds, daily_cap, work_hours, renews_at)
        if fast_hours is not None:
            if fast_hours < 0:
                raise AccountError("invalid_account", "fast hours cannot be negative")
            fields["fast_ms"] = str(round(fast_hours * MS_PER_HOUR))
            if declared:
                fields["declared_fast_ms"] = fields["fast_ms"]
        if setting is not None:
            fields["setting"] = Setting(setting).value
        if enabled is not None:
            fields["enabled"] = "1" if enabled else "0"
        for name, limit in (("fast_limit", fast_limit), ("relax_limit", relax_limit)):
            if limit is not None:
                if limit < 0:
                    raise AccountError("invalid_account", f"{name} cannot be negative")
                fields[name] = str(limit)
        if relax_limit:
            view = self.get(account_id)
            if view is not None:
                self._check_relax(view.plan, relax_limit)
        if backend_url is not None:
            try:
                fields["backend_url"] = check_backend_url(backend_url)
            except ValueError as e:
                raise AccountError("invalid_account", str(e)) from None
        if credentials is not None:
            self.redis.set(self.keys.credentials(owner, account_id), credentials.get_secret_value())
        return self._write(owner, "set", account_id, fields)

    def remove(self, account_id: str) -> Outcome:
        """Remove an account; children pinned to it fail, running jobs settle normally."""
        owner = self._owner_or_raise(account_id)
        outcome = self._write(owner, "remove", account_id, {})
        self.redis.delete(self.keys.credentials(owner, account_id))
        self.redis.hdel(self.keys.account_owners, account_id)
        return outcome

    def upsert(self, spec: AccountSpec) -> Outcome:
        """Add the account, or bring an existing one (same owner) to what `spec` declares.

        Fields the spec leaves out stay as they are, and declared fast hours apply only
        when the declaration changed: syncing the same file again undoes no automatic
        flip, no spent hours and no removal from rotation.
        """
        owner = self.owner_of(spec.id)
        if owner is None:
            return self.add(spec)
        if owner != spec.owner:
            raise AccountError("account_exists", f"account {spec.id} belongs to another owner")
        fast_hours = spec.fast_hours
        if fast_hours is not None:
            declared = self.redis.hget(self.keys.account(owner, spec.id), "declared_fast_ms")
            if declared is not None and int(declared) == round(fast_hours * MS_PER_HOUR):
                fast_hours = None
        return self.update(
            spec.id,
            fast_hours=fast_hours,
            setting=spec.setting,
            enabled=spec.enabled,
            fast_limit=spec.fast_limit,
            relax_limit=spec.relax_limit,
            credentials=spec.credentials,
            min_gap_seconds=spec.min_gap_seconds,
            daily_cap=spec.daily_cap,
            work_hours=spec.work_hours,
            renews_at=spec.renews_at,
            backend_url=spec.backend_url,
            declared=fast_hours is not None,
        )

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

    def owners(self) -> list[str]:
        return sorted({text(v) for v in self.redis.hvals(self.keys.account_owners)})

    def credentials(self, owner: str, account_id: str) -> SecretStr | None:
        """The account's credentials, for a driver only."""
        raw = self.redis.get(self.keys.credentials(owner, account_id))
        return SecretStr(text(raw)) if raw else None
