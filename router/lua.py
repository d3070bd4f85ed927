"""Lua scripts: every change to an owner's pool and waiting lines happens in one of these.

Common calling convention of the owner scripts:
  KEYS[1]  the owner's account set (`<prefix>:{o:<owner>}:accounts`); it names the hash
           slot, and every key the script touches carries the same `{o:<owner>}` tag.
  ARGV[1]  owner base key `<prefix>:{o:<owner>}`
  ARGV[2]  key prefix
  ARGV[3]  owner id
  ARGV[4]  seconds a terminal task record is kept
  ARGV[5]  dispatch lease, microseconds: how long a placed task may wait for its worker
  ARGV[6]  run lease, microseconds: how long a running task stays held without a renewal
  ARGV[7:] per script, below.
They return {results, placed, switches, finished}:
  placed    flat (task, account, attempt, slot) for every task given a slot: dispatch to rq
  switches  flat (account, setting) for every account whose setting changed: tell the driver
  finished  task ids that reached a terminal state in this call

Each owner script is `router.lua_lib.PRELUDE` (the shared functions) plus its body.
"""

from __future__ import annotations

from router.lua_lib import PRELUDE

SUBMIT = (
    PRELUDE
    + """
-- SUBMIT: create and route tasks of one owner; place those that can start now.
-- ARGV[7]  n, then n groups of 11: id, task_type, requested mode ('' for a child),
--          parent id, flag-free prompt, input JSON, estimate ms, rejection code, message,
--          webhook endpoint, webhook ('' none, '1' terminal states, 'progress' start too;
--          its secret is written apart, at `k_hook(id)`, before this script runs)
-- results  flat (id, 'created'|'duplicate', status, error code)
local results, hints = {}, {}
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  local b = 8 + i * 11
  local tid, ttype, req, parent = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local t = k_task(tid)
  if redis.call('EXISTS', t) == 1 then
    local f = redis.call('HMGET', t, 'status', 'error_code')
    for _, v in ipairs({tid, 'duplicate', f[1], f[2] or ''}) do results[#results + 1] = v end
  else
    redis.call('HSET', t, 'id', tid, 'owner', OWNER, 'task_type', ttype, 'status', 'queued',
      'parent_id', parent, 'prompt_base', ARGV[b + 4], 'input', ARGV[b + 5],
      'estimate_ms', ARGV[b + 6], 'created_at', istr(now()), 'attempt', '0')
    if ARGV[b + 10] ~= '' then
      redis.call('HSET', t, 'webhook', ARGV[b + 10], 'webhook_endpoint', ARGV[b + 9])
      redis.call('PERSIST', k_hook(tid))  -- kept while the task lives, then as long as it
    end
    local code, msg, mode, fallback, line
    if ARGV[b + 7] ~= '' then
      code, msg = ARGV[b + 7], ARGV[b + 8]
    elseif parent ~= '' then
      local pf = redis.call('HMGET', k_task(parent), 'status', 'effective_mode', 'account_id')
      if not pf[1] then
        code, msg = 'parent_not_found', 'owner ' .. OWNER .. ' has no task ' .. parent
      elseif pf[1] ~= 'completed' then
        code, msg = 'parent_not_completed', 'parent task ' .. parent .. ' is ' .. pf[1]
      else
        local acct = pf[3]
        req, mode = pf[2], pf[2]
        redis.call('HSET', t, 'account_id', acct)
        if redis.call('SISMEMBER', K_ENABLED, acct) == 0 then
          code = 'parent_account_unavailable'
          msg = 'account ' .. acct .. ' of the parent task is gone or disabled'
        else
          if mode ~= 'relax' and redis.call('SISMEMBER', K_FASTCAP, acct) == 0 then
            mode, fallback = 'relax', 'account_set_to_relax'
          end
          if mode == 'relax' and redis.call('SISMEMBER', K_RELAXCAP, acct) == 0 then
            code = 'parent_account_unavailable'
            msg = 'account ' .. acct .. ' of the parent task has no relax time'
          else
            line = k_pin(acct, slot_of(mode))
            redis.call('SADD', K_PINNED, acct)
            hints[#hints + 1] = acct
          end
        end
      end
    elseif redis.call('SCARD', K_ENABLED) == 0 then
      code, msg = no_relax_code()
    else
      mode = req
      if mode ~= 'relax' and redis.call('SCARD', K_FASTCAP) == 0 then
        mode, fallback = 'relax', fallback_reason()
      end
      if mode == 'relax' and redis.call('SCARD', K_RELAXCAP) == 0 then
        code, msg = no_relax_code()
      else
        line = k_line(slot_of(mode))
        local acct = bind(tid, slot_of(mode))  -- only a peer strategy binds on arrival
        if acct then
          line = k_pin(acct, slot_of(mode))
          redis.call('SADD', K_PINNED, acct)
          hints[#hints + 1] = acct
        end
      end
    end
    redis.call('HSET', t, 'requested_mode', req)
    count('submitted')
    if code then
      finish(tid, 'failed', code, msg)
    else
      redis.call('HSET', t, 'effective_mode', mode)
      if fallback then
        redis.call('HSET', t, 'fallback_reason', fallback, 'fallback_at', istr(now()))
        count('fallback:' .. fallback)
      end
      redis.call('RPUSH', line, tid)
    end
    local status = 'queued'
    if code then status = 'failed' end
    for _, v in ipairs({tid, 'created', status, code or ''}) do results[#results + 1] = v end
  end
end
pump(hints)
return out(results)
"""
)

