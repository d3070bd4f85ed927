-- INTAKE_CLAIM: number messages as they enter a router's processing list, and return all
-- it holds. They come from the router's landing list first (where its blocking LMOVE or a
-- takeover put them, oldest), then up to N from the intake list. Every entry of a
-- processing list is `<n>:<message>`, numbered here on the way in (so a message without an
-- id gets the same id however many routers handle it). Nothing enters unnumbered, so an
-- entry's number is never guessed: a message that itself starts with `<digits>:` is still
-- numbered, and stays a message of its own.
-- N = 0 only moves the landing list (after an outage, a takeover, or a blocking LMOVE).
-- KEYS[1] intake list, KEYS[2] landing list, KEYS[3] processing list, KEYS[4] claim counter
-- (all with the intake list's hash tag)
-- ARGV[1] N
-- returns the processing list's entries, oldest first
local function take(message)
  local number = string.format('%d', redis.call('INCR', KEYS[4]))
  redis.call('LPUSH', KEYS[3], number .. ':' .. message)
end
local landed = redis.call('RPOP', KEYS[2])
while landed do
  take(landed)
  landed = redis.call('RPOP', KEYS[2])
end
if tonumber(ARGV[1]) > 0 then
  local more = redis.call('RPOP', KEYS[1], ARGV[1])
  if more then for _, m in ipairs(more) do take(m) end end
end
local held = redis.call('LRANGE', KEYS[3], 0, -1)
local out = {}
for i, e in ipairs(held) do out[#held - i + 1] = e end
return out
