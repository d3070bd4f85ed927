-- Waiting lines: the owner's line per slot, and each account's pin line per slot.
-- A queued task records the line it waits in (`queue`); moving it to another line is one
-- push, and the entry left behind in the old line is skipped (and dropped) when reached.
--- @include "includes/owner"

local dirty = {}  -- accounts whose pin lines got a task in this call: `pump` looks at them

-- The task waits (queued, holding no slot) in `line`.
local function waiting(tid, line)
  local f = redis.call('HMGET', k_task(tid), 'status', 'slot', 'queue')
  return f[1] == 'queued' and (not f[2] or f[2] == '') and (not f[3] or f[3] == line)
end

-- Put a task in `line`, at its head (a task that lost its slot) or at its tail. A fast
-- or turbo task that fell back and waits in the owner's relax line is also listed in
-- K_FALLEN, so that it goes back to fast if fast capacity returns before it starts.
local function enqueue(tid, line, head)
  redis.call('HSET', k_task(tid), 'queue', line)
  if head then redis.call('LPUSH', line, tid) else redis.call('RPUSH', line, tid) end
  if line == k_line('relax') then
    local why = redis.call('HGET', k_task(tid), 'fallback_reason')
    if why and why ~= '' then redis.call('RPUSH', K_FALLEN, tid) end
  end
end

-- Drop the entries at the head of K_FALLEN whose task no longer waits as a fallback (it
-- started, ended or went back to fast): each entry is dropped once, so the list stays as
-- long as the fallbacks that wait, plus those behind them.
local function trim_fallen()
  while true do
    local tid = redis.call('LINDEX', K_FALLEN, 0)
    if not tid or waiting(tid, k_line('relax')) then return end
    redis.call('LPOP', K_FALLEN)
  end
end

-- A child waits for its parent's account.
local function enqueue_pin(tid, acct, slot, head)
  enqueue(tid, k_pin(acct, slot), head)
  redis.call('SADD', K_PINNED, acct)
  if not dirty[acct] then
    dirty[acct] = true
    dirty[#dirty + 1] = acct
  end
end
