-- RATE_LIMIT: take one request from an API key's token bucket, atomically, so every
-- `byoa api` replica shares one limit. The bucket holds at most BURST tokens and refills at
-- RATE tokens a second (Redis clock); a request takes one token, or is refused.
-- KEYS[1] the key's bucket (hash: `tokens`, `at` in µs; expires once it would be full)
-- ARGV[1] RATE: requests a second (> 0)
-- ARGV[2] BURST: most requests at once (>= 1)
-- returns {1, 0} when allowed, {0, ms until a token is back} when refused

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
end
local allowed, wait_ms = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms}
