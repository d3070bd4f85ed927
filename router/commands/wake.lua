-- WAKE: accounts whose rest ended or whose renewal date came are refreshed and given work.
-- ARGV[7]  'all' (optional): refresh every account of the owner (its choices changed)
-- results {number of accounts woken}
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/reconcile"
--- @include "includes/pump"

local due
if ARGV[7] == 'all' then
  due = redis.call('SMEMBERS', K_ACCOUNTS)
  table.sort(due)
else
  due = redis.call('ZRANGEBYSCORE', K_TIMERS, '-inf', istr(now()), 'LIMIT', 0, 100)
end
for _, id in ipairs(due) do
  redis.call('ZREM', K_TIMERS, id)
  touch(id)
end
reconcile()
pump(due)
return out({istr(#due)})
