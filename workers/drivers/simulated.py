"""A faithful model of a Midjourney account, for demos and tests.

It keeps its own view of each account in Redis (fast balance, running jobs, the most
it ever ran at once) so that tests audit the router against an independent party. It
refuses work the account could not do: fast without fast time, a prompt whose mode flag
is not the job's mode, a child whose parent job lives on another account.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis import Redis

from router.costs import INHERITED, batch_size, job_class
from router.driver import (
    AccountRef,
    BackendAccount,
    Driver,
    DriverError,
    DriverJob,
    DriverResult,
    OutOfFastHours,
    TransientError,
    UnknownJob,
)
from router.keys import Keys
from router.models import JobClass, Mode, Setting, TaskType, slot_for
from router.modes import prompt_flags
from router.policy import fast_cost_ms
from router.scripts import text, text_hash
from router.settings import Settings

SIM_START = """
-- SIM_START: the simulated account accepts a job; it runs until its end time whether or
-- not anyone polls it (as a real account's job outlives the worker that submitted it).
-- KEYS[1] the account's sim hash, KEYS[2] its running jobs in that slot (zset handle ->
-- end µs), KEYS[3] the job's hash, KEYS[4] (optional) a simulation's virtual clock (µs)
-- ARGV[1] slot ('fast'|'relax'), ARGV[2] fast ms to seed a new account with,
-- ARGV[3] fast ms the job uses (0 at relax), ARGV[4] wall time µs, ARGV[5] GPU ms,
-- ARGV[6] output JSON, ARGV[7] handle, ARGV[8] seconds the job's hash is kept
-- returns jobs now running in that slot; 0 if this handle was already submitted (an
-- idempotent retry); -1 if the job needs fast time and the account has none
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSETNX', KEYS[1], 'fast_ms', ARGV[2])
local cost = tonumber(ARGV[3])
if cost > 0 and tonumber(redis.call('HGET', KEYS[1], 'fast_ms')) <= 0 then return -1 end
local now = KEYS[4] and tonumber(redis.call('GET', KEYS[4]) or '')
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ends = now + tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- jobs that have ended
redis.call('ZADD', KEYS[2], ends, ARGV[7])
local n = redis.call('ZCARD', KEYS[2])
if n > tonumber(redis.call('HGET', KEYS[1], 'max_running_' .. ARGV[1]) or '0') then
  redis.call('HSET', KEYS[1], 'max_running_' .. ARGV[1], n)
end
redis.call('HINCRBY', KEYS[1], 'jobs', 1)
redis.call('HINCRBY', KEYS[1], 'fast_ms', 0 - cost)
redis.call('HSET', KEYS[3], 'status', 'running', 'ends', string.format('%d', ends),
  'gpu_ms', ARGV[5], 'output', ARGV[6], 'running', KEYS[2])
