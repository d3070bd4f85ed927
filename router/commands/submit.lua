-- SUBMIT: create and route tasks of one owner; place those that can start now.
-- ARGV[7]  n, then n groups of 12: id, task_type, requested mode ('' for a child),
--          parent id, flag-free prompt, input JSON, estimate ms, rejection code, message,
--          webhook endpoint, webhook ('' none, '1' terminal states, 'progress' start too),
--          nonce of its webhook secret ('' none): the secret is staged before this script
--          runs at `k_hook(id) .. ':' .. nonce`, never in ARGV; it becomes the task's
--          (`k_hook(id)`) if this call creates the task, else it is deleted
-- results  flat (id, 'created'|'duplicate', status, error code)
-- KEYS[1], ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/slot_of"
--- @include "includes/stats"
--- @include "includes/lines"
--- @include "includes/finish"
--- @include "includes/reconcile"
--- @include "includes/strategies"
--- @include "includes/pump"

-- Where a peer strategy binds a new task of the owner in `slot` (nil: the owner's line).
local function bind(tid, slot)
  if STRATEGY == 'renewal' or STRATEGY == 'least_loaded' then return nil end
  local set = K_RELAXCAP
  if slot == 'fast' then set = K_FASTCAP end
  return choose(tid, slot, redis.call('SMEMBERS', set))
end

local results = {}
local n = tonumber(ARGV[7])
-- The task index loses entries whose record has expired, the oldest n + 2 looked at per
-- call (as many as it may add and more), so it stays about as long as the live records.
for _, old in ipairs(redis.call('ZRANGE', K_TASKS, 0, n + 1)) do
  if redis.call('EXISTS', k_task(old)) == 0 then redis.call('ZREM', K_TASKS, old) end
end
for i = 0, n - 1 do
  local b = 8 + i * 12
  local tid, ttype, req, parent = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local t = k_task(tid)
  local staged = ARGV[b + 11] ~= '' and k_hook(tid) .. ':' .. ARGV[b + 11]
  if redis.call('EXISTS', t) == 1 then
    local f = redis.call('HMGET', t, 'status', 'error_code')
    if staged then redis.call('DEL', staged) end  -- a retry adds no secret
    for _, v in ipairs({tid, 'duplicate', f[1], f[2] or ''}) do results[#results + 1] = v end
  else
    redis.call('HSET', t, 'id', tid, 'owner', OWNER, 'task_type', ttype, 'status', 'queued',
      'parent_id', parent, 'prompt_base', ARGV[b + 4], 'input', ARGV[b + 5],
      'estimate_ms', ARGV[b + 6], 'created_at', istr(now()), 'attempt', '0')
    redis.call('ZADD', K_TASKS, istr(now()), tid)
    if ARGV[b + 10] ~= '' then
      redis.call('HSET', t, 'webhook', ARGV[b + 10], 'webhook_endpoint', ARGV[b + 9])
      if staged and redis.call('EXISTS', staged) == 1 then
        redis.call('RENAME', staged, k_hook(tid))
        redis.call('PERSIST', k_hook(tid))  -- kept while the task lives, then as long as it
      end
    end
    local code, msg, mode, fallback, pin
    if ARGV[b + 7] ~= '' then
      code, msg = ARGV[b + 7], ARGV[b + 8]
    elseif parent ~= '' then
      local pf = redis.call('HMGET', k_task(parent), 'status', 'effective_mode', 'account_id',
        'upgrade_reason')
      if not pf[1] then
        code, msg = 'parent_not_found', 'owner ' .. OWNER .. ' has no task ' .. parent
      elseif pf[1] ~= 'completed' then
        code, msg = 'parent_not_completed', 'parent task ' .. parent .. ' is ' .. pf[1]
      else
        local acct = pf[3]
        req, mode = pf[2], pf[2]
        -- The child of relax work run fast on expiring hours is relax work: it spends fast
        -- hours only by an upgrade of its own, never by inheriting one (invariant 3).
        if pf[4] and pf[4] ~= '' then req, mode = 'relax', 'relax' end
        redis.call('HSET', t, 'account_id', acct)
        if redis.call('SISMEMBER', K_ENABLED, acct) == 0 then
          code = 'parent_account_unavailable'
          msg = 'account ' .. acct .. ' of the parent task is gone or disabled'
        else
          if mode ~= 'relax' and redis.call('SISMEMBER', K_FASTCAP, acct) == 0 then
            mode, fallback = 'relax', 'account_set_to_relax'
          end
          if mode == 'relax' and redis.call('SISMEMBER', K_RELAXCAP, acct) == 0 then
            code = 'parent_account_unavailable'
            msg = 'account ' .. acct .. ' of the parent task has no relax time'
          else
            pin = acct
          end
        end
      end
    elseif redis.call('SCARD', K_ENABLED) == 0 then
      code, msg = no_relax_code()
    else
      mode = req
      if mode ~= 'relax' and redis.call('SCARD', K_FASTCAP) == 0 then
        mode, fallback = 'relax', fallback_reason()
      end
      if mode == 'relax' and redis.call('SCARD', K_RELAXCAP) == 0 then
        code, msg = no_relax_code()
      else
        pin = bind(tid, slot_of(mode))  -- only a peer strategy binds on arrival
      end
    end
    redis.call('HSET', t, 'requested_mode', req)
    count('submitted')
    if code then
      finish(tid, 'failed', code, msg)
    else
      redis.call('HSET', t, 'effective_mode', mode)
      if fallback then
        redis.call('HSET', t, 'fallback_reason', fallback, 'fallback_at', istr(now()))
      end
      if pin then
        enqueue_pin(tid, pin, slot_of(mode), false)
      else
        enqueue(tid, k_line(slot_of(mode)), false)
      end
    end
    local status = 'queued'
    if code then status = 'failed' end
    for _, v in ipairs({tid, 'created', status, code or ''}) do results[#results + 1] = v end
  end
end
pump({})
return out(results)