START = (
    PRELUDE
    + """
-- START: a worker begins a placed task, unless it was cancelled or re-placed meanwhile;
-- if its account can no longer serve the task's slot (disabled, set to relax, out of fast
-- hours since it was placed), the task is routed again instead (rules 1-3).
-- ARGV[7] task id, ARGV[8] attempt the worker was given
-- results {'run'|'skip'|'missing', current status}
local tid = ARGV[7]
local t = k_task(tid)
local f = redis.call('HMGET', t, 'status', 'attempt', 'slot', 'account_id')
if not f[1] then return out({'missing', ''}) end
if f[1] == 'running' and f[2] == ARGV[8] then
  return out({'run', 'running'})  -- a retry of this START whose reply was lost
end
if f[2] ~= ARGV[8] or f[1] ~= 'queued' or not f[3] or f[3] == '' then
  return out({'skip', f[1]})
end
local cap = K_RELAXCAP
if f[3] == 'fast' then cap = K_FASTCAP end
if redis.call('SISMEMBER', cap, f[4]) == 0 then
  release(tid)
  requeue(tid, f[4])
  touch(f[4])
  reconcile()
  pump({})
  return out({'skip', redis.call('HGET', t, 'status')})
end
local g = redis.call('HMGET', t, 'created_at', 'effective_mode')
if redis.call('HSETNX', t, 'waited', '1') == 1 then  -- a task's wait counts once, not per try
  observe('wait', g[2] or '', now() - tonumber(g[1] or istr(now())))
end
redis.call('HSET', t, 'status', 'running', 'started_at', istr(now()))
redis.call('HDEL', t, 'handle')  -- an earlier attempt's driver job is not this one's
hook(tid, 'running')
redis.call('ZADD', K_INFLIGHT, istr(now() + RLEASE), tid)  -- the run lease
return out({'run', 'running'})
"""
)

