"""Settings: environment (`BYOA_` prefix) over an optional TOML file over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from router import costs
from router.addresses import parse_networks
from router.costs import CostFactors
from router.models import Mode, Plan, Strategy, TaskType

CONFIG_ENV = "BYOA_CONFIG"
"""Environment variable naming the TOML settings file (optional)."""

# Bounds on every number an operator gives (settings here, accounts in `router.accounts`).
# The scripts keep time in microseconds and GPU time in milliseconds as Redis integers
# (64-bit) and Lua numbers (doubles, exact to 2**53, about 9e15): each bound keeps what is
# derived from it, and sums of it, far inside both, and refuses what can only be a typo.
MAX_FAST_HOURS = 10_000.0
"""Fast hours an account or a plan may hold: the largest plan has 60 a month, so this is
years of top-ups (3.6e10 ms), and it catches a mistyped exponent (`1e13`)."""
MAX_SLOT_LIMIT = 100
"""Concurrent jobs per mode on one account: Midjourney allows at most 12."""
MAX_GPU_SECONDS = 3_600.0
"""GPU seconds one task may be estimated to use (a real job uses about a minute)."""
DAY_SECONDS = 86_400.0
"""Leases, timeouts, rests and intervals: none is sane beyond a day."""
MAX_TASK_TTL_SECONDS = 366 * 86_400
"""How long a finished task's record may be kept: a year."""
MAX_FACTOR = 1_000.0
"""Time scales and GPU-per-wall factors."""
MAX_CALLBACK_URL = 1_024
"""The callback base URL: a signed job URL adds at most about 200 characters to it."""

Seconds = Annotated[float, Field(gt=0, le=DAY_SECONDS, allow_inf_nan=False)]
"""A positive duration of at most a day."""
SecondsOrZero = Annotated[float, Field(ge=0, le=DAY_SECONDS, allow_inf_nan=False)]
Factor = Annotated[float, Field(gt=0, le=MAX_FACTOR, allow_inf_nan=False)]
GpuSeconds = Annotated[float, Field(gt=0, le=MAX_GPU_SECONDS, allow_inf_nan=False)]


class PlanLimits(BaseModel):
    """What a Midjourney plan gives an account; per-account values override the limits."""

    model_config = {
        "extra": "forbid",
        "frozen": True,
        "allow_inf_nan": False,
        "use_attribute_docstrings": True,
    }

    fast_hours: float = Field(ge=0, le=MAX_FAST_HOURS)
    """Fast GPU hours the plan gives an account each 30-day cycle (they do not roll over)."""
    relax: bool
    """Whether the plan gives relax time: relax work never runs on a plan without it."""
    fast_limit: int = Field(ge=0, le=MAX_SLOT_LIMIT)
    """Concurrent fast or turbo jobs an account of the plan runs."""
    relax_limit: int = Field(ge=0, le=MAX_SLOT_LIMIT)
    """Concurrent relax jobs an account of the plan runs; a plan without relax time gets none."""
    relax_video: bool = False
    """Relax (SD) video runs on it: Midjourney's video docs, "relax video on Pro and Mega"."""
    hd_video: bool = True
    """HD (720p) video runs on it, fast only: Midjourney's video docs (Standard and up)."""
    video_limit: int = Field(default=MAX_SLOT_LIMIT, ge=0, le=MAX_SLOT_LIMIT)
    """Video jobs it runs at once, besides its slots' limits (each video job takes a slot
    of its mode too). Unconfirmed: no source gives Midjourney's (useapi keeps a
    `maxVideoJobs` apart from `maxImageJobs`), so by default no limit of its own."""

    @model_validator(mode="after")
    def _relax_slots_need_relax_time(self) -> PlanLimits:
        """A plan without relax time has no relax slots (rule 2): said when the settings
        load, not when an account of the plan is added."""
        if not self.relax and self.relax_limit > 0:
            raise ValueError("relax_limit must be 0 on a plan without relax time (relax = false)")
        return self


