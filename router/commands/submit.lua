-- SUBMIT: create and route tasks of one owner; place those that can start now.
-- ARGV[7]  n, then n groups of 13: id, task_type, requested mode ('' for a child),
--          parent id, flag-free prompt, input JSON, estimate ms, rejection code, message,
--          webhook endpoint, webhook ('' none, '1' terminal states, 'progress' start too),
--          nonce of its webhook secret ('' none): the secret is staged before this script
--          runs at `k_hook(id) .. ':' .. nonce`, never in ARGV; it becomes the task's
--          (`k_hook(id)`) if this call creates the task, else it is deleted; job class
--          ('image', 'video', 'hd_video'; '': a child's is its parent's, and an HD parent
--          makes the estimate of a type in HD_SCALED HD: x HD_FACTOR)
-- results  flat (id, 'created'|'duplicate', status, error code)
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/slot_of"
--- @include "includes/stats"
--- @include "includes/lines"
--- @include "includes/finish"
--- @include "includes/reconcile"
--- @include "includes/strategies"
--- @include "includes/pump"

-- Where a peer strategy binds a new task of the owner that needs `need` (nil: the
-- owner's line).
local function bind(tid, need)
  if STRATEGY == 'renewal' or STRATEGY == 'least_loaded' then return nil end
  return choose(tid, need, redis.call('SMEMBERS', k_cap(need)))
end

-- Rule 5 and the plan rules per job type for a child of `class` on its parent's account
-- `acct` (enabled), in its parent's `mode`: nil and the mode it runs in there (and why it
-- fell back), or why it cannot run (code, message).
local function child_route(acct, class, mode)
  local fallback
  local plan = redis.call('HGET', k_acct(acct), 'plan') or ''
  if mode ~= 'relax' and redis.call('SISMEMBER', k_cap(need_of('fast', class)), acct) == 0 then
    if class == 'hd_video' then
      if not HD_PLANS[plan] then
        return 'plan_disallows_job', 'account ' .. acct .. ' of the parent task is on plan '
          .. plan .. ', which runs no HD video'
      end
      return 'no_fast_hours', 'HD video runs fast only, and account ' .. acct
        .. ' of the parent task cannot run fast now (no fast hours, or set to relax)'
    end
    mode, fallback = 'relax', 'account_set_to_relax'  -- rule 3
  end
  if mode == 'relax' and class == 'hd_video' then
    return 'hd_video_fast_only', 'HD video runs fast only, and the parent task ran relax'
  end
  if mode == 'relax' and redis.call('SISMEMBER', k_cap(need_of('relax', class)), acct) == 0 then
    if class == 'video' and redis.call('SISMEMBER', K_RELAXCAP, acct) == 1 then
      return 'plan_disallows_job', 'account ' .. acct .. ' of the parent task is on plan '
        .. plan .. ', which runs no relax video'
    end
    return 'parent_account_unavailable', 'account ' .. acct .. ' of the parent task has no '
      .. 'relax time'
  end
  return nil, nil, mode, fallback
end

local results = {}
local n = tonumber(ARGV[7])
-- The task index loses entries whose record has expired, the oldest n + 2 looked at per
-- call (as many as it may add and more), so it stays about as long as the live records.
for _, old in ipairs(redis.call('ZRANGE', K_TASKS, 0, n + 1)) do
  if redis.call('EXISTS', k_task(old)) == 0 then redis.call('ZREM', K_TASKS, old) end
end
for i = 0, n - 1 do
  local b = 8 + i * 13
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
    local class = ARGV[b + 12]
    if ARGV[b + 7] ~= '' then
      code, msg = ARGV[b + 7], ARGV[b + 8]
    elseif parent ~= '' then
      local pf = redis.call('HMGET', k_task(parent), 'status', 'effective_mode', 'account_id',
        'upgrade_reason', 'job_class', 'task_type')
      if not pf[1] then
        code, msg = 'parent_not_found', 'owner ' .. OWNER .. ' has no task ' .. parent
      elseif pf[1] ~= 'completed' then
        code, msg = 'parent_not_completed', 'parent task ' .. parent .. ' is ' .. pf[1]
      elseif PROMPTS_MADE[pf[6]]
          or (VIDEO_CHILDREN[ttype] or false) ~= (VIDEO_MADE[pf[6]] or false) then
        local what = 'an image'
        if VIDEO_CHILDREN[ttype] then what = 'a video' end
        code, msg = 'parent_kind_mismatch', ttype .. ' acts on ' .. what .. ', and parent task '
          .. parent .. ' is a ' .. (pf[6] or 'task') .. ' job'
      else
        local acct = pf[3]
        req, mode = pf[2], pf[2]
        -- The child of relax work run fast on expiring hours is relax work: it spends fast
        -- hours only by an upgrade of its own, never by inheriting one (invariant 3).
        if pf[4] and pf[4] ~= '' then req, mode = 'relax', 'relax' end
        if class == '' then  -- its parent's class (a video extend): an HD one costs HD
          class = pf[5] or ''
          if class == '' then class = 'image' end
          if class == 'hd_video' and HD_SCALED[ttype] then
            local est = math.min(math.floor(ARGV[b + 6] * HD_FACTOR + 0.5), MAX_ESTIMATE)
            redis.call('HSET', t, 'estimate_ms', istr(est))
          end
        end
        redis.call('HSET', t, 'account_id', acct)
        if redis.call('SISMEMBER', K_ENABLED, acct) == 0 then
          code = 'parent_account_unavailable'
          msg = 'account ' .. acct .. ' of the parent task is gone or disabled'
        else
          code, msg, mode, fallback = child_route(acct, class, mode)
          if not code then pin = acct end
        end
      end
    elseif redis.call('SCARD', K_ENABLED) == 0 then
      code, msg = no_relax_code(class)
    else
      mode = req
      if class == 'hd_video' and mode == 'relax' then
        code, msg = no_relax_code(class)
      elseif mode ~= 'relax' and redis.call('SCARD', k_cap(need_of('fast', class))) == 0 then
        if class == 'hd_video' then
          code, msg = no_hd_code()
        else
          mode, fallback = 'relax', fallback_reason()
        end
      end
      if not code and mode == 'relax'
          and redis.call('SCARD', k_cap(need_of('relax', class))) == 0 then
        code, msg = no_relax_code(class)
      elseif not code then
        pin = bind(tid, need_of(slot_of(mode), class))  -- only a peer strategy binds on arrival
      end
    end
    redis.call('HSET', t, 'requested_mode', req, 'job_class', class)
    count('submitted')
    if code then
      finish(tid, 'failed', code, msg)
    else
      redis.call('HSET', t, 'effective_mode', mode)
      if fallback then
        redis.call('HSET', t, 'fallback_reason', fallback, 'fallback_at', istr(now()))
      end
      local need = need_of(slot_of(mode), class)
      if pin then
        enqueue_pin(tid, pin, need, false)
      else
        enqueue(tid, k_line(need), false)
      end
    end
    local status = 'queued'
    if code then status = 'failed' end
    for _, v in ipairs({tid, 'created', status, code or ''}) do results[#results + 1] = v end
  end
end
pump({})
return out(results)
