-- The pump: free slots go to waiting tasks, and what an owner script returns.
-- Needs: owner, slots, pins, strategies.

-- Hand free slots to waiting tasks: the pinned children of `accts` first, then the
-- owner's lines, each to the best free account. No line blocks another.
local function pump(accts)
  for _, acct in ipairs(accts) do
    for _, slot in ipairs({'fast', 'relax'}) do
      local pin = k_pin(acct, slot)
      while redis.call('ZSCORE', k_free(slot), acct) do
        local tid = next_waiting(pin)
        if not tid then break end
        redis.call('LPOP', pin)
        place(tid, acct, slot)
      end
    end
    check_pins(acct)
  end
  for _, slot in ipairs({'fast', 'relax'}) do
    local line, free = k_line(slot), k_free(slot)
    while true do
      local tid = next_waiting(line)
      if not tid then break end
      local best
      if STRATEGY == 'least_loaded' then
        best = redis.call('ZRANGE', free, 0, 0)[1]
      else
        best = choose(tid, slot, redis.call('ZRANGE', free, 0, -1))
      end
      if not best then break end
      redis.call('LPOP', line)
      place(tid, best, slot)
    end
  end
end

local function out(results) return {results, placed, switches, finished} end