DEFAULT_PLANS: dict[Plan, PlanLimits] = {
    Plan.BASIC: PlanLimits(
        fast_hours=3.3, relax=False, fast_limit=3, relax_limit=0, hd_video=False
    ),
    Plan.STANDARD: PlanLimits(fast_hours=15, relax=True, fast_limit=3, relax_limit=3),
    Plan.PRO: PlanLimits(fast_hours=30, relax=True, fast_limit=12, relax_limit=3, relax_video=True),
    Plan.MEGA: PlanLimits(
        fast_hours=60, relax=True, fast_limit=12, relax_limit=3, relax_video=True
    ),
}

DEFAULT_GPU_SECONDS: dict[TaskType, float] = {
    # "Processing one prompt usually takes about one minute of GPU time" (Midjourney's GPU
    # Speed page): one standard V7 image job, the unit of the rest.
    TaskType.IMAGINE: 60.0,
    TaskType.BLEND: 60.0,  # about an image job (unconfirmed)
    TaskType.DESCRIBE: 10.0,  # small (unconfirmed)
    TaskType.SHORTEN: 5.0,  # small (unconfirmed)
    TaskType.VARIATION: 60.0,  # at most an image job ("variations take less time")
    TaskType.REROLL: 60.0,
    TaskType.OUTPAINT: 60.0,
    TaskType.PAN: 60.0,
    TaskType.INPAINT: 60.0,
    TaskType.UPSCALE: 20.0,  # U1-U4 separate one image of a grid: small
    TaskType.UPSCALE_SUBTLE: 120.0,  # above an image job ("upscaling may take more
    TaskType.UPSCALE_CREATIVE: 120.0,  # time"); the factor 2 is unconfirmed
    TaskType.UPSCALE_2X: 120.0,  # V5 2x and 4x upscales: unconfirmed
    TaskType.UPSCALE_4X: 240.0,
    # A batch of 4 SD clips of 5 s is about 8 image jobs (Midjourney's video launch post);
    # trueai counts more than 8 fast units a video, 16 in turbo (DiscordService.cs). The
    # batch size scales it (`router.costs.batch_size`), HD multiplies it (`costs.hd_video`).
    TaskType.VIDEO: 480.0,
    TaskType.ANIMATE: 480.0,  # a video from an image: as a video
    TaskType.VIDEO_EXTEND: 480.0,  # as a video batch (unconfirmed)
    TaskType.VIDEO_UPSCALE: 20.0,  # a video's U1-U4: one clip separated (trueai counts it
    # free, DiscordService.cs): as an image's U1-U4
}
"""GPU seconds a task of each type uses at the fast rate, before its parameters
(`router.costs.estimate_ms`): the router's reservation estimate."""


