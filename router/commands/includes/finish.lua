-- Ending a task: its webhook delivery, its terminal record, the done announcement.
--- @include "includes/owner"
--- @include "includes/stats"

-- Schedule a webhook delivery of `event`, due now, if the task has a webhook ('1': terminal
-- states, 'progress': its start too). A terminal event replaces a pending start delivery.
local function hook(tid, event)
  local t = k_task(tid)
  local want = redis.call('HGET', t, 'webhook')
  if not want or want == '' or (event == 'running' and want ~= 'progress') then return end
  if event ~= 'running' then
    redis.call('ZREM', K_OUTBOX, tid .. '/running')
    redis.call('EXPIRE', k_hook(tid), TTL)
  end
  redis.call('ZADD', K_OUTBOX, istr(now()), tid .. '/' .. event)
  redis.call('HSET', t, 'webhook_event', event, 'webhook_status', 'pending',
    'webhook_attempts', '0', 'webhook_error', '')
end

local function finish(tid, status, code, message)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'effective_mode', 'started_at', 'waited', 'fallback_reason')
  local mode = f[1] or ''
  if f[4] and f[4] ~= '' and not f[3] then  -- never ran: it did not run relax as a fallback
    redis.call('HSET', t, 'fallback_reason', '', 'fallback_at', '')
  end
  count('finished:' .. status .. ':' .. mode)
  if code then count('failed:' .. code) end
  if status == 'completed' and f[2] and f[2] ~= '' then
    observe('run', mode, now() - tonumber(f[2]))
  end
  redis.call('HSET', t, 'status', status, 'finished_at', istr(now()), 'slot', '')
  if code then redis.call('HSET', t, 'error_code', code, 'error_message', message) end
  redis.call('EXPIRE', t, TTL)
  hook(tid, status)
  redis.call('PUBLISH', k_done(tid), status)
  finished[#finished + 1] = tid
end
