-- The pump: free slots go to waiting tasks, and what an owner script returns.
-- Needs: owner, slots, pins, strategies.

-- Hand free slots to waiting tasks: the pinned children of `accts` (and of every account
-- whose pin line got a task in this call) first, then the owner's lines, each to the best
-- free account. No line blocks another.
local function pump(accts)
  local seen, all = {}, {}
  local function add(acct)
    if acct and not seen[acct] then
      seen[acct] = true
      all[#all + 1] = acct
    end
  end
  for _, acct in ipairs(accts) do add(acct) end
  local i = 1
  while true do
    for _, acct in ipairs(dirty) do add(acct) end  -- pins filled so far, in this pass too
    local acct = all[i]
    if not acct then break end
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
    i = i + 1
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
  trim_fallen()
end

local function out(results) return {results, placed, switches, finished} end
