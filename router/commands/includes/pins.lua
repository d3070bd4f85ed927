-- Children pinned to their parent's account (rule 5), and tasks a peer strategy bound.
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/finish"
--- @include "includes/refresh"

-- A task a peer strategy bound to an account on arrival, not a child: back to the owner's
-- line for what it needs when that account can no longer serve it, so the owner's rules
-- decide again.
local function unbind(tid, need)
  local f = redis.call('HMGET', k_task(tid), 'parent_id')
  if f[1] and f[1] ~= '' then return false end
  redis.call('HSET', k_task(tid), 'account_id', '')
  enqueue(tid, k_line(need), true)
  return true
end

-- The pin lines of an account, one per need.
local function pins_of(id)
  local lines = {}
  for _, slot in ipairs({'fast', 'relax'}) do
    for _, need in ipairs(NEEDS[slot]) do lines[#lines + 1] = k_pin(id, need) end
  end
  return lines
end

local function pinned_count(id)
  local n = 0
  for _, line in ipairs(pins_of(id)) do n = n + redis.call('LLEN', line) end
  return n
end

-- Children waiting on an account that can no longer run them in their mode: a fast child
-- goes relax when the account has relax time for its class (rule 3), else it fails (rule
-- 5, and HD video, which runs fast only). A child that went relax so and has not started
-- goes back to its parent's mode once the account can run fast again (a decision not yet
-- acted on is taken back).
local function check_pins(id)
  if pinned_count(id) == 0 then
    redis.call('SREM', K_PINNED, id)
    return
  end
  local enabled = redis.call('SISMEMBER', K_ENABLED, id) == 1
  for _, class in ipairs(CLASSES) do
    local fneed, rneed = need_of('fast', class), need_of('relax', class)
    local fastpin = k_pin(id, fneed)
    local relaxable = class ~= 'hd_video'
    local relaxpin = relaxable and k_pin(id, rneed)
    local can_relax = relaxable and redis.call('SISMEMBER', k_cap(rneed), id) == 1
    local code, why = 'parent_account_unavailable', 'account ' .. id .. ' of the parent task '
    if not enabled then
      why = why .. 'is gone or disabled'
    elseif class == 'hd_video' then
      code, why = 'no_fast_hours', 'HD video runs fast only, and ' .. why .. 'cannot run fast'
    elseif class == 'video' and redis.call('SISMEMBER', K_RELAXCAP, id) == 1 then
      code, why = 'plan_disallows_job', why .. 'runs no relax video on its plan'
    else
      why = why .. 'has no relax time'
    end
    if redis.call('SISMEMBER', k_cap(fneed), id) == 1 then
      if relaxable then
        for _, tid in ipairs(redis.call('LRANGE', relaxpin, 0, -1)) do
          if waiting(tid, relaxpin)
              and redis.call('HGET', k_task(tid), 'fallback_reason') ~= '' then
            local mode = redis.call('HGET', k_task(tid), 'requested_mode')
            if mode == 'fast' or mode == 'turbo' then
              redis.call('HSET', k_task(tid), 'effective_mode', mode, 'fallback_reason', '',
                'fallback_at', '')
              enqueue_pin(tid, id, fneed, false)
            end
          end
        end
      end
    else
      while true do
        local tid = redis.call('LPOP', fastpin)
        if not tid then break end
        if waiting(tid, fastpin) and not unbind(tid, fneed) then
          if enabled and can_relax then
            redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
              'fallback_reason', 'account_set_to_relax', 'fallback_at', istr(now()))
            enqueue_pin(tid, id, rneed, false)
          else
            finish(tid, 'failed', code, why)
          end
        end
      end
    end
    if relaxable and not can_relax then
      while true do
        local tid = redis.call('LPOP', relaxpin)
        if not tid then break end
        if waiting(tid, relaxpin) and not unbind(tid, rneed) then
          finish(tid, 'failed', code, why)
        end
      end
    end
  end
  if pinned_count(id) == 0 then
    redis.call('SREM', K_PINNED, id)
  end
end
