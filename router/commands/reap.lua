-- REAP: act on a task whose lease has expired, if it still has.
-- ARGV[7] task id, ARGV[8] attempt seen expired, ARGV[9] 'extend' (its rq job is still
-- waiting for a worker; or the reaper itself was away, e.g. Redis restarted, so holders
-- get one more lease to renew) | 'reclaim', ARGV[10] how many times a task may be retried
-- results {'skipped'|'extended'|'submitted'|'reclaimed', status}
-- A running task whose driver job was submitted (it has a handle) is never reclaimed: the
-- job runs on the account whatever became of its worker, so its lease is extended and
-- 'submitted' tells the caller to make sure a worker polls it.
-- reclaim: a placed task whose rq job is gone is routed again (it never started), up to
-- DISPATCH_LOSSES times (a job that fails before it starts, for ever, must not loop), then
-- fails `internal_error`; a running task whose worker died before recording a driver job
-- is retried (retries + 1, retry_reason worker_lost) up to the limit, then fails
-- `worker_lost`.
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/finish"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/release"
--- @include "includes/requeue"
--- @include "includes/reconcile"
--- @include "includes/pump"

local DISPATCH_LOSSES = 5
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
  if redis.call('HINCRBY', t, 'dispatch_losses', 1) > DISPATCH_LOSSES then
    finish(tid, 'failed', 'internal_error', 'its rq job was lost before it started '
      .. istr(DISPATCH_LOSSES + 1) .. ' times (see the failed jobs: rq info)')
  else
    requeue(tid, acct)
  end
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
