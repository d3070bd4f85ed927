-- Giving a slot back.
--- @include "includes/owner"

-- Undo a task's reservation; returns the account it held, or nil.
-- A placement that never started gives back its place in the day's count.
local function release(tid)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'account_id', 'slot', 'reserved_ms', 'status', 'placed_at',
    'job_class')
  if not f[2] or f[2] == '' then return nil end
  local a = k_acct(f[1])
  if redis.call('EXISTS', a) == 1 then
    redis.call('HINCRBY', a, f[2] .. '_inflight', -1)
    if f[6] == 'video' or f[6] == 'hd_video' then redis.call('HINCRBY', a, 'video_inflight', -1) end
    if f[2] == 'fast' then redis.call('HINCRBY', a, 'fast_reserved_ms', 0 - tonumber(f[3])) end
    local day = istr(math.floor(tonumber(f[5] or '0') / US_DAY))
    local g = redis.call('HMGET', a, 'day', 'day_jobs')
    if f[4] == 'queued' and g[1] == day and tonumber(g[2] or '0') > 0 then
      redis.call('HINCRBY', a, 'day_jobs', -1)
    end
  end
  redis.call('HSET', t, 'slot', '', 'reserved_ms', '0')
  redis.call('ZREM', K_INFLIGHT, tid)
  return f[1]
end
