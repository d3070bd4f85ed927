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
-- or turbo task that fell back and waits in one of the owner's relax lines is also listed
-- in its class's fallen list, so that it goes back to fast if fast capacity returns
-- before it starts.
local function enqueue(tid, line, head)
  redis.call('HSET', k_task(tid), 'queue', line)
  if head then redis.call('LPUSH', line, tid) else redis.call('RPUSH', line, tid) end
  for _, class in ipairs({'image', 'video'}) do
    if line == k_line(need_of('relax', class)) then
      local why = redis.call('HGET', k_task(tid), 'fallback_reason')
      if why and why ~= '' then redis.call('RPUSH', k_fallen(class), tid) end
    end
  end
end

-- Drop the entries at the head of each fallen list whose task no longer waits as a
-- fallback (it started, ended or went back to fast): each entry is dropped once, so a
-- list stays as long as the fallbacks that wait, plus those behind them.
local function trim_fallen()
  for _, class in ipairs({'image', 'video'}) do
    local fallen, line = k_fallen(class), k_line(need_of('relax', class))
    while true do
      local tid = redis.call('LINDEX', fallen, 0)
      if not tid or waiting(tid, line) then break end
      redis.call('LPOP', fallen)
    end
  end
end

-- A child waits for its parent's account, in the line of what it needs there.
local function enqueue_pin(tid, acct, need, head)
  enqueue(tid, k_pin(acct, need), head)
  redis.call('SADD', K_PINNED, acct)
  if not dirty[acct] then
    dirty[acct] = true
    dirty[#dirty + 1] = acct
  end
end
