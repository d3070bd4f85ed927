-- OUTBOX_RECORD: the result of one webhook POST goes on the task record; the delivery
-- leaves the outbox, or comes due again after a backoff while it has attempts left.
-- Nothing is done for a delivery no longer in the outbox (replaced, or recorded by
-- another deliverer) or whose task record has expired.
-- KEYS[1] the owner's outbox, KEYS[2] the task's record
-- ARGV[1] member '<task>/<event>', ARGV[2] event, ARGV[3] '' if delivered, else the error
-- (HTTP status or exception name), ARGV[4] most attempts, ARGV[5] first backoff µs
-- (doubling per attempt)
-- returns 'delivered' | 'retry' | 'failed' | 'stale'
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'stale' end
if redis.call('HGET', KEYS[2], 'webhook_event') ~= ARGV[2] then  -- expired, or replaced
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'stale'
end
local n = redis.call('HINCRBY', KEYS[2], 'webhook_attempts', 1)
local verdict = 'delivered'
if ARGV[3] ~= '' then
  verdict = 'failed'
  if n < tonumber(ARGV[4]) then verdict = 'retry' end
end
if verdict == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local due = now + tonumber(ARGV[5]) * 2 ^ (n - 1)
  redis.call('ZADD', KEYS[1], string.format('%d', due), ARGV[1])
  redis.call('HSET', KEYS[2], 'webhook_error', ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], 'webhook_status', verdict, 'webhook_error', ARGV[3])
end
return verdict
