-- START: a worker begins a placed task, unless it was cancelled or re-placed meanwhile.
-- The task is routed again instead (rules 1-5 as they are now) if its account can no
-- longer serve the task's slot (disabled, set to relax, out of fast hours since it was
-- placed), if the account holds more of the slot's tasks than its limit now allows (the
-- limit was lowered, as by a plan change: those over it wait in line), if the account must
-- rest now by what it really started (the gap since its last start, its starts today, its
-- working hours, a cooldown: it then rests until that ends), if the task fell back to
-- relax and fast capacity came back before it started, or if it is relax work run fast on
-- expiring hours (`upgrade_reason`) and that no longer holds (its owner opted out, the
-- account renewed, moved its date or became Basic).
-- ARGV[7] task id, ARGV[8] attempt the worker was given, ARGV[9] this run's token (one per
-- delivery of the attempt to a worker, the same when that worker asks again; '': none, as
-- callers before tokens: every START of a running attempt answers 'run')
-- results {'run'|'skip'|'missing', current status}: 'run' again for a running attempt
-- only to the token that started it (a retry whose reply was lost), never to a second
-- delivery of the same rq job (its token differs).
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/class_of"
--- @include "includes/stats"
--- @include "includes/finish"
--- @include "includes/health"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/release"
--- @include "includes/requeue"
--- @include "includes/reconcile"
--- @include "includes/pump"

-- The account's view when a job is about to start: paced and counted by the jobs it really
-- started. With a backlog, jobs start later and closer together than they were placed.
local function start_rest(a)
  local f = redis.call('HMGET', a, 'min_gap_ms', 'last_start', 'start_day', 'start_jobs')
  local paced = 0
  if f[2] then paced = tonumber(f[2]) + tonumber(f[1] or '0') * 1000 end
  return resting(a, paced, f[3], f[4])
end

-- A job starts on the account now: the next may start a gap later, and it counts today.
-- Returns whether that can change what the account may take (it paces or has a cap).
local function started(a)
  local f = redis.call('HMGET', a, 'min_gap_ms', 'start_day', 'paced_until', 'daily_cap')
  local today = istr(math.floor(now() / US_DAY))
  if f[2] == today then
    redis.call('HINCRBY', a, 'start_jobs', 1)
  else
    redis.call('HSET', a, 'start_day', today, 'start_jobs', '1')
  end
  redis.call('HSET', a, 'last_start', istr(now()))
  local gap = tonumber(f[1] or '0') * 1000
  if gap > 0 and now() + gap > tonumber(f[3] or '0') then
    redis.call('HSET', a, 'paced_until', istr(now() + gap))
  end
  return gap > 0 or tonumber(f[4] or '0') > 0
end

-- An upgraded task may still start fast on `acct`: its owner is still opted in and the
-- account's time still surely expires (START checks it, as it checks a fallback).
local function upgrade_holds(tid, acct)
  if redis.call('HGET', K_OPTIONS, 'upgrade_expiring') ~= '1' then return false end
  local own = tonumber(redis.call('HGET', k_task(tid), 'reserved_ms') or '0') or 0
  return expiring_since(acct, own) ~= nil
end

local tid = ARGV[7]
local t = k_task(tid)
local f = redis.call('HMGET', t, 'status', 'attempt', 'slot', 'account_id')
if not f[1] then return out({'missing', ''}) end
if f[1] == 'running' and f[2] == ARGV[8] then
  if ARGV[9] == '' or redis.call('HGET', t, 'started_by') == ARGV[9] then
    return out({'run', 'running'})  -- a retry of this START whose reply was lost
  end
  return out({'skip', 'running'})  -- another delivery of the job already runs it
end
if f[2] ~= ARGV[8] or f[1] ~= 'queued' or not f[3] or f[3] == '' then
  return out({'skip', f[1]})
end
local acct, a = f[4], k_acct(f[4])
local g = redis.call('HMGET', t, 'created_at', 'effective_mode', 'fallback_reason',
  'requested_mode', 'parent_id', 'upgrade_reason')
local class = class_of(tid)
local video = class ~= 'image'
local again = redis.call('SISMEMBER', k_cap(need_of(f[3], class)), acct) == 0
if not again then  -- limits lowered since it was placed hold at start: those over them wait
  local n = redis.call('HMGET', a, f[3] .. '_inflight', f[3] .. '_limit', 'video_inflight',
    'video_limit')
  again = tonumber(n[1]) > tonumber(n[2])
    or (video and tonumber(n[3] or '0') > (tonumber(n[4] or '') or MAX_VIDEO))
end
if not again then  -- rest rules hold when a job starts, not only when it was placed
  local untl = start_rest(a)
  if untl > 0 then
    again = true
    if untl > tonumber(redis.call('HGET', a, 'paced_until') or '0') then
      redis.call('HSET', a, 'paced_until', istr(untl))  -- placement rests it as long
    end
  end
end
if not again and g[6] and g[6] ~= '' and not upgrade_holds(tid, acct) then
  again = true  -- upgraded relax work whose reason is gone (opted out, renewed, Basic): relax
end
if not again and g[3] and g[3] ~= '' and (g[4] == 'fast' or g[4] == 'turbo') then
  -- It fell back to relax; if fast capacity came back before it started, it runs fast.
  local child, fastcap = g[5] and g[5] ~= '', k_cap(need_of('fast', class))
  if (child and redis.call('SISMEMBER', fastcap, acct) == 1)
      or (not child and redis.call('SCARD', fastcap) > 0) then
    again = true
    redis.call('HSET', t, 'effective_mode', g[4], 'fallback_reason', '', 'fallback_at', '')
  end
end
if again then  -- routed again, by the rules as they are now (rules 1-5)
  release(tid)
  requeue(tid, acct)
  touch(acct)
  reconcile()
  pump({acct})
  return out({'skip', redis.call('HGET', t, 'status')})
end
if redis.call('HSETNX', t, 'waited', '1') == 1 then  -- a task's wait counts once, not per try
  observe('wait', g[2] or '', now() - tonumber(g[1] or istr(now())))
end
if g[3] and g[3] ~= '' and redis.call('HSETNX', t, 'fallback_counted', '1') == 1 then
  count('fallback:' .. g[3])  -- a fallback counts once it runs: undone ones do not
end
if g[6] and g[6] ~= '' and redis.call('HSETNX', t, 'upgrade_counted', '1') == 1 then
  count('upgrade:' .. g[6])  -- likewise an upgrade: relax work that runs fast
end
local paces = started(a)
redis.call('HSET', t, 'status', 'running', 'started_at', istr(now()), 'started_by', ARGV[9])
redis.call('HDEL', t, 'handle')  -- an earlier attempt's driver job is not this one's
hook(tid, 'running')
redis.call('ZADD', K_INFLIGHT, istr(now() + RLEASE), tid)  -- the run lease
if paces then  -- the start moved the account's rest: its indexes and timer, and its work
  touch(acct)
  pump({acct})
end
return out({'run', 'running'})
