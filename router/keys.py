"""Every Redis key the product writes, in one place.

Owner-scoped keys share the hash tag `{o:<owner>}`, so every key a placement script
touches lives in one slot and the layout can move to Redis Cluster. The Lua scripts
build owner-scoped keys from the same suffixes through `lua_key_helpers()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.models import JobClass, Slot

NEED_SUFFIX = {JobClass.IMAGE: "", JobClass.VIDEO: ":video", JobClass.HD_VIDEO: ":hd"}
"""A job class's part of the names of the lines, free indexes and capability sets it uses:
what a task needs is its slot and its class (`need`), so a task waiting for what only some
accounts give (relax video, HD) never blocks tasks behind it that others can run."""
NEEDS: dict[Slot, tuple[JobClass, ...]] = {
    Slot.FAST: (JobClass.IMAGE, JobClass.VIDEO, JobClass.HD_VIDEO),
    Slot.RELAX: (JobClass.IMAGE, JobClass.VIDEO),
}
"""The classes each slot serves (HD video runs fast only)."""


def need(slot: Slot, job_class: JobClass = JobClass.IMAGE) -> str:
    """`fast`, `fast:video`, `fast:hd`, `relax` or `relax:video`."""
    return f"{slot.value}{NEED_SUFFIX[job_class]}"


# Suffixes under an owner's base key `<prefix>:{o:<owner>}`.
ACCOUNT = "acct"  # hash: one account's state (no secrets)
CREDENTIALS = "cred"  # string: one account's credentials, read only by drivers
TASK = "task"  # hash: one task record
ACCOUNTS = "accounts"  # set: the owner's account ids
ENABLED = "enabled"  # set: enabled accounts
FASTCAP = "fastcap"  # set: accounts that can ever run fast (rule 1)
RELAXCAP = "relaxcap"  # set: accounts with relax time (rule 2)
CAP = "cap"  # set per need but fast and relax: accounts that can ever run it (plan rules)
FREE = "free"  # zset per need: accounts that can start such a job now, by score
LINE = "line"  # list per need: tasks waiting for any account of the owner
FALLEN = "fallen"  # list per class: fast/turbo tasks that fell back to relax while waiting
PIN = "pin"  # list per account and need: child tasks waiting for that account
PINNED = "pinned"  # set: accounts with a non-empty pin line
INFLIGHT = "inflight"  # zset: tasks holding a slot, by lease deadline
TIMERS = "timers"  # zset: accounts by when their state next changes (rest, renewal, hours expiring)
STATS = "stats"  # hash: the owner's counters and duration histograms (see router.metrics)
WEBHOOK = "hook"  # string per task: its webhook secret, read only by deliverers
OUTBOX = "outbox"  # zset: webhook deliveries `<task>/<event>` by when due (µs)
CURSOR = "cursor"  # hash: per slot, the account a round-robin strategy chose last
SYNCED = "synced"  # string per account: held while one worker reads its backend's state
OPTIONS = "options"  # hash: the owner's choices (`upgrade_expiring`: '1' opted in)
EXPIRING = "expiring"  # zset, opted-in owners: accounts free for fast work, by when hours expire
IDEMPOTENCY = "idem"  # string per Idempotency-Key, expiring: the request that first used it
HOOK_FORMAT = "hookfmt"  # string per task: its webhook body's format (an API's), if not ours
MODAL = "mjmodal"  # string per task, expiring: a midjourney-proxy action waiting for its modal
TASKS = "tasks"  # zset: the owner's task ids by creation (µs); entries of expired records pruned


@dataclass(frozen=True)
class Keys:
    """Key names for one key prefix."""

    prefix: str

    # Global keys.
    @property
    def intake(self) -> str:
        """List that any language LPUSHes JSON task messages onto."""
        return f"{self.prefix}:intake"

    def intake_processing(self, router_id: str) -> str:
        """List holding a router's claimed, not yet handled, intake messages.

        Its hash tag is the intake list's whole name, so both live in one cluster slot.
        """
        return f"{self.prefix}:intake:{{{self.intake}}}:processing:{router_id}"

    def intake_landing(self, router_id: str) -> str:
        """List where a router's blocking claim puts one message, before INTAKE_CLAIM numbers
        it into its processing list (same cluster slot as the intake)."""
        return f"{self.prefix}:intake:{{{self.intake}}}:landing:{router_id}"

    @property
    def intake_counter(self) -> str:
        """Counter numbering claimed intake messages (same cluster slot as the intake)."""
        return f"{self.prefix}:intake:{{{self.intake}}}:claimed"

    @property
    def dead_letters(self) -> str:
        """List of messages that could not become a task, each with its reason."""
        return f"{self.prefix}:dead"

    @property
    def routers(self) -> str:
        """Sorted set router id -> last heartbeat (ms, Redis clock): the live replicas."""
        return f"{self.prefix}:routers"

    @property
    def api_processes(self) -> str:
        """Sorted set `byoa api` process id -> last heartbeat (ms, Redis clock): the live
        API processes, for `byoa status`."""
        return f"{self.prefix}:api-processes"

    @property
    def account_owners(self) -> str:
        """Hash account id -> owner: account ids are unique across owners."""
        return f"{self.prefix}:accounts"

    def task_owner(self, task_id: str) -> str:
        """String task id -> owner: task ids are unique across owners."""
        return f"{self.prefix}:id:{task_id}"

    def done_channel(self, task_id: str) -> str:
        """Pub/sub channel announcing that a task reached a terminal state."""
        return f"{self.prefix}:done:{task_id}"

    @property
    def sync_channel(self) -> str:
        """Pub/sub channel nobody listens on: a PUBLISH to it is replicated, so the WAIT
        after it on one connection covers everything that server had before (the record
        a reader is about to announce: `router.replicas.read_durably`)."""
        return f"{self.prefix}:sync"

    @property
    def polls(self) -> str:
        """Sorted set `<owner>/<task>/<attempt>` -> when a worker next polls its driver job.

        Holds every submitted, unsettled job; a worker claims entries by moving them ahead,
        so a job whose poller died comes due again for another.
        """
        return f"{self.prefix}:polls"

    # The simulator's keys of one account share the hash tag `{sim:<account>}`: its
    # script touches the account, its running jobs and the job in one slot.
    def sim_account(self, account_id: str) -> str:
        """Hash: the simulated Midjourney account's own view (balance, running jobs)."""
        return f"{self.prefix}:{{sim:{account_id}}}"

    def sim_running(self, account_id: str, slot: Slot) -> str:
        """Sorted set: the simulated account's running jobs (handle -> end, Redis µs)."""
        return f"{self.sim_account(account_id)}:running:{slot.value}"

    def sim_job(self, handle: str) -> str:
        """Hash: one simulated job (slot, end time, GPU ms, output), by its handle,
        `<account>:<key>` (`SimulatedDriver`): under its account's tag."""
        account_id, _, key = handle.partition(":")
        return f"{self.sim_account(account_id)}:job:{key}"

    # Owner-scoped keys.
    def owner_base(self, owner: str) -> str:
        return f"{self.prefix}:{{o:{owner}}}"

    def account(self, owner: str, account_id: str) -> str:
        return f"{self.owner_base(owner)}:{ACCOUNT}:{account_id}"

    def credentials(self, owner: str, account_id: str) -> str:
        return f"{self.owner_base(owner)}:{CREDENTIALS}:{account_id}"

    def backend_sync(self, owner: str, account_id: str) -> str:
        """String, expiring: the worker that set it reads the account's backend state this
        interval; the others leave it."""
        return f"{self.owner_base(owner)}:{SYNCED}:{account_id}"

    def task(self, owner: str, task_id: str) -> str:
        return f"{self.owner_base(owner)}:{TASK}:{task_id}"

    def accounts(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{ACCOUNTS}"

    def fastcap(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{FASTCAP}"

    def line(self, owner: str, slot: Slot, job_class: JobClass = JobClass.IMAGE) -> str:
        return f"{self.owner_base(owner)}:{LINE}:{need(slot, job_class)}"

    def pin(
        self, owner: str, account_id: str, slot: Slot, job_class: JobClass = JobClass.IMAGE
    ) -> str:
        return f"{self.owner_base(owner)}:{PIN}:{account_id}:{need(slot, job_class)}"

    def pinned(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{PINNED}"

    def inflight(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{INFLIGHT}"

    def timers(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{TIMERS}"

    def stats(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{STATS}"

    def owner_options(self, owner: str) -> str:
        """Hash: the owner's choices (`router.accounts.OwnerOptions`), e.g. `upgrade_expiring`."""
        return f"{self.owner_base(owner)}:{OPTIONS}"

    def task_index(self, owner: str) -> str:
        """Sorted set task id -> creation (µs): the owner's tasks, for listing newest first;
        SUBMIT adds each task it creates and drops entries whose record has expired."""
        return f"{self.owner_base(owner)}:{TASKS}"

    @property
    def task_owners(self) -> str:
        """Set: owners that ever submitted a task (whose task indexes a listing reads)."""
        return f"{self.prefix}:task-owners"

    def idempotency(self, owner: str, task_id: str) -> str:
        """String, expiring with the task TTL: the fingerprint of the request that first
        used an `Idempotency-Key`, by the task id the key gives (`router.api.idempotency`)."""
        return f"{self.owner_base(owner)}:{IDEMPOTENCY}:{task_id}"

    def hook_format(self, owner: str, task_id: str) -> str:
        """String, kept as long as the task: the format of its webhook body, for an API
        whose clients expect their own (`workers.webhooks.render`); absent, our record."""
        return f"{self.owner_base(owner)}:{HOOK_FORMAT}:{task_id}"

    def modal(self, owner: str, task_id: str) -> str:
        """String, expiring: a midjourney-proxy action held until its modal is confirmed
        (`router.api.mjapi`), under the task id it will have."""
        return f"{self.owner_base(owner)}:{MODAL}:{task_id}"

    def webhook_secret(self, owner: str, task_id: str) -> str:
        return f"{self.owner_base(owner)}:{WEBHOOK}:{task_id}"

    def webhook_staged(self, owner: str, task_id: str, nonce: str) -> str:
        """A submission's webhook secret until SUBMIT keeps it (see `webhook_secret`)."""
        return f"{self.webhook_secret(owner, task_id)}:{nonce}"

    def outbox(self, owner: str) -> str:
        return f"{self.owner_base(owner)}:{OUTBOX}"

    @property
    def webhook_owners(self) -> str:
        """Set: owners that submitted a task with a webhook (whose outboxes deliverers read)."""
        return f"{self.prefix}:webhook-owners"

    @property
    def callback_secret(self) -> str:
        """String: the key that signs the URLs backends call back on (`router.callbacks`);
        made once by whichever process needs it first."""
        return f"{self.prefix}:callback-secret"

    @property
    def idempotency_secret(self) -> str:
        """String: the key of the HMAC that turns an Idempotency-Key into a task id
        (`router.api.idempotency`); made once by whichever process needs it first."""
        return f"{self.prefix}:idempotency-secret"

    @property
    def clock(self) -> str:
        """String: the virtual time (µs) the scripts read when built for a simulation."""
        return f"{self.prefix}:clock"

    # API keys (`router.apikeys`): global, as a key names its owner.
    @property
    def api_keys(self) -> str:
        """Set: the ids of every API key made (revoked ones included, until deleted)."""
        return f"{self.prefix}:apikeys"

    def api_key(self, key_id: str) -> str:
        """Hash: one API key's record (owner, name, SHA-256 of the key, rate); never the key."""
        return f"{self.prefix}:apikey:{key_id}"

    def api_key_bucket(self, key_id: str) -> str:
        """Hash, expiring: the key's rate-limit bucket (tokens, last refill), for RATE_LIMIT."""
        return f"{self.prefix}:apikey:{key_id}:bucket"

    @property
    def global_stats(self) -> str:
        """Hash: counters that belong to no owner (dead letters)."""
        return f"{self.prefix}:stats"


ALL_NEEDS = tuple(need(slot, c) for slot, classes in NEEDS.items() for c in classes)
OWNER_KEYS: tuple[tuple[str, str], ...] = (
    ("K_ACCOUNTS", ACCOUNTS),  # KEYS[1]: it names the hash slot
    ("K_ENABLED", ENABLED),
    ("K_FASTCAP", FASTCAP),
    ("K_RELAXCAP", RELAXCAP),
    ("K_PINNED", PINNED),
    ("K_FALLEN", FALLEN),
    ("K_FALLEN_VIDEO", f"{FALLEN}:video"),
    ("K_INFLIGHT", INFLIGHT),
    ("K_TIMERS", TIMERS),
    ("K_STATS", STATS),
    ("K_OUTBOX", OUTBOX),
    ("K_CURSOR", CURSOR),
    ("K_OPTIONS", OPTIONS),
    ("K_EXPIRING", EXPIRING),
    ("K_TASKS", TASKS),
    *((f"line:{n}", f"{LINE}:{n}") for n in ALL_NEEDS),
    *((f"free:{n}", f"{FREE}:{n}") for n in ALL_NEEDS),
    *((f"cap:{n}", f"{CAP}:{n}") for n in ALL_NEEDS if ":" in n),
)
"""Every fixed key of an owner an owner script may touch, in the order of its KEYS: the
scripts are passed all of them (Redis Cluster wants the keys a script touches declared),
and the generated helpers name each (`lua_key_helpers`). Keys of one task or account
(its record, its pin lines, its webhook secret) are built in the scripts from the owner
base, `ARGV[1]`: they carry the same hash tag, so a call touches one slot only."""


def owner_keys(keys: Keys, owner: str) -> list[str]:
    """An owner script's KEYS (OWNER_KEYS, in order)."""
    base = keys.owner_base(owner)
    return [f"{base}:{suffix}" for _, suffix in OWNER_KEYS]


def lua_key_helpers() -> str:
    """Lua that names an owner script's KEYS (OWNER_KEYS), builds the keys of one task or
    account from `O` (the owner base, ARGV[1]) and `P` (prefix), and the needs (`need`):
    `need_of(slot, class)`, and NEEDS[slot], the needs of a slot."""
    suffix = ", ".join(f"{c.value} = '{s}'" for c, s in NEED_SUFFIX.items())
    needs = ", ".join(
        f"{slot.value} = {{{', '.join(repr(need(slot, c)) for c in classes)}}}"
        for slot, classes in NEEDS.items()
    )
    class_of = ",\n  ".join(
        f"[{need(slot, c)!r}] = {c.value!r}" for slot, classes in NEEDS.items() for c in classes
    )
    index = {name: i + 1 for i, (name, _) in enumerate(OWNER_KEYS)}
    named = "\n".join(f"local {n} = KEYS[{i}]" for n, i in index.items() if n.startswith("K_"))

    def table(kind: str, needs: tuple[str, ...]) -> str:
        rows = ",\n  ".join(f"[{n!r}] = KEYS[{index[f'{kind}:{n}']}]" for n in needs)
        return f"{{\n  {rows},\n}}"

    capped = tuple(n for n in ALL_NEEDS if ":" in n)
    return f"""
local NEED_SUFFIX = {{{suffix}}}
local function need_of(slot, class) return slot .. (NEED_SUFFIX[class] or '') end
local NEEDS = {{{needs}}}
local CLASSES = {{{", ".join(repr(c.value) for c in JobClass)}}}
local CLASS_OF = {{
  {class_of},
}}
{named}
local LINES = {table("line", ALL_NEEDS)}
local FREES = {table("free", ALL_NEEDS)}
local CAPS = {table("cap", capped)}
CAPS['fast'], CAPS['relax'] = K_FASTCAP, K_RELAXCAP
local FALLENS = {{image = K_FALLEN, video = K_FALLEN_VIDEO}}
local function known(t, name) return t[name] or error('no such need or class: ' .. name) end
local function k_line(need) return known(LINES, need) end
local function k_free(need) return known(FREES, need) end
local function k_cap(need) return known(CAPS, need) end
local function k_fallen(class) return known(FALLENS, class) end
local function k_acct(id) return O .. ':{ACCOUNT}:' .. id end
local function k_task(id) return O .. ':{TASK}:' .. id end
local function k_pin(id, need) return O .. ':{PIN}:' .. id .. ':' .. need end
local function k_done(id) return P .. ':done:' .. id end
local function k_hook(id) return O .. ':{WEBHOOK}:' .. id end
"""
