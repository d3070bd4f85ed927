-- Slots: placing a task on an account, releasing it, putting a task back in line.
-- Needs: owner, stats, refresh.

-- Give `tid` a slot on `acct`: count it in flight, reserve its fast time (turbo twice).
local function place(tid, acct, slot)
  local t, a = k_task(tid), k_acct(acct)
  local tf = redis.call('HMGET', t, 'effective_mode', 'estimate_ms')
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

-- Undo a task's reservation; returns the account it held, or nil.
-- A placement that never started gives back its place in the day's count.
local function release(tid)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'account_id', 'slot', 'reserved_ms', 'status', 'placed_at')
  if not f[2] or f[2] == '' then return nil end
  local a = k_acct(f[1])
  if redis.call('EXISTS', a) == 1 then
    redis.call('HINCRBY', a, f[2] .. '_inflight', -1)
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

-- Put a task that lost its slot back at the head of the line for its own mode: the
-- owner's line, or its account's pin line for a child (rules 1-5 then apply again).
local function requeue(tid, acct)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'effective_mode', 'parent_id', 'upgrade_reason')
  redis.call('HSET', t, 'status', 'queued', 'started_at', '')
  if f[3] and f[3] ~= '' then  -- an upgraded relax task is relax again until upgraded anew
    f[1] = 'relax'
    redis.call('HSET', t, 'effective_mode', 'relax', 'upgrade_reason', '', 'upgraded_at', '')
  end
  if f[2] and f[2] ~= '' then
    enqueue_pin(tid, acct, slot_of(f[1]), true)
  else
    redis.call('HSET', t, 'account_id', '')
    enqueue(tid, k_line(slot_of(f[1])), true)
  end
end

local function next_waiting(line)
  while true do
    local tid = redis.call('LINDEX', line, 0)
    if not tid then return nil end
    if waiting(tid, line) then return tid end
    redis.call('LPOP', line)
  end
end

