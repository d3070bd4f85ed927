-- The pump: free slots go to waiting tasks, and what an owner script returns.
--- @include "includes/owner"
--- @include "includes/health"
--- @include "includes/lines"
--- @include "includes/pins"
--- @include "includes/reconcile"
--- @include "includes/refresh"
--- @include "includes/slots"
--- @include "includes/strategies"

-- The best free account for `need` under ours (`policy.choose`): the lowest score; under
-- renewal, dated fast accounts tied on it go by the most fast time left, then id.
local function best_free(need)
  local free = k_free(need)
  local top = redis.call('ZRANGE', free, 0, 0, 'WITHSCORES')
  local fast = string.sub(need, 1, 4) == 'fast'
  if not top[1] or STRATEGY ~= 'renewal' or not fast or tonumber(top[2]) >= UNDATED then
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

-- `policy.surely_expires` for an account whose plan gives relax time, after renewing it
-- if its date has passed (a stale date would make fresh hours look expiring): the
-- account's latest start if its fast time surely expires unused now, else nil. `own` is
-- fast time (ms) reserved by the task being judged, counted as still available.
local function expiring_since(id, own)
  local a = k_acct(id)
  local f = redis.call('HMGET', a, 'plan', 'renews_at')
  local renews = tonumber(f[2] or '')
  if not f[1] or not RELAX_PLANS[f[1]] or not renews or renews <= 0 then return nil end
  if renews <= now() then
    refresh(id)
    renews = tonumber(redis.call('HGET', a, 'renews_at') or '')
    if not renews or renews <= 0 then return nil end
  end
  local g = redis.call('HMGET', a, 'fast_ms', 'fast_reserved_ms', 'fast_limit')
  local avail = tonumber(g[1]) - tonumber(g[2]) + (own or 0)
  local start = latest_start(renews, avail, tonumber(g[3]))
  if now() > start then return start end
  return nil
end

-- `policy.upgrade_target`: a free, non-Basic fast account whose fast time surely expires
-- unused (its latest start has passed), the most surplus first; nil if none. The
-- candidates are the accounts `refresh` lists in K_EXPIRING from that instant on.
local function upgrade_target()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_EXPIRING, '-inf', istr(now()))) do
    if expiring_since(id) and redis.call('ZSCORE', k_free('fast'), id) then
      return id  -- by (latest start, id), as listed; a renewal rescored it (the check)
    end
  end
  return nil
end

-- An opted-in owner's relax tasks at the head of its relax line run fast on hours that
-- will surely expire (`upgrade_reason`); never for an owner that did not opt in.
local function upgrade_expiring()
  if STRATEGY ~= 'renewal' and STRATEGY ~= 'least_loaded' then return end  -- peers bind
  if redis.call('HGET', K_OPTIONS, 'upgrade_expiring') ~= '1' then return end
  if redis.call('HGET', K_OPTIONS, 'expiring_indexed') ~= '1' then
    -- K_EXPIRING is kept by `refresh` only while the owner opts in: build it once after
    -- the opt-in is written (`Pool.set_owner_options` clears this mark with it)
    for _, id in ipairs(redis.call('SMEMBERS', K_ACCOUNTS)) do refresh(id) end
    redis.call('HSET', K_OPTIONS, 'expiring_indexed', '1')
  end
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

-- When a task entered the wait (its submission): the oldest waiting task goes first.
local function entered(tid) return tonumber(redis.call('HGET', k_task(tid), 'created_at')) end

-- Note in `heads` the oldest child waiting for `acct` in one of `slot`'s needs, {task,
-- entered less the children's head start, need}, if the account can start a job of that
-- need now; else forget it.
local function note_head(heads, acct, slot)
  heads[acct] = nil
  for _, need in ipairs(NEEDS[slot]) do
    if redis.call('ZSCORE', k_free(need), acct) then
      local tid = next_waiting(k_pin(acct, need))
      if tid then
        local at = entered(tid) - HEADSTART
        if not heads[acct] or at < heads[acct][2] then heads[acct] = {tid, at, need} end
      end
    end
  end
end