redis.call('EXPIRE', KEYS[3], ARGV[8])
return n
"""


def draw(task_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the task id and `salt`: simulated runs are reproducible."""
    digest = hashlib.blake2b(f"{salt}:{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SimulatedDriver(Driver):
    """Runs jobs on simulated accounts; `settings.sim_speed` compresses time.

    Jobs live in Redis under their handle (`<account>:<the job's key>`, a random key when
    it has none), so any process can poll them, and a job keeps its account busy after its
    submitter dies.
    """

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self._start = redis.register_script(SIM_START)
        self._tries: dict[str, int] = {}
        self._clock = [self.keys.clock] if settings.sim_clock else []

    def _wall_factor(self, mode: Mode) -> float:
        sim = self.settings.sim
        return {
            Mode.FAST: sim.fast_wall_factor,
            Mode.TURBO: sim.turbo_wall_factor,
            Mode.RELAX: sim.relax_wall_factor,
        }[mode]

    def _gpu_seconds(self, job: DriverJob) -> float:
        """The job's GPU seconds at the fast rate by the cost model, before jitter."""
        task_type, given = TaskType(job.task_type), dict(job.input)
        if task_type in INHERITED and job.parent_result and job.parent_result.get("hd"):
            given.setdefault("video_type", "hd")  # an extend of an HD video is HD
        return self.settings.estimate_ms(task_type, job.prompt or "", given) / 1000

    def expected_seconds(self, job: DriverJob) -> float | None:
        """The job's wall time by the cost model and the mode's wall factor, without its
        jitter (which the router cannot know), compressed by `sim_speed`."""
        return self._gpu_seconds(job) * self._wall_factor(job.mode) / self.settings.sim_speed

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
        slot = slot_for(job.mode)
        jitter = self.settings.sim.jitter
        task_type = TaskType(job.task_type)
        given = dict(job.input)
        if task_type in INHERITED and job.parent_result and job.parent_result.get("hd"):
            given.setdefault("video_type", "hd")  # an extend of an HD video is HD
        gpu_s = self._gpu_seconds(job) * (1 + jitter * (2 * draw(job.task_id, "gpu") - 1))
        gpu_ms = round(gpu_s * 1000)
        wall_us = round(gpu_s * self._wall_factor(job.mode) / self.settings.sim_speed * 1e6)
        output = _output(account.id, job.task_id, task_type, given, job.prompt or "")
        handle = f"{account.id}:{job.key or uuid.uuid4().hex}"  # its account's key tag
        keys = [
            self.keys.sim_account(account.id),
            self.keys.sim_running(account.id, slot),
            self.keys.sim_job(handle),
            *self._clock,
        ]
        args = [
            slot.value,
            account.fast_ms,
            fast_cost_ms(job.mode, gpu_ms),
            wall_us,
            gpu_ms,
            json.dumps(output),
            handle,
            self.settings.task_ttl_seconds,
        ]
        if int(self._start(keys=keys, args=args)) < 0:
            raise OutOfFastHours(f"account {account.id} has no fast time left")
        if self.settings.sim.submit_latency_seconds:  # the backend answers this late
            time.sleep(self.settings.sim.submit_latency_seconds)
        return handle

    def poll(self, handle: str) -> DriverResult | None:
        found = self.poll_many([handle])[handle]
        if isinstance(found, DriverError):
            raise found
        return found

    def poll_many(self, handles: Sequence[str]) -> dict[str, DriverResult | DriverError | None]:
        """Every job in one round trip (as a backend listing many jobs at once)."""
        if self.settings.sim.poll_latency_seconds:  # the backend answers this late
            time.sleep(self.settings.sim.poll_latency_seconds)
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        if self._clock:
            pipe.get(self._clock[0])
        for handle in handles:
            pipe.hmget(self.keys.sim_job(handle), "status", "ends", "gpu_ms", "output")
        (seconds, micros), *replies = pipe.execute()
        clock = replies.pop(0) if self._clock else None
        now = int(clock) if clock else int(seconds) * 1_000_000 + int(micros)
        found: dict[str, DriverResult | DriverError | None] = {}
        for handle, (status, ends, gpu_ms, output) in zip(handles, replies, strict=True):
            if status is None:
                found[handle] = UnknownJob(f"no simulated job {handle}")
            elif text(status) == "cancelled":
                found[handle] = DriverError(f"job {handle} was cancelled")
            elif now < int(ends):
                found[handle] = None
            else:
                found[handle] = DriverResult(int(gpu_ms), json.loads(output))
        return found

    def cancel(self, handle: str) -> int:
        job = self.keys.sim_job(handle)
        status, running, gpu_ms = self.redis.hmget(job, "status", "running", "gpu_ms")
        if status is None or running is None or gpu_ms is None:
            return 0
        if text(status) == "running":
            pipe = self.redis.pipeline()  # the account forgets the job and frees its slot
            pipe.zrem(text(running), handle)
            pipe.hset(job, "status", "cancelled")
            pipe.execute()
        return int(gpu_ms)  # charged in full when it started

    def lookup(self, account: AccountRef, key: str, started_ms: int | None = None) -> str | None:
        """The job's handle is its account and key: the account has it or surely has not."""
        if not key:
            raise DriverError("a job submitted without a key cannot be looked up")
        handle = f"{account.id}:{key}"
        return handle if self.redis.exists(self.keys.sim_job(handle)) else None

    def account_state(self, account: AccountRef) -> BackendAccount | None:
        """The simulated account's own fast balance, once its first job seeded it (a job is
        charged in full when it starts, so it runs ahead of the router's reckoning)."""
        raw = self.redis.hget(self.keys.sim_account(account.id), "fast_ms")
        if raw is None:
            return None
        fast_ms = int(raw)
        return BackendAccount(fast_ms=max(fast_ms, 0), exhausted=fast_ms <= 0, source="simulator")

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


def _output(
    account_id: str, task_id: str, task_type: TaskType, given: dict[str, Any], prompt: str
) -> dict[str, Any]:
    """What a simulated job of this type makes: an image, the clips of a video (and
    whether they are HD, which an extend inherits), or a describe's or shorten's prompts."""
    base = f"https://sim.invalid/{account_id}/{task_id}"
    output: dict[str, Any] = {"job_ref": f"{account_id}:{task_id}"}
    if task_type in (TaskType.DESCRIBE, TaskType.SHORTEN):
        output["prompts"] = [f"{prompt or 'an image'} ({n})".strip() for n in range(1, 5)]
        return output
    kind = job_class(task_type, given)
    if kind is JobClass.IMAGE and task_type not in INHERITED:
        output["image_url"] = f"{base}.png"
        return output
    clips = 1 if task_type is TaskType.VIDEO_UPSCALE else batch_size(prompt, given)  # its U1-4
    output["video_urls"] = [f"{base}-{n}.mp4" for n in range(1, clips + 1)]
    output["hd"] = kind is JobClass.HD_VIDEO
    return output
