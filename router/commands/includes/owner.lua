-- The calling convention and the shared functions of every owner script.
--
-- KEYS[1]  the owner's account set (`<prefix>:{o:<owner>}:accounts`); it names the hash
--          slot, and every key the script touches carries the same `{o:<owner>}` tag.
-- ARGV[1]  owner base key `<prefix>:{o:<owner>}`
-- ARGV[2]  key prefix
-- ARGV[3]  owner id
-- ARGV[4]  seconds a terminal task record is kept
-- ARGV[5]  dispatch lease, microseconds: how long a placed task may wait for its worker
-- ARGV[6]  run lease, microseconds: how long a running task stays held without a renewal
-- ARGV[7:] per script.
-- Each returns `out(results)`: {results, placed, switches, finished}, where
--   placed    flat (task, account, attempt, slot) for every task given a slot: dispatch it
--   switches  flat (account, setting) for every account whose setting changed: tell the driver
--   finished  task ids that reached a terminal state in this call
-- The functions implement `router.policy` on these owner-scoped indexes:
--   enabled   accounts that are enabled
--   fastcap   `policy.has_fast_hours`    relaxcap  `policy.has_relax_time`
--   free:S    `policy.can_take(a, S)`, scored by `policy.account_score(a, S)`

local O, P, OWNER, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local DLEASE, RLEASE = tonumber(ARGV[5]), tonumber(ARGV[6])

--- @include "generated/keys"
--- @include "generated/constants"
--- @include "generated/config"

local placed, switches, finished = {}, {}, {}
local function istr(n) return string.format('%d', n) end
local NOW
local function now()  -- microseconds since the epoch on the Redis clock, fixed per call
  if not NOW then
    local v = CLOCK and redis.call('GET', CLOCK)
    if v then
      NOW = tonumber(v)
    else
      local t = redis.call('TIME')
      NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
    end
  end
  return NOW
end
local MAX_INT = 2 ^ 53  -- the whole numbers a Lua number (a double) holds exactly
-- An argument as a whole number in [lo, hi], else nil: scripts check before they write
-- (Redis does not roll a script back, so a write that fails half way leaves half a change).
local function int_arg(v, lo, hi)
  local n = tonumber(v)
  if not n or n ~= n or n < lo or n > hi or n ~= math.floor(n) then return nil end
  return n
end
-- Add `delta` to a counter field; it stays within ±2^53, so this never fails.
local function incr(key, field, delta)
  local v = (tonumber(redis.call('HGET', key, field) or '0') or 0) + delta
  redis.call('HSET', key, field, istr(math.max(-MAX_INT, math.min(MAX_INT, v))))
end
-- Whole-number division rounded down, exact for operands below 2^53 (as Python's //).
local function idiv(x, y)
  local q = math.floor(x / y)
  if q * y > x then q = q - 1 elseif (q + 1) * y <= x then q = q + 1 end
  return q
end
local function slot_of(mode) if mode == 'relax' then return 'relax' end return 'fast' end
local function member(set, id, yes)
  if yes then redis.call('SADD', set, id) else redis.call('SREM', set, id) end
end


--- @include "includes/stats"
--- @include "includes/lines"
--- @include "includes/finish"
--- @include "includes/health"
--- @include "includes/refresh"
--- @include "includes/pins"
--- @include "includes/reconcile"
--- @include "includes/slots"
--- @include "includes/strategies"
--- @include "includes/pump"
