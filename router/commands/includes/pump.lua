-- The pump: free slots go to waiting tasks, and what an owner script returns.
-- Needs: owner, slots, pins, strategies.

-- The best free account for `slot` under ours (`policy.choose`): the lowest score; under
-- renewal, dated fast accounts tied on it go by the most fast time left, then id.
local function best_free(slot)
  local free = k_free(slot)
  local top = redis.call('ZRANGE', free, 0, 0, 'WITHSCORES')
  if not top[1] or STRATEGY ~= 'renewal' or slot ~= 'fast' or tonumber(top[2]) >= UNDATED then
    return top[1]
  end
  local best, most
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', free, top[2], top[2])) do  -- in id order
    local f = redis.call('HMGET', k_acct(id), 'fast_ms', 'fast_reserved_ms')
    local avail = math.min(math.max(tonumber(f[1]) - tonumber(f[2]), 0), SPAN - 1)
    if not most or avail > most then best, most = id, avail end
  end
  return best
end

-- `policy.upgrade_target`: a free, non-Basic fast account whose fast time surely expires
-- unused (its latest start has passed), the most surplus first; nil if none.
local function upgrade_target()
  local best, earliest
  for _, id in ipairs(redis.call('ZRANGE', k_free('fast'), 0, -1)) do
    local f = redis.call('HMGET', k_acct(id), 'plan', 'fast_ms', 'fast_reserved_ms',
      'fast_limit', 'renews_at')
    local renews = tonumber(f[5] or '')
    if f[1] ~= 'basic' and renews and renews > 0 then
      local avail = math.min(math.max(tonumber(f[2]) - tonumber(f[3]), 0), SPAN - 1)
      local start = renews - idiv(avail * 1000, math.max(tonumber(f[4]), 1))
      if now() > start and (not earliest or start < earliest
          or (start == earliest and id < best)) then
        best, earliest = id, start
      end
    end
  end
  return best
end

-- An opted-in owner's relax tasks at the head of its relax line run fast on hours that
-- will surely expire (`upgrade_reason`); never for an owner that did not opt in.
local function upgrade_expiring()
  if STRATEGY ~= 'renewal' and STRATEGY ~= 'least_loaded' then return end  -- peers bind
  if redis.call('HGET', K_OPTIONS, 'upgrade_expiring') ~= '1' then return end
  local line = k_line('relax')
  while true do
    local tid = next_waiting(line)
    if not tid then return end
    local f = redis.call('HMGET', k_task(tid), 'requested_mode', 'fallback_reason', 'parent_id')
    if f[1] ~= 'relax' or (f[2] and f[2] ~= '') or (f[3] and f[3] ~= '') then return end
    local acct = upgrade_target()
    if not acct then return end
    redis.call('LPOP', line)
    redis.call('HSET', k_task(tid), 'effective_mode', 'fast', 'upgrade_reason', UPGRADE_REASON,
      'upgraded_at', istr(now()))
    place(tid, acct, 'fast')
  end
end

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
    if slot == 'relax' then upgrade_expiring() end
    while true do
      local tid = next_waiting(line)
      if not tid then break end
      local best
      if STRATEGY == 'renewal' or STRATEGY == 'least_loaded' then
        best = best_free(slot)
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
