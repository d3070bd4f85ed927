-- ACCOUNT_WRITE: add, change or remove an account, then re-route what that changes.
-- ARGV[7] 'add'|'set'|'remove', ARGV[8] account id, ARGV[9:] field/value pairs
-- results {'ok'|'exists'|'missing'|'busy' (remove with jobs in flight)|
--          'invalid' (a number field is not a whole number in its range; nothing written)}
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/int_arg"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/reconcile"
--- @include "includes/pump"

local op, id = ARGV[7], ARGV[8]
local a = k_acct(id)
local NUMBERS = {fast_ms = MAX_INT, declared_fast_ms = MAX_INT, plan_fast_ms = MAX_INT,
  fast_reserved_ms = MAX_INT, fast_limit = MAX_INT, relax_limit = MAX_INT,
  fast_inflight = MAX_INT, relax_inflight = MAX_INT, min_gap_ms = MAX_INT,
  video_limit = MAX_INT, video_inflight = MAX_INT,
  daily_cap = MAX_INT, work_start_h = 23, work_end_h = 23, renews_at = MAX_INT,
  cooldown_until = MAX_INT, fails = MAX_INT, declared_renews_at = MAX_INT}
for i = 9, #ARGV, 2 do
  local hi = NUMBERS[ARGV[i]]
  if hi and not int_arg(ARGV[i + 1], 0, hi) then return out({'invalid', ARGV[i]}) end
end
local exists = redis.call('EXISTS', a) == 1
if op == 'add' and exists then return out({'exists'}) end
if op ~= 'add' and not exists then return out({'missing'}) end
if op == 'remove' then
  local n = redis.call('HMGET', a, 'fast_inflight', 'relax_inflight')
  if tonumber(n[1]) + tonumber(n[2]) > 0 then return out({'busy'}) end
  redis.call('DEL', a)
  redis.call('SREM', K_ACCOUNTS, id)
else
  local fields, given = {}, {}
  for i = 9, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    given[ARGV[i]] = ARGV[i + 1]
  end
  if op == 'set' then
    local cur = redis.call('HMGET', a, 'setting', 'flip_reason')
    if given.setting then
      fields[#fields + 1] = 'flip_reason'
      fields[#fields + 1] = ''
    elseif given.fast_ms and tonumber(given.fast_ms) > 0 and cur[1] == 'relax'
        and cur[2] == 'fast_hours_exhausted' then
      -- Fast time topped up: undo the automatic flip (rule 4).
      for _, v in ipairs({'setting', 'fast', 'flip_reason', ''}) do fields[#fields + 1] = v end
      given.setting = 'fast'
    end
    if given.enabled == '1' then
      for _, v in ipairs({'attention_reason', '', 'attention_at', ''}) do
        fields[#fields + 1] = v
      end
    end
    -- Tell the driver of a new setting, or of new fast time on a fast account.
    local setting = given.setting or cur[1]
    if setting ~= cur[1] or (given.fast_ms and setting == 'fast') then
      switches[#switches + 1] = id
      switches[#switches + 1] = setting
    end
  end
  if #fields > 0 then redis.call('HSET', a, unpack(fields)) end
  redis.call('SADD', K_ACCOUNTS, id)
end
touch(id)
reconcile()
local accts = redis.call('SMEMBERS', K_PINNED)
pump(accts)
return out({'ok'})
