-- SETTLE: a worker ends a task: free its slot, debit the GPU time it really used, record
-- the outcome, flip an exhausted account, hand the slot to the next waiting task.
-- ARGV[7] task id, ARGV[8] attempt,
-- ARGV[9] 'completed' | 'failed' | 'out_of_fast' (the account has no fast time: it flips,
--         the task is routed again; on a relax task, taken as 'transient') |
--         'attention' (the account leaves rotation with the error message as its reason,
--         the task is routed again) | 'transient' (the account kept failing transiently:
--         counted against it, the task is routed again while it has retries left),
-- ARGV[10] GPU ms used (clamped to [0, 2^53]), ARGV[11] result JSON, ARGV[12] error code,
-- ARGV[13] error message,
-- ARGV[14] transient failures that send an account to rest, ARGV[15] within how many µs,
-- ARGV[16] for how many µs, ARGV[17] retries a task may have,
-- ARGV[18] the mode the backend says the job ran in ('' when it does not say): one that
--         differs from the task's is recorded (`ran_mode`, stats `mode_mismatch:<placed>:
--         <ran>`) and the account is charged for what really ran
-- results {'settled'|'stale', status}
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/int_arg"
--- @include "includes/stats"
--- @include "includes/finish"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/release"
--- @include "includes/requeue"
--- @include "includes/reconcile"
--- @include "includes/pump"

-- Add `delta` to a counter field; it stays within ±2^53, so this never fails.
local function incr(key, field, delta)
  local v = (tonumber(redis.call('HGET', key, field) or '0') or 0) + delta
  redis.call('HSET', key, field, istr(math.max(-MAX_INT, math.min(MAX_INT, v))))
end

local tid, outcome = ARGV[7], ARGV[9]
local t = k_task(tid)
for i = 14, 17 do
  if not int_arg(ARGV[i], 0, MAX_INT) then
    return redis.error_reply('SETTLE: ARGV[' .. i .. '] must be a whole number >= 0')
  end
end
-- GPU time as a backend reported it: whatever it said, a number that cannot break a write.
local gpu = math.min(math.max(math.floor(tonumber(ARGV[10]) or 0), 0), MAX_INT)
local f = redis.call('HMGET', t, 'status', 'attempt', 'effective_mode', 'parent_id',
  'cancel_requested', 'retries')
if not f[1] or f[2] ~= ARGV[8] or f[1] ~= 'running' then return out({'stale', f[1] or ''}) end
local mode = f[3]
-- A relax job cannot want fast time: the backend is mistaken. Routing it again would meet
-- the same answer for ever, so it counts as a transient failure (retries are bounded).
if outcome == 'out_of_fast' and mode == 'relax' then outcome = 'transient' end
local ran = ARGV[18] or ''
if ran ~= 'fast' and ran ~= 'relax' and ran ~= 'turbo' then ran = mode end
if ran ~= mode and mode then
  redis.call('HSET', t, 'ran_mode', ran)
  count('mode_mismatch:' .. mode .. ':' .. ran)
end
local acct = release(tid)
local a = k_acct(acct)
if redis.call('EXISTS', a) == 1 then
  if gpu > 0 then
    incr(a, 'used_' .. ran .. '_ms', gpu)
    local cost = 0
    if ran == 'fast' then cost = gpu elseif ran == 'turbo' then cost = 2 * gpu end
    if cost > 0 then incr(a, 'fast_ms', 0 - cost) end
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
local reroute = outcome == 'out_of_fast' or outcome == 'attention' or outcome == 'transient'
if reroute and f[5] ~= '1' then
  requeue(tid, acct)
else
  local status = outcome
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
