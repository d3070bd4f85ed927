-- The pump: free slots go to waiting tasks, and what an owner script returns.
--- @include "includes/owner"
--- @include "includes/health"
--- @include "includes/lines"
--- @include "includes/pins"
--- @include "includes/reconcile"
--- @include "includes/refresh"
--- @include "includes/slots"
--- @include "includes/strategies"

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

-- Note in `heads` the oldest child waiting for `acct` in `slot`, {task, entered less the
-- children's head start}, if the account has a free `slot`; else forget it.
local function note_head(heads, acct, slot)
  heads[acct] = nil
  if redis.call('ZSCORE', k_free(slot), acct) then
    local tid = next_waiting(k_pin(acct, slot))
    if tid then heads[acct] = {tid, entered(tid) - HEADSTART} end
  end
end

-- The free account for a line task when `best` has a child waiting for its slot: the
-- first in the index's order that none waits for, if any (a child can run nowhere else).
local function spare(slot, heads, best)
  local n = 0
  for _ in pairs(heads) do n = n + 1 end
  for _, id in ipairs(redis.call('ZRANGE', k_free(slot), 0, n)) do
    if not heads[id] then return id end
  end
  return best
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
      local line, free = k_line(slot), k_free(slot)
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
        local tid = next_waiting(line)
        local best
        if tid and (not pat or entered(tid) < pat) then
          if STRATEGY == 'renewal' or STRATEGY == 'least_loaded' then
            best = best_free(slot)
            if best and heads[best] then best = spare(slot, heads, best) end
          else
            best = choose(tid, slot, redis.call('ZRANGE', free, 0, -1))
          end
        end
        if best then
          redis.call('LPOP', line)
          place(tid, best, slot)
        elseif pacct then
          best = pacct
          redis.call('LPOP', k_pin(best, slot))
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
