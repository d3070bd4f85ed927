-- Waiting lines: the owner's line per slot, and each account's pin line per slot.
-- A queued task records the line it waits in (`queue`); moving it to another line is one
-- push, and the entry left behind in the old line is skipped (and dropped) when reached.
-- Needs: owner.

local dirty = {}  -- accounts whose pin lines got a task in this call: `pump` looks at them

-- The task waits (queued, holding no slot) in `line`.
local function waiting(tid, line)
  local f = redis.call('HMGET', k_task(tid), 'status', 'slot', 'queue')
  return f[1] == 'queued' and (not f[2] or f[2] == '') and (not f[3] or f[3] == line)
end

-- Put a task in `line`, at its head (a task that lost its slot) or at its tail.
local function enqueue(tid, line, head)
  redis.call('HSET', k_task(tid), 'queue', line)
  if head then redis.call('LPUSH', line, tid) else redis.call('RPUSH', line, tid) end
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
