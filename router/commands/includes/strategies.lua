-- The open proxies' account-choice strategies, kept for comparison (`bench/scheduling.py`):
-- a task is bound to an account on arrival. Ours (renewal, least_loaded) needs none of this.
--- @include "includes/owner"

local function spread(tid)  -- a number in [0, 1) fixed by the task id: reproducible runs
  return tonumber(string.sub(redis.sha1hex(tid), 1, 8), 16) / 4294967296
end

-- The account of `ids` a peer strategy gives a task that needs `need` (a slot and class).
local function choose(tid, need, ids)
  if #ids == 0 then return nil end
  local slot = string.match(need, '^[a-z]+')
  table.sort(ids)
  if STRATEGY == 'random' then return ids[math.floor(spread(tid) * #ids) + 1] end
  if STRATEGY == 'round_robin' then
    local last, pick = redis.call('HGET', K_CURSOR, need) or '', ids[1]
    for _, id in ipairs(ids) do
      if id > last then pick = id break end
    end
    redis.call('HSET', K_CURSOR, need, pick)
    return pick
  end
  if STRATEGY == 'weighted' then  -- by the account's slot limit
    local weights, total = {}, 0
    for i, id in ipairs(ids) do
      weights[i] = tonumber(redis.call('HGET', k_acct(id), slot .. '_limit'))
      total = total + weights[i]
    end
    local x = spread(tid) * total
    for i, id in ipairs(ids) do
      x = x - weights[i]
      if x < 0 then return id end
    end
    return ids[#ids]
  end
  if STRATEGY == 'fill_first' then
    -- trueai midjourney-proxy's AccountFillRule (src/Midjourney.Services/
    -- DiscordRuleService.cs:115-205): accounts in creation order (here: id order), the
    -- first with a free slot; if none has one, its default rule (best_wait_idle, below).
    for _, id in ipairs(ids) do
      if redis.call('ZSCORE', k_free(need), id) then return id end
    end
  end
  local best, fewest  -- best_wait_idle: fewest queued + running on the account
  for _, id in ipairs(ids) do
    local n = redis.call('LLEN', k_pin(id, need))
      + tonumber(redis.call('HGET', k_acct(id), slot .. '_inflight'))
    if not fewest or n < fewest then best, fewest = id, n end
  end
  return best
end
