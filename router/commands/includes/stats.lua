-- Counters and histograms of the owner's stats hash, read by router.metrics.
--- @include "includes/owner"

-- Counters and histograms for the metrics (fields: see router.metrics).
local function count(field) redis.call('HINCRBY', K_STATS, field, 1) end
local function observe(name, mode, us)
  local s, bucket = us / 1000000, '+Inf'
  for _, b in ipairs(BUCKETS) do
    if s <= tonumber(b) then bucket = b break end
  end
  count(name .. ':' .. mode .. ':' .. bucket)
  redis.call('HINCRBYFLOAT', K_STATS, name .. ':' .. mode .. ':sum', string.format('%.6f', s))
end
