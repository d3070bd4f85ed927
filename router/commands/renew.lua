-- RENEW: whoever carries a running task extends its run lease: the worker submitting it
-- (a heartbeat), then whichever worker polls its driver job. With a handle it also
-- records the driver job, which from then on is polled, never submitted again.
-- ARGV[7] task id, ARGV[8] attempt, ARGV[9] driver job handle to record ('' for none)
-- results {'renewed'|'lost', cancel requested '1'|''}: 'lost' if the task is no longer
-- this attempt's (reaped, re-placed) or no longer running.
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"

local tid = ARGV[7]
local f = redis.call('HMGET', k_task(tid), 'status', 'attempt', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[8] or not redis.call('ZSCORE', K_INFLIGHT, tid) then
  return out({'lost', f[3] or ''})
end
if ARGV[9] ~= '' then redis.call('HSET', k_task(tid), 'handle', ARGV[9]) end
redis.call('ZADD', K_INFLIGHT, istr(now() + RLEASE), tid)
return out({'renewed', f[3] or ''})
