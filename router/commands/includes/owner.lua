-- The calling convention and the shared functions of every owner script.
--
-- KEYS     every fixed key of the owner (`router.keys.OWNER_KEYS`, in order; named by
--          the generated helpers: K_ACCOUNTS = KEYS[1], which names the hash slot, the
--          lines, free indexes and capability sets per need...), then in a simulation
--          its virtual clock. Keys of one task or account are built from ARGV[1]: every
--          key a call touches carries the same `{o:<owner>}` tag (one cluster slot).
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
-- The shared functions (includes/*.lua, each naming the includes it needs, each script
-- the ones it uses) implement `router.policy` on these owner-scoped indexes:
--   enabled   accounts that are enabled
--   fastcap   `policy.has_fast_hours`    relaxcap  `policy.has_relax_time`
--   free:S    `policy.can_take(a, S)`, scored by `policy.account_score(a, S)`

-- luacheck: push ignore 211 (the convention's names: each script uses some)
local O, P, OWNER, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local DLEASE, RLEASE = tonumber(ARGV[5]), tonumber(ARGV[6])
-- luacheck: pop

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

-- Every owner script's reply (the convention above).
local function out(results) return {results, placed, switches, finished} end
