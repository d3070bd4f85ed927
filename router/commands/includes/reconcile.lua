-- Fallback to relax when an owner's fast hours are gone; failure when relax is gone
-- (rules 1, 2).
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/finish"

local function no_relax_code()
  if redis.call('SCARD', K_ENABLED) == 0 then
    return 'no_account', 'owner ' .. OWNER .. ' has no enabled account'
  end
  return 'no_relax_account', 'owner ' .. OWNER .. ' has no account with relax time'
end

-- Why a fast/turbo task of the owner runs relax when no account can run fast: its
-- accounts with fast hours are all set to relax (by an operator), or none has any left
-- (`policy.fallback_reason`). Looked up once per call.
local FALLBACK
local function fallback_reason()
  if not FALLBACK then
    FALLBACK = 'fast_hours_exhausted'
    for _, id in ipairs(redis.call('SMEMBERS', K_ENABLED)) do
      local f = redis.call('HMGET', k_acct(id), 'setting', 'fast_ms')
      if f[1] == 'relax' and tonumber(f[2] or '0') > 0 then
        FALLBACK = 'account_set_to_relax'
        break
      end
    end
  end
  return FALLBACK
end

-- When the owner's last fast hours are gone, waiting fast/turbo tasks become relax
-- fallbacks; when its last relax time is gone, waiting relax tasks fail (rules 1, 2).
-- When fast hours come back, fallbacks that have not started go back to the fast line,
-- in the order they fell back (a decision not yet acted on is taken back).
local function reconcile()
  local fastline, relaxline = k_line('fast'), k_line('relax')
  if redis.call('SCARD', K_FASTCAP) > 0 and redis.call('LLEN', K_FALLEN) > 0 then
    while true do
      local tid = redis.call('LPOP', K_FALLEN)
      if not tid then break end
      if waiting(tid, relaxline) then
        local f = redis.call('HMGET', k_task(tid), 'requested_mode', 'fallback_reason')
        if (f[1] == 'fast' or f[1] == 'turbo') and f[2] and f[2] ~= '' then
          redis.call('HSET', k_task(tid), 'effective_mode', f[1], 'fallback_reason', '',
            'fallback_at', '')
          enqueue(tid, fastline, false)
        end
      end
    end
  end
  if redis.call('SCARD', K_FASTCAP) == 0 and redis.call('LLEN', fastline) > 0 then
    local can_relax = redis.call('SCARD', K_RELAXCAP) > 0
    while true do
      local tid = redis.call('LPOP', fastline)
      if not tid then break end
      if waiting(tid, fastline) then
        if can_relax then
          local why = fallback_reason()
          redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
            'fallback_reason', why, 'fallback_at', istr(now()))
          enqueue(tid, relaxline, false)
        else
          local code, msg = no_relax_code()
          finish(tid, 'failed', code, msg)
        end
      end
    end
  end
  if redis.call('SCARD', K_RELAXCAP) == 0 and redis.call('LLEN', relaxline) > 0 then
    local code, msg = no_relax_code()
    while true do
      local tid = redis.call('LPOP', relaxline)
      if not tid then break end
      if waiting(tid, relaxline) then finish(tid, 'failed', code, msg) end
    end
  end
end
