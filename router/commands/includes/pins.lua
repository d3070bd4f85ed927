-- Children pinned to their parent's account (rule 5), and tasks a peer strategy bound.
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/finish"
--- @include "includes/refresh"

-- A task a peer strategy bound to an account on arrival, not a child: back to the owner's
-- line when that account can no longer serve it, so the owner's rules decide again.
local function unbind(tid, slot)
  local f = redis.call('HMGET', k_task(tid), 'parent_id')
  if f[1] and f[1] ~= '' then return false end
  redis.call('HSET', k_task(tid), 'account_id', '')
  enqueue(tid, k_line(slot), true)
  return true
end

-- Children waiting on an account that can no longer run them in their mode: a fast child
-- goes relax when the account has relax time (rule 3), else it fails (rule 5). A child that
-- went relax so and has not started goes back to its parent's mode once the account can
-- run fast again (a decision not yet acted on is taken back).
local function check_pins(id)
  local fastpin, relaxpin = k_pin(id, 'fast'), k_pin(id, 'relax')
  if redis.call('LLEN', fastpin) + redis.call('LLEN', relaxpin) == 0 then
    redis.call('SREM', K_PINNED, id)
    return
  end
  local enabled = redis.call('SISMEMBER', K_ENABLED, id) == 1
  local can_relax = redis.call('SISMEMBER', K_RELAXCAP, id) == 1
  local why = 'account ' .. id .. ' of the parent task is gone or disabled'
  if enabled then why = 'account ' .. id .. ' of the parent task has no relax time' end
  if redis.call('SISMEMBER', K_FASTCAP, id) == 1 then
    for _, tid in ipairs(redis.call('LRANGE', relaxpin, 0, -1)) do
      if waiting(tid, relaxpin) and redis.call('HGET', k_task(tid), 'fallback_reason') ~= '' then
        local mode = redis.call('HGET', k_task(tid), 'requested_mode')
        if mode == 'fast' or mode == 'turbo' then
          redis.call('HSET', k_task(tid), 'effective_mode', mode, 'fallback_reason', '',
            'fallback_at', '')
          enqueue_pin(tid, id, 'fast', false)
        end
      end
    end
  else
    while true do
      local tid = redis.call('LPOP', fastpin)
      if not tid then break end
      if waiting(tid, fastpin) and not unbind(tid, 'fast') then
        if enabled and can_relax then
          redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
            'fallback_reason', 'account_set_to_relax', 'fallback_at', istr(now()))
          enqueue_pin(tid, id, 'relax', false)
        else
          finish(tid, 'failed', 'parent_account_unavailable', why)
        end
      end
    end
  end
  if not can_relax then
    while true do
      local tid = redis.call('LPOP', relaxpin)
      if not tid then break end
      if waiting(tid, relaxpin) and not unbind(tid, 'relax') then
        finish(tid, 'failed', 'parent_account_unavailable', why)
      end
    end
  end
  if redis.call('LLEN', fastpin) + redis.call('LLEN', relaxpin) == 0 then
    redis.call('SREM', K_PINNED, id)
  end
end
