-- Putting a task that lost its slot back in line.
--- @include "includes/owner"
--- @include "includes/lines"
--- @include "includes/slot_of"
--- @include "includes/class_of"

-- Put a task that lost its slot back at the head of the line for what it needs (its mode
-- and class): the owner's line, or its account's pin line for a child (rules 1-5 then
-- apply again).
local function requeue(tid, acct)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'effective_mode', 'parent_id', 'upgrade_reason')
  redis.call('HSET', t, 'status', 'queued', 'started_at', '')
  if f[3] and f[3] ~= '' then  -- an upgraded relax task is relax again until upgraded anew
    f[1] = 'relax'
    redis.call('HSET', t, 'effective_mode', 'relax', 'upgrade_reason', '', 'upgraded_at', '')
  end
  local need = need_of(slot_of(f[1]), class_of(tid))
  if f[2] and f[2] ~= '' then
    enqueue_pin(tid, acct, need, true)
  else
    redis.call('HSET', t, 'account_id', '')
    enqueue(tid, k_line(need), true)
  end
end