-- The free account for a line task when `best` has a child waiting for its slot: the
-- first in the need's index order that none waits for, if any (a child can run nowhere
-- else).
local function spare(need, heads, best)
  local n = 0
  for _ in pairs(heads) do n = n + 1 end
  for _, id in ipairs(redis.call('ZRANGE', k_free(need), 0, n)) do
    if not heads[id] then return id end
  end
  return best
end

-- Of the free accounts for `need`, one with at least the fast time `tid` would reserve:
-- `best` if it has it, else the first in the index's order of ROOMY that has (a video
-- costs as much as eight images); `best` if none does (it may overspend by one estimate).
local function roomy(need, best, tid)
  if string.sub(need, 1, 4) ~= 'fast' then return best end
  local f = redis.call('HMGET', k_task(tid), 'estimate_ms', 'effective_mode')
  local want = tonumber(f[1] or '0') or 0
  if f[2] == 'turbo' then want = want * 2 end
  local function enough(id)
    local g = redis.call('HMGET', k_acct(id), 'fast_ms', 'fast_reserved_ms')
    return tonumber(g[1]) - tonumber(g[2]) >= want
  end
  if enough(best) then return best end
  for _, id in ipairs(redis.call('ZRANGE', k_free(need), 0, ROOMY - 1)) do
    if enough(id) then return id end
  end
  return best
end

-- The oldest task at the head of one of `slot`'s lines that a free account can take now,
-- {task, entered, need, account}, or nil: a line whose head no account can take now
-- blocks no other line.
local function line_head(slot, heads)
  local found
  for _, need in ipairs(NEEDS[slot]) do
    local tid = next_waiting(k_line(need))
    if tid and (not found or entered(tid) < found[2]) then
      local best
      if STRATEGY == 'renewal' or STRATEGY == 'least_loaded' then
        best = best_free(need)
        if best then best = roomy(need, best, tid) end
        if best and heads[best] then best = spare(need, heads, best) end
      else
        best = choose(tid, need, redis.call('ZRANGE', k_free(need), 0, -1))
      end
      if best then found = {tid, entered(tid), need, best} end
    end
  end
  return found
end

-- Hand free slots to waiting tasks, the oldest first (`policy.CHILD_HEADSTART_US`): the
-- children pinned to `accts` (and to every account whose pin line got a task in this call)
-- and the heads of the owner's lines, each line task to the best free account. No line
-- blocks another.
local function pump(accts)
  local pumped_renewals = renewals
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
    -- once, before serving: placing changes nothing it reads (enabled, fast and relax
    -- capability: a reservation is not a balance), once a renewal due is made (a date that
    -- passed before a wake would otherwise renew in `place`, after its children's turn)
    local renews = tonumber(redis.call('HGET', k_acct(acct), 'renews_at') or '')
    if renews and renews > 0 and renews <= now() then refresh(acct) end
    check_pins(acct)
    i = i + 1
  end
  -- A renewal in this call (before serving, or in `place`) can bring fast hours back to
  -- an owner whose fast work fell back: those fallbacks go back to the fast line first.
  local done = pumped_renewals
  for _ = 1, 3 do
    if renewals > done then
      done = renewals
      reconcile()
    end
    for _, slot in ipairs({'fast', 'relax'}) do
      if slot == 'relax' then upgrade_expiring() end
      local heads, noted = {}, 0  -- accounts of `all` with a free slot and a child waiting
      while true do
        for _, acct in ipairs(dirty) do add(acct) end
        while noted < #all do
          noted = noted + 1
          note_head(heads, all[noted], slot)
        end
        local pacct, pat  -- the oldest child that may start now (ties: the account id)
        for acct, head in pairs(heads) do
          if not pat or head[2] < pat or (head[2] == pat and acct < pacct) then
            pacct, pat = acct, head[2]
          end
        end
        local head = line_head(slot, heads)
        local best
        if head and (not pat or head[2] < pat) then
          best = head[4]
          redis.call('LPOP', k_line(head[3]))
          place(head[1], best, slot)
        elseif pacct then
          best = pacct
          redis.call('LPOP', k_pin(best, heads[best][3]))
          place(heads[best][1], best, slot)
        else
          break
        end
        if seen[best] then note_head(heads, best, slot) end
      end
    end
    if renewals == done then break end
  end
  trim_fallen()
end
