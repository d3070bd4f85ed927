"""Account models, their bounds and checks, and the accounts-file reader: what an operator
declares and what a stored account reads back as, apart from its Redis state (`router.pool`)."""

from __future__ import annotations

import json
import time
import tomllib
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

from router.errors import InvalidAccount, InvalidAccountsFile, InvalidCredentials
from router.models import ID_RE, Ident, Plan, Setting
from router.policy import US_PER_DAY, AccountState
from router.settings import DAY_SECONDS, MAX_FAST_HOURS, MAX_SLOT_LIMIT
from router.times import iso_us

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
    video_limit: SlotLimit | None = None
    """Video jobs at once, besides the slots' limits; the plan's unless given."""
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
    video_limit: SlotLimit | None = None
    """Video jobs at once, besides the slots' limits; the plan's unless given."""
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


def account_error(e: ValidationError) -> InvalidAccount:
    """A refused account change: `invalid_credentials` when the credentials are at fault."""
    bad_secret = any(x["loc"][:1] == ("credentials",) for x in e.errors())
    return (InvalidCredentials if bad_secret else InvalidAccount)(describe(e))


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
    video_limit: int
    """Video jobs at once (no limit of its own: MAX_SLOT_LIMIT)."""
    inflight: dict[str, int]
    """Jobs holding each slot (`fast`, `relax`)."""
    video_inflight: int = 0
    """Of those, video jobs."""
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
            video_limit=int(h.get("video_limit") or MAX_SLOT_LIMIT),
            inflight={"fast": int(h["fast_inflight"]), "relax": int(h["relax_inflight"])},
            video_inflight=int(h.get("video_inflight") or 0),
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

    def public(self) -> dict[str, Any]:
        """The account as JSON-ready data, as `byoa accounts list --json` and `byoa status
        --json` show it: each stored time (`renews_at_us`...) as ISO 8601 in UTC under the
        name without `_us` (`renews_at`), as task records give theirs."""
        data = self.model_dump(mode="json")
        for name in TIME_FIELDS:
            data[name] = iso_us(data.pop(f"{name}_us"))
        return data

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
TIME_FIELDS = ("flipped_at", "renews_at", "cooldown_until", "backend_synced_at")
"""AccountView's times, kept as epoch microseconds (`<name>_us`) and shown as ISO 8601."""


def _today() -> int:
    return int(time.time() // 86400)


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
        raise InvalidAccountsFile(f"{p}: {e.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise InvalidAccountsFile(f"{p}: {e}") from None
    if not isinstance(raw, list):
        raise InvalidAccountsFile(f"{p}: expected a list of accounts")
    specs: list[AccountSpec] = []
    for i, item in enumerate(raw):
        try:
            specs.append(AccountSpec.model_validate(item))
        except ValidationError as e:
            name = item.get("id") if isinstance(item, dict) else None
            known = isinstance(name, str) and ID_RE.fullmatch(name)
            which = f"account {i + 1}" + (f" ({name})" if known else "")
            raise InvalidAccountsFile(f"{p}: {which}: {describe(e)}") from None
    return specs
