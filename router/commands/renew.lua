-- RENEW: whoever carries a running task extends its run lease: the worker submitting it
-- (a heartbeat), then, once, with the driver job's handle, which it records: from then on
-- the job is polled, never submitted again, and its lease is kept by its polls (POLL_ROUND).
-- ARGV[7] task id, ARGV[8] attempt, ARGV[9] driver job handle to record ('' for none),
-- ARGV[10] (with a handle) µs the job is expected to run ('' or 0: not known), ARGV[11]
-- (with a handle) the run timeout µs of the job's mode ('': none)
-- results {'renewed'|'lost', cancel requested '1'|'', first poll due µs}: 'lost' if the
-- task is no longer this attempt's (reaped, re-placed) or no longer running. With a handle
-- the first poll is due at the job's expected end (`poll_from`, kept on the task for the
-- polls after it), or just past its run timeout if that comes first, and the lease runs a
-- run lease past it; without, a run lease from now.
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"

local tid = ARGV[7]
local f = redis.call('HMGET', k_task(tid), 'status', 'attempt', 'cancel_requested',
  'started_at')
if f[1] ~= 'running' or f[2] ~= ARGV[8] or not redis.call('ZSCORE', K_INFLIGHT, tid) then
  return out({'lost', f[3] or '', ''})
end
local due = now()
if ARGV[9] ~= '' then
  local expected = math.max(math.floor(tonumber(ARGV[10] or '') or 0), 0)
  due = now() + math.min(expected, 30 * US_DAY)
  redis.call('HSET', k_task(tid), 'handle', ARGV[9], 'poll_from', istr(due))
  local limit, started = tonumber(ARGV[11] or ''), tonumber(f[4] or '')
  if limit and started and started + limit + 1 < due then  -- the poll finding it overdue
    due = math.max(started + limit + 1, now())
  end
end
redis.call('ZADD', K_INFLIGHT, istr(due + RLEASE), tid)
return out({'renewed', f[3] or '', istr(due)})