SETTLE = (
    PRELUDE
    + """
-- SETTLE: a worker ends a task: free its slot, debit the GPU time it really used, record
-- the outcome, flip an exhausted account, hand the slot to the next waiting task.
-- ARGV[7] task id, ARGV[8] attempt,
-- ARGV[9] 'completed' | 'failed' | 'out_of_fast' (the account has no fast time: it flips,
--         the task is routed again; on a relax task, taken as 'transient') |
--         'attention' (the account leaves rotation with the error message as its reason,
--         the task is routed again) | 'transient' (the account kept failing transiently:
--         counted against it, the task is routed again while it has retries left),
-- ARGV[10] GPU ms used, ARGV[11] result JSON, ARGV[12] error code, ARGV[13] error message,
-- ARGV[14] transient failures that send an account to rest, ARGV[15] within how many µs,
-- ARGV[16] for how many µs, ARGV[17] retries a task may have
-- results {'settled'|'stale', status}
local tid, outcome = ARGV[7], ARGV[9]
local t = k_task(tid)
local f = redis.call('HMGET', t, 'status', 'attempt', 'effective_mode', 'parent_id',
  'cancel_requested', 'retries')
if not f[1] or f[2] ~= ARGV[8] or f[1] ~= 'running' then return out({'stale', f[1] or ''}) end
local mode = f[3]
-- A relax job cannot want fast time: the backend is mistaken. Routing it again would meet
-- the same answer for ever, so it counts as a transient failure (retries are bounded).
if outcome == 'out_of_fast' and mode == 'relax' then outcome = 'transient' end
local acct = release(tid)
local a = k_acct(acct)
local gpu = tonumber(ARGV[10])
if redis.call('EXISTS', a) == 1 then
  if gpu > 0 then
    redis.call('HINCRBY', a, 'used_' .. mode .. '_ms', gpu)
    local cost = 0
    if mode == 'fast' then cost = gpu elseif mode == 'turbo' then cost = 2 * gpu end
    if cost > 0 then redis.call('HINCRBY', a, 'fast_ms', 0 - cost) end
  end
  if outcome == 'out_of_fast' then redis.call('HSET', a, 'fast_ms', '0') end
  if outcome == 'attention' then
    redis.call('HSET', a, 'enabled', '0', 'attention_reason', ARGV[13],
      'attention_at', istr(now()))
  end
  if outcome == 'transient' then
    local h = redis.call('HMGET', a, 'fails', 'fails_since')
    local fails, since = tonumber(h[1] or '0'), tonumber(h[2] or '0')
    if now() - since > tonumber(ARGV[15]) then fails, since = 0, now() end
    fails = fails + 1
    redis.call('HSET', a, 'fails', istr(fails), 'fails_since', istr(since))
    if fails >= tonumber(ARGV[14]) then
      redis.call('HSET', a, 'cooldown_until', istr(now() + tonumber(ARGV[16])), 'fails', '0')
    end
  end
end
local retries = tonumber(f[6] or '0')
if outcome == 'transient' then
  if retries < tonumber(ARGV[17]) then
    redis.call('HSET', t, 'retries', istr(retries + 1), 'retry_reason', 'transient')
  else
    outcome = 'failed'
  end
end
local status
local reroute = outcome == 'out_of_fast' or outcome == 'attention' or outcome == 'transient'
if reroute and f[5] ~= '1' then
  status = 'queued'
  requeue(tid, acct)
else
  status = outcome
  if reroute or f[5] == '1' then status = 'cancelled' end
  if status == 'completed' then redis.call('HSET', t, 'result', ARGV[11]) end
  if status == 'failed' then
    finish(tid, status, ARGV[12], ARGV[13])
  else
    finish(tid, status)
  end
end
if acct then touch(acct) end
reconcile()
pump({acct})
return out({'settled', redis.call('HGET', t, 'status')})
"""
)

CANCEL = (
    PRELUDE
    + """
-- CANCEL: a queued task ends now and frees any slot it holds; a running one is marked,
-- and the worker polling its driver job cancels that job and settles it cancelled.
-- ARGV[7] task id
-- results {status after the call} ('' if there is no such task)
local tid = ARGV[7]
local status = redis.call('HGET', k_task(tid), 'status')
if not status then return out({''}) end
if status == 'running' then
  redis.call('HSET', k_task(tid), 'cancel_requested', '1')
elseif status == 'queued' then
  local acct = release(tid)
  finish(tid, 'cancelled')
  status = 'cancelled'
  if acct then
    touch(acct)
    pump({acct})
  end
end
return out({status})
"""
)

