-- START: a worker begins a placed task, unless it was cancelled or re-placed meanwhile;
-- if its account can no longer serve the task's slot (disabled, set to relax, out of fast
-- hours since it was placed), the task is routed again instead (rules 1-3).
-- ARGV[7] task id, ARGV[8] attempt the worker was given
-- results {'run'|'skip'|'missing', current status}
-- KEYS[1], ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"

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
