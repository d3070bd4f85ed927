-- Account health: rest (pacing, cooldown, daily cap, working hours) and renewal dates,
-- as `router.policy.rest_until` has them.
--- @include "includes/owner"

-- `policy.rest_until` for a pacing deadline and a count of the day's jobs: until when the
-- account may start no job (0: it may now).
local function resting(a, paced, day, jobs)
  local f = redis.call('HMGET', a, 'cooldown_until', 'daily_cap', 'work_start_h', 'work_end_h')
  local t = now()
  local untl = math.max(paced, tonumber(f[1] or '0'))
  local today = math.floor(t / US_DAY)
  local cap = tonumber(f[2] or '0')
  if cap > 0 and tonumber(day or '-1') == today and tonumber(jobs or '0') >= cap then
    untl = math.max(untl, (today + 1) * US_DAY)
  end
  if f[3] and f[3] ~= '' and f[4] and f[4] ~= '' and f[3] ~= f[4] then
    local s, e = tonumber(f[3]), tonumber(f[4])
    local hour = math.floor((t % US_DAY) / US_HOUR)
    local inside
    if s < e then inside = hour >= s and hour < e else inside = hour >= s or hour < e end
    if not inside then
      local nxt = today * US_DAY + s * US_HOUR
      if nxt <= t then nxt = nxt + US_DAY end
      untl = math.max(untl, nxt)
    end
  end
  if untl > t then return untl end
  return 0
end

-- Placement's view (`policy.rest_until`): jobs are paced and counted as they are placed.
local function rest_until(a)
  local f = redis.call('HMGET', a, 'paced_until', 'day', 'day_jobs')
  return resting(a, tonumber(f[1] or '0'), f[2], f[3])
end

-- When the working-hours window the account is in now closes (0: no window, or not in it).
local function hours_end(a)
  local f = redis.call('HMGET', a, 'work_start_h', 'work_end_h')
  if not f[1] or f[1] == '' or not f[2] or f[2] == '' or f[1] == f[2] then return 0 end
  local t = now()
  local day0 = math.floor(t / US_DAY) * US_DAY
  local nxt = day0 + tonumber(f[2]) * US_HOUR
  if nxt <= t then nxt = nxt + US_DAY end
  return nxt
end

local renewals = 0  -- renewals made in this call (`pump` then takes fallbacks back)

-- A renewal date passed: the plan's fast hours are back, an automatic flip is undone.
local function renew_if_due(id, a)
  local f = redis.call('HMGET', a, 'renews_at', 'plan_fast_ms', 'setting', 'flip_reason')
  local at = tonumber(f[1] or '0')
  if at == 0 or at > now() then return end
  while at <= now() do at = at + US_MONTH end
  redis.call('HSET', a, 'renews_at', istr(at), 'fast_ms', f[2] or '0')
  renewals = renewals + 1
  if f[3] == 'relax' and f[4] == 'fast_hours_exhausted' then
    redis.call('HSET', a, 'setting', 'fast', 'flip_reason', '')
    switches[#switches + 1] = id
    switches[#switches + 1] = 'fast'
  end
end