ACCOUNT_WRITE = (
    PRELUDE
    + """
-- ACCOUNT_WRITE: add, change or remove an account, then re-route what that changes.
-- ARGV[7] 'add'|'set'|'remove', ARGV[8] account id, ARGV[9:] field/value pairs
-- results {'ok'|'exists'|'missing'|'busy' (remove with jobs in flight)}
local op, id = ARGV[7], ARGV[8]
local a = k_acct(id)
local exists = redis.call('EXISTS', a) == 1
if op == 'add' and exists then return out({'exists'}) end
if op ~= 'add' and not exists then return out({'missing'}) end
if op == 'remove' then
  local n = redis.call('HMGET', a, 'fast_inflight', 'relax_inflight')
  if tonumber(n[1]) + tonumber(n[2]) > 0 then return out({'busy'}) end
  redis.call('DEL', a)
  redis.call('SREM', K_ACCOUNTS, id)
else
  local fields, given = {}, {}
  for i = 9, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    given[ARGV[i]] = ARGV[i + 1]
  end
  if op == 'set' then
    local cur = redis.call('HMGET', a, 'setting', 'flip_reason')
    if given.setting then
      fields[#fields + 1] = 'flip_reason'
      fields[#fields + 1] = ''
    elseif given.fast_ms and tonumber(given.fast_ms) > 0 and cur[1] == 'relax'
        and cur[2] == 'fast_hours_exhausted' then
      -- Fast time topped up: undo the automatic flip (rule 4).
      for _, v in ipairs({'setting', 'fast', 'flip_reason', ''}) do fields[#fields + 1] = v end
      given.setting = 'fast'
    end
    if given.enabled == '1' then
      for _, v in ipairs({'attention_reason', '', 'attention_at', ''}) do
        fields[#fields + 1] = v
      end
    end
    -- Tell the driver of a new setting, or of new fast time on a fast account.
    local setting = given.setting or cur[1]
    if setting ~= cur[1] or (given.fast_ms and setting == 'fast') then
      switches[#switches + 1] = id
      switches[#switches + 1] = setting
    end
  end
  if #fields > 0 then redis.call('HSET', a, unpack(fields)) end
  redis.call('SADD', K_ACCOUNTS, id)
end
touch(id)
reconcile()
local accts = redis.call('SMEMBERS', K_PINNED)
pump(accts)
return out({'ok'})
"""
)

RENEW = (
    PRELUDE
    + """
-- RENEW: whoever carries a running task extends its run lease: the worker submitting it
-- (a heartbeat), then whichever worker polls its driver job. With a handle it also
-- records the driver job, which from then on is polled, never submitted again.
-- ARGV[7] task id, ARGV[8] attempt, ARGV[9] driver job handle to record ('' for none)
-- results {'renewed'|'lost', cancel requested '1'|''}: 'lost' if the task is no longer
-- this attempt's (reaped, re-placed) or no longer running.
local tid = ARGV[7]
local f = redis.call('HMGET', k_task(tid), 'status', 'attempt', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[8] or not redis.call('ZSCORE', K_INFLIGHT, tid) then
  return out({'lost', f[3] or ''})
end
if ARGV[9] ~= '' then redis.call('HSET', k_task(tid), 'handle', ARGV[9]) end
redis.call('ZADD', K_INFLIGHT, istr(now() + RLEASE), tid)
return out({'renewed', f[3] or ''})
"""
)

REAP = (
    PRELUDE
    + """
-- REAP: act on a task whose lease has expired, if it still has.
-- ARGV[7] task id, ARGV[8] attempt seen expired, ARGV[9] 'extend' (its rq job is still
-- waiting for a worker; or the reaper itself was away, e.g. Redis restarted, so holders
-- get one more lease to renew) | 'reclaim', ARGV[10] how many times a task may be retried
-- results {'skipped'|'extended'|'submitted'|'reclaimed', status}
-- A running task whose driver job was submitted (it has a handle) is never reclaimed: the
-- job runs on the account whatever became of its worker, so its lease is extended and
-- 'submitted' tells the caller to make sure a worker polls it.
-- reclaim: a placed task whose rq job is gone is routed again (it never started); a
-- running task whose worker died before recording a driver job is retried (retries + 1,
-- retry_reason worker_lost) up to the limit, then fails `worker_lost`.
local tid = ARGV[7]
local t = k_task(tid)
local deadline = redis.call('ZSCORE', K_INFLIGHT, tid)
local f = redis.call('HMGET', t, 'status', 'attempt', 'retries', 'cancel_requested', 'handle')
if not deadline or tonumber(deadline) > now() or f[2] ~= ARGV[8] then
  return out({'skipped', f[1] or ''})
end
local submitted = f[1] == 'running' and (f[5] or '') ~= ''
if ARGV[9] == 'extend' or submitted then
  local lease = DLEASE
  if f[1] == 'running' then lease = RLEASE end
  redis.call('ZADD', K_INFLIGHT, istr(now() + lease), tid)
  if submitted then return out({'submitted', f[1]}) end
  return out({'extended', f[1]})
end
local acct = release(tid)
local retries = tonumber(f[3] or '0')
if f[4] == '1' then
  finish(tid, 'cancelled')
elseif f[1] ~= 'running' then
  requeue(tid, acct)
elseif retries >= tonumber(ARGV[10]) then
  finish(tid, 'failed', 'worker_lost',
    'the worker running it stopped answering (' .. istr(retries + 1) .. ' times)')
else
  redis.call('HSET', t, 'retries', istr(retries + 1), 'retry_reason', 'worker_lost')
  requeue(tid, acct)
end
if acct then touch(acct) end
reconcile()
pump({acct})
return out({'reclaimed', redis.call('HGET', t, 'status')})
"""
)