class SimSettings(BaseModel):
    """The simulated account: how long jobs take per mode, relative to the fast run time."""

    model_config = {"extra": "forbid", "allow_inf_nan": False, "use_attribute_docstrings": True}

    fast_wall_factor: Factor = 0.8
    """Wall time of a fast job per GPU second it uses (before `sim_speed`)."""
    turbo_wall_factor: Factor = 0.35
    """Wall time of a turbo job per GPU second (at the fast rate) it uses."""
    relax_wall_factor: Factor = 3.0
    """Wall time of a relax job per GPU second (at the fast rate) it uses."""
    jitter: float = Field(default=0.2, ge=0, lt=1)
    """A job's GPU time varies by up to this share either side of its type's estimate."""
    transient_failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of submissions refused with a transient error (fixed per task and try)."""
    submit_latency_seconds: float = Field(default=0.0, ge=0, le=60)
    """Real time a submission takes to be answered (a real backend: 50-500 ms); not
    compressed by `sim_speed`."""
    poll_latency_seconds: float = Field(default=0.0, ge=0, le=60)
    """Real time a poll takes to be answered; not compressed by `sim_speed`."""


class MjProxySettings(BaseModel):
    """The midjourney-proxy driver: one proxy (base URL, secret) per account."""

    model_config = {"extra": "forbid", "allow_inf_nan": False, "use_attribute_docstrings": True}

    request_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Every HTTP request to a proxy gives up after this long (a transient error)."""
    server: Literal["auto", "trueai", "novicezk"] = "auto"
    """Which midjourney-proxy server the backends are, for accounts that do not say
    (`backend_server`); `auto`: ask each backend once."""
    lookup_via_list: bool = True
    """Find a job by its client reference (`state`) in `GET /mj/task/list`."""
    gpu_per_wall: dict[Mode, Factor] = Field(
        default_factory=lambda: {Mode.FAST: 1.0, Mode.TURBO: 4.0, Mode.RELAX: 1.0}
    )
    """GPU time at the fast rate per second of a job's run (proxies report no GPU time)."""
    account_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    """How long a worker reuses an account's URL and secret read from Redis."""

    @field_validator("gpu_per_wall", mode="before")
    @classmethod
    def _merge_gpu_per_wall(cls, value: Any) -> Any:
        """Overriding one mode keeps the others' defaults."""
        if not isinstance(value, dict):
            return value
        return {"fast": 1.0, "turbo": 4.0, "relax": 1.0, **value}


