"""Task records in Redis: submit (route and place), start, settle, cancel, read."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from redis import Redis
from redis.client import Pipeline

from router import replicas
from router.errors import REDIS_OUTAGES, PartialFailure
from router.models import CHILD_TYPES, Mode, TaskStatus
from router.modes import with_flag
from router.polls import Entry, Polls
from router.requests import NewTask
from router.scripts import Outcome, Scripts, text, text_hash
from router.settings import Settings


class TaskError(BaseModel):
    code: str
    message: str


class Task(BaseModel):
    """A task record as callers see it (`byoa task ID --json`, `Client.get`)."""

    id: str
    owner: str
    task_type: str
    status: TaskStatus
    requested_mode: Mode | None
    effective_mode: Mode | None
    fallback_reason: str | None
    account_id: str | None
    parent_id: str | None
    prompt: str | None
    """The prompt as sent to the account: one mode flag, the effective mode."""
    input: dict[str, Any]
    error: TaskError | None
    result: Any
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    retries: int
    """Times the task was run again after its worker was lost (the account may have run it)."""
    retry_reason: str | None
    ran_mode: Mode | None = None
    """The mode the backend says the job really ran in, where it differs from
    `effective_mode` (the account was charged for it)."""
    cancel_outcome: str | None = None
    """`cancel_unsupported`: a cancel was asked for but the backend cannot stop the job,
    which runs to its end and is charged."""
    handle: str | None = None
    """The backend's handle of the running attempt's job, once submitted."""
    webhook_endpoint: str | None = None
    """Where the task's state changes are POSTed (its secret is never shown)."""
    webhook_event: str | None = None
    """The latest delivery scheduled: `running`, or the terminal status."""
    webhook_status: str | None = None
    """That delivery's state: `pending`, `delivered` or `failed` (out of attempts)."""
    webhook_attempts: int | None = None
    """POSTs made for that delivery."""
    webhook_error: str | None = None
    """Why its last POST failed: `HTTP <status>` or the exception's name."""
    upgrade_reason: str | None = None
    """Why a relax task runs fast (`fast_hours_expiring`: its owner opted in to spend fast
    hours that would surely expire unused); None for every other task."""

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Task:
        effective = Mode(h["effective_mode"]) if h.get("effective_mode") else None
        base = h.get("prompt_base", "")
        prompt: str | None = base or None
        if effective is not None and (base or h.get("task_type") not in CHILD_TYPES):
            prompt = with_flag(base, effective)
        code = h.get("error_code")
        return cls(
            id=h["id"],
            owner=h["owner"],
            task_type=h.get("task_type", ""),
            status=TaskStatus(h["status"]),
            requested_mode=Mode(h["requested_mode"]) if h.get("requested_mode") else None,
            effective_mode=effective,
            fallback_reason=h.get("fallback_reason") or None,
            account_id=h.get("account_id") or None,
            parent_id=h.get("parent_id") or None,
            prompt=prompt,
            input=json.loads(h.get("input") or "{}"),
            error=TaskError(code=code, message=h.get("error_message", "")) if code else None,
            result=json.loads(h["result"]) if h.get("result") else None,
            created_at=_time(h.get("created_at")),
            started_at=_time(h.get("started_at")),
            finished_at=_time(h.get("finished_at")),
            attempt=int(h.get("attempt") or 0),
            retries=int(h.get("retries") or 0),
            retry_reason=h.get("retry_reason") or None,
            ran_mode=Mode(h["ran_mode"]) if h.get("ran_mode") else None,
            cancel_outcome=h.get("cancel_outcome") or None,
            handle=h.get("handle") or None,
            webhook_endpoint=h.get("webhook_endpoint") or None,
            webhook_event=h.get("webhook_event") or None,
            webhook_status=h.get("webhook_status") or None,
            webhook_attempts=int(h["webhook_attempts"]) if h.get("webhook_attempts") else None,
            webhook_error=h.get("webhook_error") or None,
            upgrade_reason=h.get("upgrade_reason") or None,
        )

    def public(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return self.model_dump(mode="json")


def _time(us: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(us) / 1e6, tz=UTC) if us else None


@dataclass(frozen=True)
class PollRead:
    """What POLL_ROUND read of one claimed attempt (see `TaskStore.poll_round`)."""

    entry: Entry
    verdict: str
    """`poll` (running, submitted: its lease now covers `due`), `stale` (settled, reclaimed
    or re-placed: its entry goes) or `wait` (running, no handle: a reaper is adopting it)."""
    handle: str
    cancel: bool
    started_us: int | None
    mode: Mode | None
    account_id: str
    due_us: int | None
    """When the job's next poll is due if it runs on (`poll` only)."""


@dataclass(frozen=True)
class Submitted:
    """What SUBMIT did with one task."""

    task_id: str
    owner: str
    created: bool
    """False when the id existed already (idempotent retry)."""
    status: TaskStatus
    error_code: str | None


class TaskStore:
    """Task records of every owner, changed only through the owner scripts."""

    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.scripts = scripts
        self.keys = scripts.keys
        self.polls = Polls(redis, scripts.keys, scripts)

    def claim_ids(self, tasks: Sequence[NewTask]) -> list[str]:
        """Bind each task id to its owner (ids are global); return each id's owner."""
        pipe = self.redis.pipeline(transaction=False)
        for t in tasks:  # SET NX GET: the owner it already had, or None if now this one
            pipe.set(self.keys.task_owner(t.id), t.owner, nx=True, get=True)
        replies = pipe.execute()
        return [
            t.owner if old is None else text(old) for t, old in zip(tasks, replies, strict=True)
        ]

    def submit_many(self, tasks: Sequence[NewTask]) -> tuple[list[Submitted], Outcome]:
        """Create, route and place tasks whose ids are claimed: one script call per owner.

        When some owners' calls fail and others' run, raises PartialFailure with what ran
        (its Outcome must still be applied); when none runs, the first error; a Redis outage
        (`REDIS_OUTAGES`) is raised as it is.
        """
        by_owner: dict[str, list[NewTask]] = defaultdict(list)
        for t in tasks:
            by_owner[t.owner].append(t)
        pipe = self.redis.pipeline(transaction=False)
        owners = list(by_owner)
        spans: list[tuple[int, int]] = []
        for owner in owners:
            first = len(pipe)
            self._keep_webhooks(owner, by_owner[owner], pipe)
            args: list[str | int] = [len(by_owner[owner])]
            for t in by_owner[owner]:
                args += t.argv()
            spans.append((first, len(pipe)))
            self.scripts.owner_call(self.scripts.submit, owner, args, pipe)
        durable = replicas.queue_wait(pipe, self.settings)
        outcome = Outcome()
        done: list[Submitted] = []
        failures: dict[str, Exception] = {}
        executed = pipe.execute(raise_on_error=False)
        acked = executed.pop() if durable else None
        for owner, (first, call) in zip(owners, spans, strict=True):
            errors = [r for r in executed[first : call + 1] if isinstance(r, Exception)]
            for e in errors:
                if isinstance(e, REDIS_OUTAGES):
                    raise e
            if errors:
                failures[owner] = errors[-1]
            if isinstance(executed[call], Exception):
                continue
            results, part = Scripts.decode(owner, executed[call])
            outcome.merge(part)
            for i in range(0, len(results), 4):
                tid, how, status, code = results[i : i + 4]
                done.append(
                    Submitted(tid, owner, how == "created", TaskStatus(status), code or None)
                )
        if durable:  # nothing is reported accepted before the replicas have it
            what = f"task {tasks[0].id}" if len(tasks) == 1 else f"a batch of {len(tasks)} tasks"
            replicas.check(acked, self.settings, what, outcome)
        if failures and not done:
            raise next(iter(failures.values()))
        if failures:
            raise PartialFailure((done, outcome), failures)
        return done, outcome

    def _keep_webhooks(self, owner: str, tasks: Sequence[NewTask], pipe: Pipeline) -> None:
        """Before SUBMIT: list the owner for listings (and for deliverers if it has webhooks),
        stage each webhook secret at a key
        named by its submission's nonce (SUBMIT moves it to the task if it creates the task,
        else deletes it; one never created expires)."""
        pipe.sadd(self.keys.task_owners, owner)
        if replicas.wanted(self.settings):  # `claim_ids` again, on the connection the WAIT
            for t in tasks:  # covers: were that claim lost in a failover, it is made again
                pipe.set(self.keys.task_owner(t.id), owner, nx=True)
        hooked = [t for t in tasks if t.webhook is not None]
        if hooked:
            pipe.sadd(self.keys.webhook_owners, owner)
        for t in hooked:
            secret = t.webhook.secret if t.webhook else None
            if secret is not None:
                key = self.keys.webhook_staged(owner, t.id, t.nonce)
                pipe.set(key, secret.get_secret_value(), ex=self.settings.task_ttl_seconds)

    def start(
        self, owner: str, task_id: str, attempt: int, token: str = ""
    ) -> tuple[bool, str, Outcome]:
        """Mark a placed task running; False (with its status) if it must not run. `token`
        names this delivery of the attempt: asked again with it (a lost reply), START
        answers True again; another delivery of the same rq job gets False."""
        args: list[str | int] = [task_id, attempt, token]
        if not replicas.wanted(self.settings):
            raw = self.scripts.owner_call(self.scripts.start, owner, args)
            (verdict, status), outcome = Scripts.decode(owner, raw)
            return verdict == "run", status, outcome
        pipe = self.redis.pipeline(transaction=False)  # the job runs on its account only
        self.scripts.owner_call(self.scripts.start, owner, args, pipe)  # once the replicas
        replicas.queue_wait(pipe, self.settings)  # have its start: a failover cannot have
        raw, acked = pipe.execute()  # it placed, and run, again (NotReplicated: START again
        (verdict, status), outcome = Scripts.decode(owner, raw)  # with the same token)
        if verdict == "run":
            replicas.check(acked, self.settings, f"the start of task {task_id}", outcome)
        return verdict == "run", status, outcome

    def settle(
        self,
        owner: str,
        task_id: str,
        attempt: int,
        outcome: str,
        gpu_ms: int = 0,
        result: Any = None,
        error: tuple[str, str] | None = None,
        ran_mode: str = "",
    ) -> tuple[str, Outcome]:
        """End a run: 'completed', 'failed' (with `error`), or re-route the task after
        'out_of_fast' (the account flips), 'attention' (the account leaves rotation) or
        'transient' (counted against the account; fails with `error` when out of retries).
        `ran_mode`: the mode the backend says the job ran in, charged as such ('' : as
        placed)."""
        code, message = error or ("", "")
        s = self.settings
        args: list[str | int] = [
            task_id,
            attempt,
            outcome,
            max(int(gpu_ms), 0),
            json.dumps(result, separators=(",", ":")),
            code,
            message,
            s.cooldown_after_failures,
            round(s.cooldown_window_seconds * 1e6),
            round(s.cooldown_seconds * 1e6),
            s.max_retries,
            ran_mode,
        ]
        raw = self.scripts.owner_call(self.scripts.settle, owner, args)
        (_, status), out = Scripts.decode(owner, raw)
        return status, out

    def renew(self, owner: str, task_id: str, attempt: int, handle: str = "") -> tuple[bool, bool]:
        """Extend a running task's lease, recording its driver job's `handle` if given:
        (still ours, cancel requested)."""
        verdict, cancel, _ = self._renew(owner, task_id, [task_id, attempt, handle], bool(handle))
        return verdict == "renewed", cancel == "1"

    def _renew(self, owner: str, task_id: str, args: list[str | int], handle: bool) -> list[str]:
        """RENEW's results. One that records a handle is kept once the replicas have it: a
        failover then cannot leave the job unknown."""
        if not handle or not replicas.wanted(self.settings):
            raw = self.scripts.owner_call(self.scripts.renew, owner, args)
            return Scripts.decode(owner, raw)[0]
        pipe = self.redis.pipeline(transaction=False)
        self.scripts.owner_call(self.scripts.renew, owner, args, pipe)
        replicas.queue_wait(pipe, self.settings)
        raw, acked = pipe.execute()
        results, _ = Scripts.decode(owner, raw)
        if results[0] == "renewed":
            replicas.check(acked, self.settings, f"the handle of task {task_id}")
        return results

    def submitted(
        self,
        owner: str,
        task_id: str,
        attempt: int,
        handle: str,
        mode: Mode,
        expected_us: int = 0,
    ) -> int | None:
        """Record a running attempt's driver job (`handle`), run in `mode` and expected to
        run `expected_us` (0: not known): when its first poll is due (Redis µs: its expected
        end, or just past its run timeout if sooner), or None if the task is no longer this
        attempt's. Its lease then runs a run lease past that poll."""
        limit_us = round(self.settings.run_timeout_seconds[mode] * 1e6)
        args: list[str | int] = [task_id, attempt, handle, max(int(expected_us), 0), limit_us]
        verdict, _, due = self._renew(owner, task_id, args, True)
        return int(due) if verdict == "renewed" else None

    def poll_round(self, entries: Sequence[Entry], longest_wait_us: int) -> list[PollRead]:
        """Read a round of claimed attempts for their polls and renew the leases of those
        still running to a run lease past their next poll: one POLL_ROUND per owner (a lean
        script: the owner prelude would cost more than the round's reads), all in one round
        trip. `longest_wait_us`: the most time between two polls of a job."""
        if not entries:
            return []
        s = self.settings
        by_owner: dict[str, list[Entry]] = defaultdict(list)
        for e in entries:
            by_owner[e.owner].append(e)
        common: list[str | int] = [
            round(s.poll_interval_seconds * 1e6),
            longest_wait_us,
            *(round(s.run_timeout_seconds[m] * 1e6) for m in (Mode.FAST, Mode.TURBO, Mode.RELAX)),
            round(s.run_lease_seconds * 1e6),
        ]
        pipe = self.redis.pipeline(transaction=False)
        owners = list(by_owner)
        for owner in owners:
            mine = by_owner[owner]
            keys = [self.keys.inflight(owner), *(self.keys.task(owner, e.task_id) for e in mine)]
            args = [*common, *(e.attempt for e in mine), *(e.task_id for e in mine)]
            self.scripts.poll_round(keys=keys, args=args, client=pipe)
        read: dict[Entry, PollRead] = {}
        for owner, raw in zip(owners, pipe.execute(), strict=True):
            results = [text(r) for r in raw]
            for e, i in zip(by_owner[owner], range(0, len(results), 7), strict=True):
                verdict, handle, cancel, started, mode, account_id, due = results[i : i + 7]
                read[e] = PollRead(
                    e,
                    verdict,
                    handle,
                    cancel == "1",
                    int(started) if started else None,
                    Mode(mode) if mode else None,
                    account_id,
                    int(due) if due else None,
                )
        return [read[e] for e in entries]

    def expired(
        self, owners: Sequence[str], now_us: int, limit: int = 100
    ) -> list[tuple[str, str]]:
        """(owner, task id) of leases past their deadline, oldest first, per owner."""
        pipe = self.redis.pipeline(transaction=False)
        for owner in owners:
            pipe.zrangebyscore(self.keys.inflight(owner), "-inf", now_us, start=0, num=limit)
        return [
            (owner, text(t)) for owner, ids in zip(owners, pipe.execute(), strict=True) for t in ids
        ]

    def reap(
        self, owner: str, task_id: str, attempt: int, action: str, max_retries: int
    ) -> tuple[str, Outcome]:
        """'extend' or 'reclaim' an expired lease (see REAP); returns what was done."""
        args: list[str | int] = [task_id, attempt, action, max_retries]
        raw = self.scripts.owner_call(self.scripts.reap, owner, args)
        (verdict, _), outcome = Scripts.decode(owner, raw)
        return verdict, outcome

    def wake(self, owner: str) -> Outcome:
        """Refresh the owner's accounts whose rest ended or renewal came, and give them work."""
        _, outcome = Scripts.decode(owner, self.scripts.owner_call(self.scripts.wake, owner, []))
        return outcome

    def cancel(self, owner: str, task_id: str) -> tuple[str, Outcome]:
        """Cancel a task (see CANCEL): its status after the call ('' if there is none)."""
        _, status, out = self.cancel_seen(owner, task_id)
        return status, out

    def cancel_seen(self, owner: str, task_id: str) -> tuple[str, str, Outcome]:
        """Cancel a task: its status before the call and after it ('' if there is none), so
        that a caller can tell a task this call ended from one that had already ended. A
        running task's next poll is made due at once: the poller carries the cancel out."""
        raw = self.scripts.owner_call(self.scripts.cancel, owner, [task_id])
        (status, before, attempt), out = Scripts.decode(owner, raw)
        if status == "running" and attempt:
            self.polls.later([Entry(owner, task_id, int(attempt))], 0)
        return before, status, out

    def owner_of(self, task_id: str) -> str | None:
        owner = self.redis.get(self.keys.task_owner(task_id))
        return text(owner) if owner else None

    def get(self, task_id: str, owner: str | None = None) -> Task | None:
        owner = owner or self.owner_of(task_id)
        if owner is None:
            return None
        h = self.redis.hgetall(self.keys.task(owner, task_id))
        return Task.from_hash(text_hash(h)) if h else None

    def get_many(self, refs: Sequence[tuple[str, str]]) -> list[Task | None]:
        """The records of (owner, task id) pairs, in one round trip (None: no such task)."""
        pipe = self.redis.pipeline(transaction=False)
        for owner, task_id in refs:
            pipe.hgetall(self.keys.task(owner, task_id))
        return [Task.from_hash(text_hash(h)) if h else None for h in pipe.execute()]

    def expire_ids(self, finished: Sequence[tuple[str, str]], ttl: int) -> None:
        """Give the global id of each finished task the same lifetime as its record."""
        if not finished:
            return
        pipe = self.redis.pipeline(transaction=False)
        for _, task_id in finished:
            pipe.expire(self.keys.task_owner(task_id), ttl)
        pipe.execute()
