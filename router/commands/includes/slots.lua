-- Slots: placing a task on an account, releasing it, putting a task back in line.
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/stats"
--- @include "includes/refresh"

-- Give `tid` a slot on `acct`: count it in flight (a video also under the account's
-- video limit), reserve its fast time (turbo twice).
local function place(tid, acct, slot)
  local t, a = k_task(tid), k_acct(acct)
  local tf = redis.call('HMGET', t, 'effective_mode', 'estimate_ms', 'job_class')
  if tf[3] == 'video' or tf[3] == 'hd_video' then redis.call('HINCRBY', a, 'video_inflight', 1) end
  local reserve = 0
  if slot == 'fast' then
    reserve = tonumber(tf[2])
    if tf[1] == 'turbo' then reserve = reserve * 2 end
    redis.call('HINCRBY', a, 'fast_inflight', 1)
    redis.call('HINCRBY', a, 'fast_reserved_ms', reserve)
  else
    redis.call('HINCRBY', a, 'relax_inflight', 1)
  end
  -- Pacing and the day's count (account health).
  local g = redis.call('HMGET', a, 'min_gap_ms', 'day')
  if tonumber(g[1] or '0') > 0 then
    redis.call('HSET', a, 'paced_until', istr(now() + tonumber(g[1]) * 1000))
  end
  local today = math.floor(now() / US_DAY)
  if g[2] ~= istr(today) then
    redis.call('HSET', a, 'day', istr(today), 'day_jobs', '1')
  else
    redis.call('HINCRBY', a, 'day_jobs', 1)
  end
  count('routed:' .. slot)
  local attempt = redis.call('HINCRBY', t, 'attempt', 1)
  redis.call('HSET', t, 'account_id', acct, 'slot', slot, 'reserved_ms', istr(reserve),
    'placed_at', istr(now()))
  redis.call('ZADD', K_INFLIGHT, istr(now() + DLEASE), tid)  -- the dispatch lease
  refresh(acct)
  for _, v in ipairs({tid, acct, istr(attempt), slot}) do placed[#placed + 1] = v end
end

local function next_waiting(line)
  while true do
    local tid = redis.call('LINDEX', line, 0)
    if not tid then return nil end
    if waiting(tid, line) then return tid end
    redis.call('LPOP', line)
  end
end

