"""Vocabulary of the product: modes, plans, task types, statuses, error codes, ids."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Ids of owners, accounts and tasks: they go into Redis keys and rq job ids, so nothing else."""

ID_RE = re.compile(ID_PATTERN[1:-1])
"""Use with `fullmatch` (`$` would let a trailing newline through)."""

Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class Mode(StrEnum):
    """The speed a task runs at on Midjourney."""

    RELAX = "relax"
    FAST = "fast"
    TURBO = "turbo"


class Setting(StrEnum):
    """An account's own mode setting (Midjourney's /fast and /relax)."""

    FAST = "fast"
    RELAX = "relax"


class Slot(StrEnum):
    """Which concurrency pool a task occupies: turbo shares the fast slots."""

    FAST = "fast"
    RELAX = "relax"


class Strategy(StrEnum):
    """How a task's account is chosen: ours, or one of the open proxies' rules (which bind
    a task to an account on arrival), kept for comparison."""

    RENEWAL = "renewal"
    """Ours (the default): one line per owner and mode; a freed slot goes to its head. A
    fast or turbo task goes to the free account whose fast hours would expire first (the
    earliest latest start, `policy.latest_start_us`), Basic first among equally urgent
    ones, then the least loaded; accounts without a renewal date come last, as in
    `LEAST_LOADED`. Relax as `LEAST_LOADED`."""
    LEAST_LOADED = "least_loaded"
    """The owner lines of `RENEWAL`, but a new task goes to the free account with the lowest
    load, then the most fast time (the router before renewal dates counted)."""
    FILL_FIRST = "fill_first"
    """trueai midjourney-proxy's AccountFill: the first account with a free slot, in a fixed
    order (account id order here); if none has one, bound to `BEST_WAIT_IDLE`'s choice,
    where it waits even if another account frees first (as the peers do)."""
    RANDOM = "random"
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    """Random, weighted by the account's slot limit."""
    BEST_WAIT_IDLE = "best_wait_idle"
    """The account with the fewest tasks queued on it plus running."""


class Plan(StrEnum):
    BASIC = "basic"
    STANDARD = "standard"
    PRO = "pro"
    MEGA = "mega"


class TaskType(StrEnum):
    IMAGINE = "imagine"
    DESCRIBE = "describe"
    """An image's prompts, described (`/describe`)."""
    BLEND = "blend"
    """2 to 5 images blended into a grid (`/blend`)."""
    SHORTEN = "shorten"
    """A prompt's key words (`/shorten`)."""
    VIDEO = "video"
    """Image to video: a start image (and an end image), a batch of 1, 2 or 4 clips."""
    UPSCALE = "upscale"
    """U1-U4: one image of a grid, separated."""
    VARIATION = "variation"
    REROLL = "reroll"
    OUTPAINT = "outpaint"
    PAN = "pan"
    INPAINT = "inpaint"
    UPSCALE_SUBTLE = "upscale_subtle"
    """Upscale (Subtle) of an upscaled V6/V6.1/V7 image: a 2x upscale, close to it."""
    UPSCALE_CREATIVE = "upscale_creative"
    """Upscale (Creative) of an upscaled V6/V6.1/V7 image: a 2x upscale, reimagined."""
    UPSCALE_2X = "upscale_2x"
    """V5's Upscale (2x) of an upscaled image."""
    UPSCALE_4X = "upscale_4x"
    """V5's Upscale (4x) of an upscaled image."""
    ANIMATE = "animate"
    """A video from an upscaled image (its Animate button)."""
    VIDEO_EXTEND = "video_extend"
    """A clip of a video made about 4 s longer."""
    VIDEO_UPSCALE = "video_upscale"
    """A clip of an SD video upscaled to HD."""


TOP_LEVEL_TYPES = frozenset(
    {TaskType.IMAGINE, TaskType.DESCRIBE, TaskType.BLEND, TaskType.SHORTEN, TaskType.VIDEO}
)
"""Task types that start from nothing of the owner's: routed by rules 1-4."""
CHILD_TYPES = frozenset(TaskType) - TOP_LEVEL_TYPES
"""Task types that act on a finished parent job and so run on the parent's account."""