class Settings(BaseSettings):
    """Everything a router, worker or client process needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="BYOA_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """The Redis to use: `redis://`, `rediss://` (TLS), `redis://user:password@host:port/db`,
    `unix://` (a local socket), or a primary that Sentinel watches:
    `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/<db>]`
    (`rediss+sentinel://` for TLS to the sentinels and the servers); a secret, never
    printed."""
    redis_min_replicas: int = Field(default=0, ge=0, le=16)
    """Replicas that must acknowledge a write (Redis WAIT) before it is reported done: a
    submission accepted, an intake batch claimed, a task started on its account, a
    terminal state announced. 0: none (one Redis, or replication lag accepted); set 1 with
    Sentinel, so that a failover loses nothing a caller was told was accepted."""
    redis_wait_timeout_seconds: float = Field(default=1.0, gt=0, le=60, allow_inf_nan=False)
    """How long a write waits for those replicas; past it the caller gets `not_replicated`
    (retry with the same id or Idempotency-Key), never a silent success."""
    key_prefix: str = Field(default="byoa", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    """Every key the router writes starts with it."""
    driver: Literal["simulated", "mjproxy"] = "simulated"
    """The account driver: `simulated` (a model of a Midjourney account) or `mjproxy`
    (real accounts behind midjourney-proxy servers)."""
    sim_speed: float = Field(default=1.0, gt=0, le=1_000_000)
    """Simulator time scale: at 1000 a 60 s job takes 60 ms."""
    sim: SimSettings = SimSettings()
    """The simulated driver (`driver = "simulated"`)."""
    mjproxy: MjProxySettings = MjProxySettings()
    """The midjourney-proxy driver (`driver = "mjproxy"`)."""
    sim_clock: bool = False
    """Simulation only: scripts and the simulated driver read the time from
    `<prefix>:clock` (µs) when it is set, so a day of traffic runs in virtual time."""
    strategy: Strategy = Strategy.RENEWAL
    """How a task's account is chosen (see `Strategy`); every router of a pool must agree.
    `renewal` spends first the fast hours that would expire first; `least_loaded` is the
    choice before renewal dates counted; `fill_first`, `random`, `round_robin`, `weighted`
    and `best_wait_idle` are the open proxies' rules, kept for comparison and not for
    production: they bind a task to an account on arrival."""
    plans: dict[Plan, PlanLimits] = Field(default_factory=lambda: dict(DEFAULT_PLANS))
    """What each plan gives an account; a config may override one field of one plan."""
    gpu_seconds: dict[TaskType, GpuSeconds] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_SECONDS)
    )
    """GPU seconds a task of each type reserves at the fast rate (turbo: twice that), before
    its parameters scale them (`costs`)."""
    costs: CostFactors = CostFactors()
    """How a job's parameters scale its GPU seconds (`router.costs`)."""
    max_prompt_length: int = Field(default=6000, gt=0, le=1_000_000)
    """Longer prompts fail with `prompt_too_long`."""
    max_message_bytes: int = Field(default=65536, gt=0, le=64 * 1024 * 1024)
    """Larger intake messages are dead-lettered (`message_too_large`); larger `byoa api`
    request bodies answer 413."""
    task_ttl_seconds: int = Field(default=7 * 86400, gt=0, le=MAX_TASK_TTL_SECONDS)
    """How long a finished task's record is kept."""
    run_timeout_seconds: dict[Mode, Seconds] = Field(
        default_factory=lambda: {Mode.FAST: 600.0, Mode.TURBO: 300.0, Mode.RELAX: 3600.0}
    )
    """How long a job may run on its account before it fails with `timeout`."""
    intake_batch: int = Field(default=200, gt=0, le=10000)
    """Intake messages a router takes per round."""
    dispatch_lease_seconds: Seconds = 60.0
    """How long a placed task may wait unclaimed before a reaper checks its rq job."""
    dispatch_batch: int = Field(default=20, gt=0, le=1000)
    """Most placed tasks one rq job carries: a batch pays rq's per-job cost once. 1: one
    rq job per task."""
    run_lease_seconds: Seconds = 30.0
    """How long a running task stays held without its worker's heartbeat. A task being
    submitted whose lease expires is looked up on its account, and taken back only if the
    account surely has no such job; while the account cannot tell, the lease is extended,
    and past the run timeout the task fails `worker_lost`."""
    transient_retries: int = Field(default=3, ge=0, le=10)
    """How often a submission refused with a transient driver error is tried again."""
    transient_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    """Wait before the first such retry; it doubles for each next one."""
    cooldown_after_failures: int = Field(default=3, gt=0, le=1000)
    """An account failing transiently this often within the window rests (cooldown)."""
    cooldown_window_seconds: Seconds = 300.0
    """The window in which `cooldown_after_failures` transient failures are counted."""
    cooldown_seconds: SecondsOrZero = 600.0
    """How long such an account rests; its tasks wait for it or go to another account."""
    max_retries: int = Field(default=2, ge=0, le=100)
    """How often a task whose worker was lost before submitting it (or whose account failed
    transiently) is run again before it fails."""
    reap_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often each router takes over dead routers' intake, reaps expired leases and wakes
    accounts whose rest has ended."""
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    """The shortest wait between two polls of a submitted job. A job is first polled at
    its expected end, where its driver can tell it (the simulator can), else at once; past
    that the waits double from this one up to `poll_max_interval_seconds`."""
    poll_max_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    """The longest wait between two polls of a job that runs past its expected end: a slot
    is freed at most this long after its job ends (no callback)."""
    callback_poll_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    """With `callback_url` set, the longest wait between two polls of a job whose backend
    calls back (the midjourney-proxy servers): its callback makes its poll due at once, so
    polls are the safety net for a callback lost on the way."""
    poll_batch: int = Field(default=1000, gt=0, le=10000)
    """Most submitted jobs a worker claims to poll at once. Jobs claimed together are
    polled, and scheduled again, together: a backend that lists many jobs in one request
    is asked once per account per round, so a large batch keeps that to about one request
    per account per poll interval."""
    submit_threads: int = Field(default=16, gt=0, le=1024)
    """Submissions one worker process has in flight at once (a backend takes 50-500 ms to
    accept a job); 1: each rq job submits its task itself."""
    poll_threads: int = Field(default=8, gt=0, le=256)
    """Driver polls a worker process runs at once (HTTP backends answer slowly)."""
    backend_sync_seconds: float = Field(default=300.0, ge=0, le=86400)
    """How often the workers read each account's state from its backend, where the backend
    tells it (fast time left): the router's hours and setting follow it. 0: never."""
    backend_drift_hours: float = Field(default=1.0, ge=0, le=10_000, allow_inf_nan=False)
    """Fast hours by which the router's reckoning may differ from the backend's before a
    worker warns (the Prometheus alert ByoaFastHoursDrift says the same)."""
    router_dead_seconds: float = Field(default=15.0, gt=0, le=3600)
    """A router silent this long is dead: its claimed intake messages are taken over."""
    dead_letter_max: int = Field(default=100_000, gt=0, le=100_000_000)
    """Most dead letters kept (`<prefix>:dead`): the oldest beyond it are dropped."""
    metrics_enabled: bool = True
    """Serve /metrics, /healthz and /readyz from every router (`byoa run`)."""
    metrics_host: str = "0.0.0.0"
    """The address each router serves /metrics, /healthz and /readyz on."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """The port each router serves them on (also where backend callbacks arrive). A port
    another process holds stops `byoa run` at start (exit 1), never runs it blind."""
    metrics_threads: int = Field(default=16, gt=0, le=256)
    """Requests the router's HTTP port works on at once: a scrape, a readiness check and a
    callback each take a thread for their Redis calls (/healthz takes none). One more waits
    up to `metrics_timeout_seconds` for a thread, then is answered 503."""
    metrics_max_connections: int = Field(default=512, gt=0, le=100_000)
    """Connections the router's HTTP port holds open, and at most a quarter of the
    process's open-file limit (Redis needs descriptors too). One more drops the connection
    that has waited longest for a request head, so idle sockets cannot keep a probe out."""
    metrics_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """On the router's HTTP port: a request head must arrive within this of connecting (or
    of the previous response), and its body within this of its head; a connection that
    misses either is closed (408 if it started a request)."""
    api_host: str = "0.0.0.0"
    """Where `byoa api` (the HTTP task API) listens."""
    api_port: int = Field(default=8080, ge=0, le=65535)
    """The port `byoa api` listens on."""
    api_max_connections: int = Field(default=4096, gt=0, le=1_000_000)
    """Connections `byoa api` holds open, and at most a quarter of the process's open-file
    limit (raise the limit, e.g. systemd's `LimitNOFILE`, for more). One more drops the
    connection that has waited longest for a request head, so idle sockets cannot keep
    requests or probes out."""
    api_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """`byoa api`: a request body not received within this answers 408, and a Redis call
    not answered within this fails (503); an idle keep-alive connection closes after it."""
    callback_url: str | None = None
    """The base URL at which backends reach a router's HTTP port (the metrics port), e.g.
    `http://byoa-router:9464`: drivers that can ask a backend to call back when a job
    changes give it a signed URL under it, and a callback makes the job's next poll due at
    once. Unset: no callbacks, polling only."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Most time one webhook POST may take, all of it: resolving the name, connecting,
    sending, and the whole answer. Past it the attempt fails (`timeout`) and is retried
    after its backoff; a warm shutdown waits for POSTs under way at most this long."""
    webhook_retries: int = Field(default=5, ge=0, le=20)
    """How often a failed webhook POST is tried again before it is recorded failed."""
    webhook_backoff_seconds: float = Field(default=2.0, ge=0, le=600)
    """Wait before the first webhook retry; it doubles for each next one."""
    webhook_threads: int = Field(default=8, gt=0, le=256)
    """Webhook POSTs one worker process makes at once."""
    webhook_owner_threads: int = Field(default=2, gt=0, le=256)
    """Of those, most one owner's deliveries may hold at once: an owner whose endpoints are
    slow waits for its own threads, never another owner's."""
    webhook_allowed_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list
    )
    """Networks outside public address space that webhooks may reach, comma-separated CIDRs
    (`10.0.0.0/8,127.0.0.0/8`). Empty (the default): a webhook goes to public addresses
    only, checked at submit for an address in the URL and at delivery for every address its
    name resolves to (`router.addresses`)."""

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        """Comma-separated in the environment; a list or a string in the TOML file."""
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return parse_networks(value)
        return value

    @field_validator("callback_url")
    @classmethod
    def _check_callback_url(cls, value: str | None) -> str | None:
        """An http(s) base URL with a host and nothing a path is appended after badly (a
        query, a fragment) or that would travel to every backend (a user or password);
        short enough that a signed URL under it fits trueai's 2000 characters."""
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
            or not url.isascii()
            or not url.isprintable()
            or " " in url
        ):
            raise ValueError(
                "must be an http:// or https:// URL with a host, and no user, "
                "password, query or fragment"
            )
        if len(url) > MAX_CALLBACK_URL:
            raise ValueError(f"must be at most {MAX_CALLBACK_URL} characters")
        return url

    @field_validator("plans", mode="before")
    @classmethod
    def _merge_plans(cls, value: Any) -> Any:
        """A config may override one plan, or one field of a plan; the rest keep defaults."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {p.value: d.model_dump() for p, d in DEFAULT_PLANS.items()}
        for name, override in value.items():
            base = merged.get(str(name), {})
            if isinstance(override, PlanLimits):
                override = override.model_dump()
            if isinstance(override, dict):
                if str(override.get("relax", "")).lower() in ("false", "0") and (
                    "relax_limit" not in override
                ):  # a plan made relax-less gets no relax slots unless it says otherwise
                    override = {**override, "relax_limit": 0}
                merged[str(name)] = {**base, **override}
            else:
                merged[str(name)] = override
        return merged

    @field_validator("gpu_seconds", mode="before")
    @classmethod
    def _merge_gpu_seconds(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {**{t.value: s for t, s in DEFAULT_GPU_SECONDS.items()}, **value}

    @field_validator("run_timeout_seconds", mode="before")
    @classmethod
    def _merge_timeouts(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {"fast": 600.0, "turbo": 300.0, "relax": 3600.0, **value}

    @property
    def job_timeout_seconds(self) -> int:
        """rq's own job timeout. The job only submits (with its transient retries and a
        wait for Redis); the run itself is polled, and timed, by `poll_*`."""
        backoff = self.transient_backoff_seconds * (2 ** (self.transient_retries + 1))
        return int(300 + backoff)

    @property
    def poll_hold_us(self) -> int:
        """How long a claimed poll stays one worker's: a dead poller's jobs come due again
        for another worker after this."""
        return round(max(5 * self.poll_interval_seconds, self.run_lease_seconds / 2) * 1e6)

    def longest_poll_wait_us(self, calls_back: bool) -> int:
        """The most µs between two polls of a running job (`poll_max_interval_seconds`, or
        `callback_poll_interval_seconds` when its backend calls back to `callback_url`);
        never below the poll interval."""
        longest = self.poll_max_interval_seconds
        if calls_back and self.callback_url:
            longest = self.callback_poll_interval_seconds
        return round(max(longest, self.poll_interval_seconds) * 1e6)

    @property
    def queue_name(self) -> str:
        """The rq queue that dispatched tasks go to."""
        return f"{self.key_prefix}-tasks"

    def estimate_ms(
        self, task_type: TaskType, prompt: str = "", input: Mapping[str, Any] | None = None
    ) -> int:
        """GPU milliseconds at the fast rate the router reserves for one task of this type,
        prompt and input (`router.costs.estimate_ms`)."""
        return costs.estimate_ms(task_type, prompt, input or {}, self.gpu_seconds, self.costs)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{CONFIG_ENV}={path}: no such settings file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and `config` (or $BYOA_CONFIG), with explicit overrides."""
    if config is None:
        return Settings(**overrides)
    previous = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(config)
    try:
        return Settings(**overrides)
    finally:
        if previous is None:
            del os.environ[CONFIG_ENV]
        else:
            os.environ[CONFIG_ENV] = previous
