-- WAKE: accounts whose rest ended or whose renewal date came are refreshed and given work.
-- results {number of accounts woken}
-- KEYS[1], ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"

local due = redis.call('ZRANGEBYSCORE', K_TIMERS, '-inf', istr(now()), 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', K_TIMERS, id)
  touch(id)
end
reconcile()
pump(due)
return out({istr(#due)})