class JobClass(StrEnum):
    """What a job needs of an account beyond a slot of its mode: the plan rules per job
    type (relax video only on some plans, HD video fast only and not on every plan)."""

    IMAGE = "image"
    """Every image job (and describe, shorten): any account the mode's rules allow."""
    VIDEO = "video"
    """SD (480p) video: fast on any plan; relax only on plans with relax video."""
    HD_VIDEO = "hd_video"
    """HD (720p) video: fast only, on plans with HD video."""


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class ErrorCode(StrEnum):
    """Stable error codes stored on failed tasks and dead letters, or answered by the API."""

    INVALID_JSON = "invalid_json"
    INVALID_TASK = "invalid_task"
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    PROMPT_TOO_LONG = "prompt_too_long"
    MESSAGE_TOO_LARGE = "message_too_large"
    DUPLICATE_ID = "duplicate_id"
    NO_ACCOUNT = "no_account"
    NO_RELAX_ACCOUNT = "no_relax_account"
    PARENT_NOT_FOUND = "parent_not_found"
    PARENT_NOT_COMPLETED = "parent_not_completed"
    PARENT_ACCOUNT_UNAVAILABLE = "parent_account_unavailable"
    NO_RELAX_VIDEO_ACCOUNT = "no_relax_video_account"
    """Relax video runs only on plans with relax video (Pro, Mega), and the owner has none."""
    HD_VIDEO_FAST_ONLY = "hd_video_fast_only"
    """HD video runs fast only: asked relax, or the child of a relax task."""
    NO_FAST_HOURS = "no_fast_hours"
    """A job that runs fast only (HD video) and no account that runs it has fast hours."""
    PARENT_KIND_MISMATCH = "parent_kind_mismatch"
    """A child whose parent is not what it acts on (a video's button on an image, an
    image's on a video, anything on a describe's or shorten's prompts)."""
    PLAN_DISALLOWS_JOB = "plan_disallows_job"
    """A child whose parent's account is on a plan that cannot run it (HD on Basic, relax
    video on Standard)."""
    ACCOUNT_ATTENTION = "account_attention"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    DRIVER_ERROR = "driver_error"
    MODE_UNSUPPORTED = "mode_unsupported"
    INTERNAL_ERROR = "internal_error"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # Refusals of an operator's or a caller's request (raised, never stored on a task).
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_EXISTS = "account_exists"
    ACCOUNT_BUSY = "account_busy"
    INVALID_ACCOUNT = "invalid_account"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_ACCOUNTS_FILE = "invalid_accounts_file"
    INVALID_KEY = "invalid_key"
    KEY_NOT_FOUND = "key_not_found"
    TASK_NOT_FOUND = "task_not_found"
    TASK_FINISHED = "task_finished"
    WAIT_TIMEOUT = "wait_timeout"
    BAD_REDIS_URL = "bad_redis_url"
    REDIS_UNREACHABLE = "redis_unreachable"
    NOT_REPLICATED = "not_replicated"
    """A write was not acknowledged by `redis_min_replicas` replicas in time: nothing is
    reported accepted; the same call with the same id (or Idempotency-Key) can be retried."""
    METRICS_PORT_UNAVAILABLE = "metrics_port_unavailable"
    API_PORT_UNAVAILABLE = "api_port_unavailable"


class FallbackReason(StrEnum):
    """Why a task runs relax although it asked for fast or turbo."""

    FAST_HOURS_EXHAUSTED = "fast_hours_exhausted"
    ACCOUNT_SET_TO_RELAX = "account_set_to_relax"


def slot_for(mode: Mode) -> Slot:
    """The concurrency pool a task in `mode` uses."""
    return Slot.RELAX if mode is Mode.RELAX else Slot.FAST
