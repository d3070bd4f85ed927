"""A faithful model of a Midjourney account, for demos and tests.

It keeps its own view of each account in Redis (fast balance, running jobs, the most
it ever ran at once) so that tests audit the router against an independent party. It
refuses work the account could not do: fast without fast time, a prompt whose mode flag
is not the job's mode, a child whose parent job lives on another account.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass

from redis import Redis

from router.keys import Keys
from router.models import Mode, Setting, TaskType, slot_for
from router.modes import prompt_flags
from router.scripts import text_hash
from router.settings import Settings
from workers.drivers.base import (
    AccountRef,
    Driver,
    DriverError,
    DriverJob,
    DriverResult,
    DriverTimeout,
    OutOfFastHours,
    TransientError,
)

SIM_START = """
-- SIM_START: the simulated account accepts a job.
-- KEYS[1] the account's sim hash
-- ARGV[1] slot ('fast'|'relax'), ARGV[2] fast ms to seed a new account with,
-- ARGV[3] '1' if the job needs fast time
-- returns jobs now running in that slot, or -1 if the account has no fast time
redis.call('HSETNX', KEYS[1], 'fast_ms', ARGV[2])
if ARGV[3] == '1' and tonumber(redis.call('HGET', KEYS[1], 'fast_ms')) <= 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'running_' .. ARGV[1], 1)
if n > tonumber(redis.call('HGET', KEYS[1], 'max_running_' .. ARGV[1]) or '0') then
  redis.call('HSET', KEYS[1], 'max_running_' .. ARGV[1], n)
end
redis.call('HINCRBY', KEYS[1], 'jobs', 1)
return n
"""

SIM_FINISH = """
-- SIM_FINISH: a simulated job ends and its fast time is used.
-- KEYS[1] the account's sim hash
-- ARGV[1] slot, ARGV[2] fast ms used (GPU ms; twice that at turbo; 0 at relax)
redis.call('HINCRBY', KEYS[1], 'running_' .. ARGV[1], -1)
redis.call('HINCRBY', KEYS[1], 'fast_ms', 0 - tonumber(ARGV[2]))
return 1
"""


@dataclass(frozen=True)
class _Job:
    account_id: str
    task_id: str
    mode: Mode
    started: float
    wall_s: float
    gpu_ms: int


def draw(task_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the task id and `salt`: simulated runs are reproducible."""
    digest = hashlib.blake2b(f"{salt}:{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SimulatedDriver(Driver):
    """Runs jobs on simulated accounts; `settings.sim_speed` compresses time."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self._start = redis.register_script(SIM_START)
        self._finish = redis.register_script(SIM_FINISH)
        self._jobs: dict[str, _Job] = {}
        self._tries: dict[str, int] = {}
        self._ids = itertools.count()

    def _wall_factor(self, mode: Mode) -> float:
        sim = self.settings.sim
        return {
            Mode.FAST: sim.fast_wall_factor,
            Mode.TURBO: sim.turbo_wall_factor,
            Mode.RELAX: sim.relax_wall_factor,
        }[mode]

    def submit(self, account: AccountRef, job: DriverJob) -> str:
        if job.prompt is not None and prompt_flags(job.prompt) != [job.mode]:
            raise DriverError(f"prompt must carry exactly one mode flag, --{job.mode}")
        if job.parent_result is not None:
            ref = str(job.parent_result.get("job_ref", ""))
            if not ref.startswith(f"{account.id}:"):
                raise DriverError(f"parent job {ref} is not on account {account.id}")
        tries = self._tries[job.task_id] = self._tries.get(job.task_id, 0) + 1
        if draw(job.task_id, f"transient-{tries}") < self.settings.sim.transient_failure_rate:
            raise TransientError(f"account {account.id} is rate limited; try again")
        slot = slot_for(job.mode).value
        needs_fast = "1" if job.mode is not Mode.RELAX else "0"
        key = self.keys.sim_account(account.id)
        running = int(self._start(keys=[key], args=[slot, account.fast_ms, needs_fast]))
        if running < 0:
            raise OutOfFastHours(f"account {account.id} has no fast time left")
        jitter = self.settings.sim.jitter
        scale = 1 + jitter * (2 * draw(job.task_id, "gpu") - 1)
        gpu_s = self.settings.gpu_seconds[TaskType(job.task_type)] * scale
        wall_s = gpu_s * self._wall_factor(job.mode) / self.settings.sim_speed
        handle = f"{os.getpid()}-{next(self._ids)}"
        self._jobs[handle] = _Job(
            account.id, job.task_id, job.mode, time.monotonic(), wall_s, round(gpu_s * 1000)
        )
        return handle

    def poll(self, handle: str) -> DriverResult | None:
        job = self._jobs.get(handle)
        if job is None:
            raise DriverError(f"unknown job handle {handle}")
        if time.monotonic() - job.started < job.wall_s:
            return None
        cost = {Mode.FAST: job.gpu_ms, Mode.TURBO: 2 * job.gpu_ms, Mode.RELAX: 0}[job.mode]
        key = self.keys.sim_account(job.account_id)
        self._finish(keys=[key], args=[slot_for(job.mode).value, cost])
        del self._jobs[handle]  # only once the account has recorded the end
        output = {
            "image_url": f"https://sim.invalid/{job.account_id}/{job.task_id}.png",
            "job_ref": f"{job.account_id}:{job.task_id}",
        }
        return DriverResult(job.gpu_ms, output)

    def wait(self, handle: str, timeout: float) -> DriverResult:
        job = self._jobs.get(handle)
        if job is None:
            raise DriverError(f"unknown job handle {handle}")
        remaining = job.started + job.wall_s - time.monotonic()
        if remaining > timeout:
            raise DriverTimeout(f"job {handle} did not finish within {timeout:g} s")
        if remaining > 0:
            time.sleep(remaining)  # the simulated account is busy for this long
        result = self.poll(handle)
        assert result is not None
        return result

    def switch_mode(self, account: AccountRef, setting: Setting) -> None:
        key = self.keys.sim_account(account.id)
        self.redis.hset(key, "setting", setting.value)
        if setting is Setting.FAST:
            self.redis.hset(key, "fast_ms", account.fast_ms)  # topped up by the owner

    # Test and demo hooks: the account's own truth.
    def set_fast_ms(self, account_id: str, fast_ms: int) -> None:
        self.redis.hset(self.keys.sim_account(account_id), "fast_ms", fast_ms)

    def audit(self, account_id: str) -> dict[str, int | str]:
        raw = self.redis.hgetall(self.keys.sim_account(account_id))
        out: dict[str, int | str] = {}
        for k, v in text_hash(raw).items():
            out[k] = int(v) if v.lstrip("-").isdigit() else v
        return out
