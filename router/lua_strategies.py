"""The account-choice strategies of the open proxies, in Lua, kept for comparison.

Ours (`Strategy.LEAST_LOADED`) needs none of this: a task waits in its owner's line and a
freed slot goes to its head, on the free account with the best score. The peers bind a
task to an account on arrival, by one of the rules below; `bench/scheduling.py` compares
them on one trace. `configure` builds an owner script for a strategy (and, for a
simulation, a virtual clock); the functions here are part of `router.lua_lib.PRELUDE`.
"""

from __future__ import annotations

from router.models import Strategy


def configure(
    script: str, strategy: Strategy = Strategy.LEAST_LOADED, clock_key: str | None = None
) -> str:
    """An owner script built for a strategy, reading time from `clock_key` if given (a
    simulation's virtual clock) instead of the Redis clock."""
    for old, new in (
        ("local CLOCK = nil", f"local CLOCK = {_lua_string(clock_key)}" if clock_key else ""),
        ("local STRATEGY = 'least_loaded'", f"local STRATEGY = '{Strategy(strategy).value}'"),
    ):
        if new and new != old:
            if script.count(old) != 1:
                raise ValueError(f"{old!r} is not in the script once: not an owner script")
            script = script.replace(old, new)
    return script


def _lua_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


PEER_STRATEGIES = """
-- The peer strategies, kept for comparison (`bench/scheduling.py`): the open proxies bind a
-- task to an account on arrival, by one of these rules, and it waits in that account's
-- own line. O(accounts) per task; the default needs none of this.
local function spread(tid)  -- a number in [0, 1) fixed by the task id: reproducible runs
  return tonumber(string.sub(redis.sha1hex(tid), 1, 8), 16) / 4294967296
end

local function choose(tid, slot, ids)
  if #ids == 0 then return nil end
  table.sort(ids)
  if STRATEGY == 'random' then return ids[math.floor(spread(tid) * #ids) + 1] end
  if STRATEGY == 'round_robin' then
    local last, pick = redis.call('HGET', K_CURSOR, slot) or '', ids[1]
    for _, id in ipairs(ids) do
      if id > last then pick = id break end
    end
    redis.call('HSET', K_CURSOR, slot, pick)
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
  local best, fewest  -- best_wait_idle: fewest queued + running on the account
  for _, id in ipairs(ids) do
    local n = redis.call('LLEN', k_pin(id, slot))
      + tonumber(redis.call('HGET', k_acct(id), slot .. '_inflight'))
    if not fewest or n < fewest then best, fewest = id, n end
  end
  return best
end

-- Where a peer strategy binds a new task of the owner in `slot` (nil: the owner's line).
local function bind(tid, slot)
  if STRATEGY == 'least_loaded' then return nil end
  local set = K_RELAXCAP
  if slot == 'fast' then set = K_FASTCAP end
  return choose(tid, slot, redis.call('SMEMBERS', set))
end
"""
