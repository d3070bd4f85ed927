-- Fallback to relax when an owner's fast hours are gone; failure when relax is gone
-- (rules 1, 2).
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/finish"

-- Why a task of `class` has nowhere to run relax (rule 2, and the plan rules per job type).
local function no_relax_code(class)
  if redis.call('SCARD', K_ENABLED) == 0 then
    return 'no_account', 'owner ' .. OWNER .. ' has no enabled account'
  end
  if class == 'video' then
    return 'no_relax_video_account', 'relax video runs only on plans with relax video (Pro, '
      .. 'Mega): owner ' .. OWNER .. ' has no such account with relax time'
  end
  if class == 'hd_video' then
    return 'hd_video_fast_only', 'HD video runs fast only: ask for fast or turbo, or SD video'
  end
  return 'no_relax_account', 'owner ' .. OWNER .. ' has no account with relax time'
end

-- Why an HD video (fast only, no relax fallback) of the owner cannot run fast: no account
-- on a plan with HD video, or none of those with fast hours now.
local function no_hd_code()
  for _, id in ipairs(redis.call('SMEMBERS', K_ENABLED)) do
    if HD_PLANS[redis.call('HGET', k_acct(id), 'plan')] then
      return 'no_fast_hours', 'HD video runs fast only, and no account of owner ' .. OWNER
        .. ' that runs HD video has fast hours left'
    end
  end
  return 'plan_disallows_job', 'HD video runs only on plans with HD video (not Basic), and '
    .. 'owner ' .. OWNER .. ' has no enabled account on one'
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

-- When the owner's last fast hours for a class are gone, its waiting fast/turbo tasks of
-- that class become relax fallbacks (HD video, fast only, fails); when its last relax
-- time for a class is gone, its waiting relax tasks of that class fail (rules 1, 2, and
-- the plan rules per job type). When fast hours come back, fallbacks that have not
-- started go back to their fast line, in the order they fell back (a decision not yet
-- acted on is taken back).
local function reconcile()
  for _, class in ipairs(CLASSES) do
    local fastline = k_line(need_of('fast', class))
    local relaxable = class ~= 'hd_video'
    local relaxline = relaxable and k_line(need_of('relax', class))
    local fallen = relaxable and k_fallen(class)
    local fast_ok = redis.call('SCARD', k_cap(need_of('fast', class))) > 0
    if relaxable and fast_ok and redis.call('LLEN', fallen) > 0 then
      while true do
        local tid = redis.call('LPOP', fallen)
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
    if not fast_ok and redis.call('LLEN', fastline) > 0 then
      local can_relax = relaxable and redis.call('SCARD', k_cap(need_of('relax', class))) > 0
      while true do
        local tid = redis.call('LPOP', fastline)
        if not tid then break end
        if waiting(tid, fastline) then
          if can_relax then
            local why = fallback_reason()
            redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
              'fallback_reason', why, 'fallback_at', istr(now()))
            enqueue(tid, relaxline, false)
          elseif relaxable then
            finish(tid, 'failed', no_relax_code(class))
          else
            finish(tid, 'failed', no_hd_code())
          end
        end
      end
    end
    if relaxable and redis.call('SCARD', k_cap(need_of('relax', class))) == 0
        and redis.call('LLEN', relaxline) > 0 then
      local code, msg = no_relax_code(class)
      while true do
        local tid = redis.call('LPOP', relaxline)
        if not tid then break end
        if waiting(tid, relaxline) then finish(tid, 'failed', code, msg) end
      end
    end
  end
end