WAKE = (
    PRELUDE
    + """
-- WAKE: accounts whose rest ended or whose renewal date came are refreshed and given work.
-- results {number of accounts woken}
local due = redis.call('ZRANGEBYSCORE', K_TIMERS, '-inf', istr(now()), 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', K_TIMERS, id)
  touch(id)
end
reconcile()
pump(due)
return out({istr(#due)})
"""
)

INTAKE_CLAIM = """
-- INTAKE_CLAIM: move up to N messages from the intake list to a router's processing list,
-- number every entry there that is not yet numbered (`<n>:<message>`, so a message without
-- an id gets the same id however many routers handle it), and return them all.
-- N = 0 only numbers and returns what the router holds (after an outage, a takeover, or a
-- blocking LMOVE that brought one message in).
-- KEYS[1] intake list, KEYS[2] processing list, KEYS[3] claim counter
-- ARGV[1] N
-- returns the processing list's entries, oldest first
if tonumber(ARGV[1]) > 0 then
  local more = redis.call('RPOP', KEYS[1], ARGV[1])
  if more then for _, m in ipairs(more) do redis.call('LPUSH', KEYS[2], m) end end
end
local held = redis.call('LRANGE', KEYS[2], 0, -1)
local out = {}
for i, e in ipairs(held) do
  if not string.match(e, '^%d+:') then
    e = string.format('%d', redis.call('INCR', KEYS[3])) .. ':' .. e
    redis.call('LSET', KEYS[2], i - 1, e)
  end
  out[#held - i + 1] = e
end
return out
"""

INTAKE_TAKEOVER = """
-- INTAKE_TAKEOVER: move a dead router's claimed messages to this router's processing list
-- (then INTAKE_CLAIM with N = 0 numbers and returns them).
-- KEYS[1] the dead router's processing list, KEYS[2] this router's
-- returns how many were moved
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"""

CLAIM_DUE = """
-- CLAIM_DUE: a worker takes the entries of a schedule that are due: submitted driver jobs
-- to poll, or webhook deliveries to make.
-- KEYS[1] the schedule (zset: the polls, '<owner>/<task>/<attempt>', or an owner's outbox,
-- '<task>/<event>' -> when due, Redis µs)
-- ARGV[1] most entries to take, ARGV[2] µs they stay this worker's: each is pushed that far
-- ahead, so another worker takes it only if this one does not handle it in time (it died).
-- returns {now µs, earliest due of the rest or -1, member...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local held = string.format('%d', now + tonumber(ARGV[2]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], held, m) end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {string.format('%d', now), head[2] or '-1'}
for _, m in ipairs(due) do out[#out + 1] = m end
return out
"""

OUTBOX_RECORD = """
-- OUTBOX_RECORD: the result of one webhook POST goes on the task record; the delivery
-- leaves the outbox, or comes due again after a backoff while it has attempts left.
-- Nothing is done for a delivery no longer in the outbox (replaced, or recorded by
-- another deliverer) or whose task record has expired.
-- KEYS[1] the owner's outbox, KEYS[2] the task's record
-- ARGV[1] member '<task>/<event>', ARGV[2] event, ARGV[3] '' if delivered, else the error
-- (HTTP status or exception name), ARGV[4] most attempts, ARGV[5] first backoff µs
-- (doubling per attempt)
-- returns 'delivered' | 'retry' | 'failed' | 'stale'
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'stale' end
if redis.call('HGET', KEYS[2], 'webhook_event') ~= ARGV[2] then  -- expired, or replaced
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'stale'
end
local n = redis.call('HINCRBY', KEYS[2], 'webhook_attempts', 1)
local verdict = 'delivered'
if ARGV[3] ~= '' then
  verdict = 'failed'
  if n < tonumber(ARGV[4]) then verdict = 'retry' end
end
if verdict == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local due = now + tonumber(ARGV[5]) * 2 ^ (n - 1)
  redis.call('ZADD', KEYS[1], string.format('%d', due), ARGV[1])
  redis.call('HSET', KEYS[2], 'webhook_error', ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], 'webhook_status', verdict, 'webhook_error', ARGV[3])
end
return verdict
"""
