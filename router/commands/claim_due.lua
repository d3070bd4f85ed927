-- CLAIM_DUE: a worker takes the entries of a schedule that are due: submitted driver jobs
-- to poll, or webhook deliveries to make.
-- KEYS[1] the schedule (zset: the polls, '<owner>/<task>/<attempt>', or an owner's outbox,
-- '<task>/<event>' -> when due, Redis µs)
-- ARGV[1] most entries to take, ARGV[2] µs they stay this worker's: each is pushed that far
-- ahead, so another worker takes it only if this one does not handle it in time (it died).
-- returns {now µs, earliest due of the rest or -1, member...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local held = string.format('%d', now + tonumber(ARGV[2]))
local pushed = {}
for _, m in ipairs(due) do  -- one ZADD per thousand, not one per entry
  pushed[#pushed + 1], pushed[#pushed + 2] = held, m
  if #pushed >= 2000 then
    redis.call('ZADD', KEYS[1], unpack(pushed))
    pushed = {}
  end
end
if #pushed > 0 then redis.call('ZADD', KEYS[1], unpack(pushed)) end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {string.format('%d', now), head[2] or '-1'}
for _, m in ipairs(due) do out[#out + 1] = m end
return out
