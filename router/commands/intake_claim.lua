-- INTAKE_CLAIM: move up to N messages from the intake list to a router's processing list,
-- number every entry there that is not yet numbered (`<n>:<message>`, so a message without
-- an id gets the same id however many routers handle it), and return them all.
-- N = 0 only numbers and returns what the router holds (after an outage, a takeover, or a
-- blocking LMOVE that brought one message in).
-- KEYS[1] intake list, KEYS[2] processing list, KEYS[3] claim counter
-- ARGV[1] N
-- returns the processing list's entries, oldest first
if tonumber(ARGV[1]) > 0 then
  local more = redis.call('RPOP', KEYS[1], ARGV[1])
  if more then for _, m in ipairs(more) do redis.call('LPUSH', KEYS[2], m) end end
end
local held = redis.call('LRANGE', KEYS[2], 0, -1)
local out = {}
for i, e in ipairs(held) do
  if not string.match(e, '^%d+:') then
    e = string.format('%d', redis.call('INCR', KEYS[3])) .. ':' .. e
    redis.call('LSET', KEYS[2], i - 1, e)
  end
  out[#held - i + 1] = e
end
return out
