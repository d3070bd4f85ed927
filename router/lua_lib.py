"""The Lua shared by every owner script: index upkeep, placement, release, the pump.

`PRELUDE` is prepended to each script in `router.lua` (Redis 6.2 scripts cannot share
functions). Its functions implement `router.policy` on these owner-scoped indexes:
  enabled   accounts that are enabled
  fastcap   `policy.has_fast_hours`    relaxcap  `policy.has_relax_time`
  free:S    `policy.can_take(a, S)`, scored by `policy.account_score(a, S)`
"""

from __future__ import annotations

from router.keys import lua_key_helpers
from router.lua_strategies import PEER_STRATEGIES
from router.policy import SCORE_HOURS_SPAN, SCORE_LOAD_SCALE, US_PER_DAY, US_PER_HOUR

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
"""Upper bounds (s) of the wait and run time histograms kept in each owner's stats hash."""


PRELUDE = (
    """
local O, P, OWNER, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local DLEASE, RLEASE = tonumber(ARGV[5]), tonumber(ARGV[6])
"""
    + lua_key_helpers()
    + f"""
local LOAD, SPAN = {SCORE_LOAD_SCALE}, {SCORE_HOURS_SPAN}
local BUCKETS = {{{", ".join(repr(str(b)) for b in DURATION_BUCKETS)}}}
local US_HOUR, US_DAY, US_MONTH = {US_PER_HOUR}, {US_PER_DAY}, {30 * US_PER_DAY}
"""
    + """
local placed, switches, finished = {}, {}, {}
local function istr(n) return string.format('%d', n) end
local CLOCK = nil  -- a simulation's virtual clock key (see `configure`)
local STRATEGY = 'least_loaded'  -- how a task's account is chosen (see `configure`)
local NOW
local function now()  -- microseconds since the epoch on the Redis clock, fixed per call
  if not NOW then
    local v = CLOCK and redis.call('GET', CLOCK)
    if v then
      NOW = tonumber(v)
    else
      local t = redis.call('TIME')
      NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
    end
  end
  return NOW
end
local function slot_of(mode) if mode == 'relax' then return 'relax' end return 'fast' end
local function member(set, id, yes)
  if yes then redis.call('SADD', set, id) else redis.call('SREM', set, id) end
end

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
  local f = redis.call('HMGET', t, 'effective_mode', 'started_at')
  local mode = f[1] or ''
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

local function waiting(tid)
  local f = redis.call('HMGET', k_task(tid), 'status', 'slot')
  return f[1] == 'queued' and (not f[2] or f[2] == '')
end

-- `policy.rest_until`: until when the account may start no job (0: it may now).
local function rest_until(a)
  local f = redis.call('HMGET', a, 'paced_until', 'cooldown_until', 'daily_cap', 'day',
    'day_jobs', 'work_start_h', 'work_end_h')
  local t = now()
  local untl = math.max(tonumber(f[1] or '0'), tonumber(f[2] or '0'))
  local today = math.floor(t / US_DAY)
  local cap = tonumber(f[3] or '0')
  if cap > 0 and tonumber(f[4] or '-1') == today and tonumber(f[5] or '0') >= cap then
    untl = math.max(untl, (today + 1) * US_DAY)
  end
  if f[6] and f[6] ~= '' and f[7] and f[7] ~= '' and f[6] ~= f[7] then
    local s, e = tonumber(f[6]), tonumber(f[7])
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

-- A renewal date passed: the plan's fast hours are back, an automatic flip is undone.
local function renew_if_due(id, a)
  local f = redis.call('HMGET', a, 'renews_at', 'plan_fast_ms', 'setting', 'flip_reason')
  local at = tonumber(f[1] or '0')
  if at == 0 or at > now() then return end
  while at <= now() do at = at + US_MONTH end
  redis.call('HSET', a, 'renews_at', istr(at), 'fast_ms', f[2] or '0')
  if f[3] == 'relax' and f[4] == 'fast_hours_exhausted' then
    redis.call('HSET', a, 'setting', 'fast', 'flip_reason', '')
    switches[#switches + 1] = id
    switches[#switches + 1] = 'fast'
  end
end

-- Recompute an account's index memberships and scores; flip it to relax when a fast
-- setting has no fast time left (rule 4). Returns true if it flipped. A resting account
-- is in no free index, and its next change (end of rest, renewal) is in the timers.
local function refresh(id)
  local a = k_acct(id)
  if redis.call('EXISTS', a) == 1 then renew_if_due(id, a) end
  local f = redis.call('HMGET', a, 'plan', 'setting', 'fast_ms', 'fast_reserved_ms',
    'fast_limit', 'relax_limit', 'fast_inflight', 'relax_inflight', 'enabled')
  if not f[1] then
    for _, set in ipairs({K_ENABLED, K_FASTCAP, K_RELAXCAP}) do redis.call('SREM', set, id) end
    redis.call('ZREM', k_free('fast'), id)
    redis.call('ZREM', k_free('relax'), id)
    redis.call('ZREM', K_TIMERS, id)
    return false
  end
  local plan, setting = f[1], f[2]
  local fast_ms, reserved = tonumber(f[3]), tonumber(f[4])
  local fl, rl, fi, ri = tonumber(f[5]), tonumber(f[6]), tonumber(f[7]), tonumber(f[8])
  local enabled = f[9] == '1'
  local flipped = false
  if setting == 'fast' and fast_ms <= 0 then
    setting, flipped = 'relax', true
    redis.call('HSET', a, 'setting', 'relax', 'flipped_at', istr(now()),
      'flip_reason', 'fast_hours_exhausted')
    redis.call('HINCRBY', a, 'auto_flips', 1)
    switches[#switches + 1] = id
    switches[#switches + 1] = 'relax'
  end
  local fastcap = enabled and setting == 'fast' and fast_ms > 0 and fl > 0
  local relaxcap = enabled and plan ~= 'basic' and rl > 0
  member(K_ENABLED, id, enabled)
  member(K_FASTCAP, id, fastcap)
  member(K_RELAXCAP, id, relaxcap)
  local rest = rest_until(a)
  local timer = rest
  for _, at in ipairs({tonumber(redis.call('HGET', a, 'renews_at') or '0'), hours_end(a)}) do
    if at > 0 and (timer == 0 or at < timer) then timer = at end
  end
  if timer > 0 then
    redis.call('ZADD', K_TIMERS, istr(timer), id)
  else
    redis.call('ZREM', K_TIMERS, id)
  end
  if rest == 0 and fastcap and fi < fl and fast_ms - reserved > 0 then
    local avail = math.min(fast_ms - reserved, SPAN - 1)
    local score = math.floor(fi * LOAD / fl) * SPAN + (SPAN - 1 - avail)
    redis.call('ZADD', k_free('fast'), istr(score), id)
  else
    redis.call('ZREM', k_free('fast'), id)
  end
  if rest == 0 and relaxcap and ri < rl then
    redis.call('ZADD', k_free('relax'), istr(math.floor(ri * LOAD / rl)), id)
  else
    redis.call('ZREM', k_free('relax'), id)
  end
  return flipped
end

-- A task a peer strategy bound to an account on arrival, not a child: back to the owner's
-- line when that account can no longer serve it, so the owner's rules decide again.
local function unbind(tid, slot)
  local f = redis.call('HMGET', k_task(tid), 'parent_id')
  if f[1] and f[1] ~= '' then return false end
  redis.call('HSET', k_task(tid), 'account_id', '')
  redis.call('LPUSH', k_line(slot), tid)
  return true
end

-- Children waiting on an account that can no longer run them in their mode: a fast child
-- goes relax when the account has relax time (rule 3), else it fails (rule 5).
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
  if redis.call('SISMEMBER', K_FASTCAP, id) == 0 then
    while true do
      local tid = redis.call('LPOP', fastpin)
      if not tid then break end
      if waiting(tid) and unbind(tid, 'fast') then
      elseif waiting(tid) then
        if enabled and can_relax then
          redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
            'fallback_reason', 'account_set_to_relax', 'fallback_at', istr(now()))
          redis.call('RPUSH', relaxpin, tid)
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
      if waiting(tid) and not unbind(tid, 'relax') then
        finish(tid, 'failed', 'parent_account_unavailable', why)
      end
    end
  end
  if redis.call('LLEN', fastpin) + redis.call('LLEN', relaxpin) == 0 then
    redis.call('SREM', K_PINNED, id)
  end
end

local function touch(id)
  refresh(id)
  check_pins(id)
end

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
local function reconcile()
  local fastline, relaxline = k_line('fast'), k_line('relax')
  if redis.call('SCARD', K_FASTCAP) == 0 and redis.call('LLEN', fastline) > 0 then
    local can_relax = redis.call('SCARD', K_RELAXCAP) > 0
    while true do
      local tid = redis.call('LPOP', fastline)
      if not tid then break end
      if waiting(tid) then
        if can_relax then
          local why = fallback_reason()
          redis.call('HSET', k_task(tid), 'effective_mode', 'relax',
            'fallback_reason', why, 'fallback_at', istr(now()))
          count('fallback:' .. why)
          redis.call('RPUSH', relaxline, tid)
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
      if waiting(tid) then finish(tid, 'failed', code, msg) end
    end
  end
end

-- Give `tid` a slot on `acct`: count it in flight, reserve its fast time (turbo twice).
local function place(tid, acct, slot)
  local t, a = k_task(tid), k_acct(acct)
  local tf = redis.call('HMGET', t, 'effective_mode', 'estimate_ms')
  local reserve = 0
  if slot == 'fast' then
    reserve = tonumber(tf[2])
    if tf[1] == 'turbo' then reserve = reserve * 2 end
    redis.call('HINCRBY', a, 'fast_inflight', 1)
    redis.call('HINCRBY', a, 'fast_reserved_ms', reserve)
  else
    redis.call('HINCRBY', a, 'relax_inflight', 1)
  end
  -- Pacing and the day's count (account health).
  local g = redis.call('HMGET', a, 'min_gap_ms', 'day')
  if tonumber(g[1] or '0') > 0 then
    redis.call('HSET', a, 'paced_until', istr(now() + tonumber(g[1]) * 1000))
  end
  local today = math.floor(now() / US_DAY)
  if g[2] ~= istr(today) then
    redis.call('HSET', a, 'day', istr(today), 'day_jobs', '1')
  else
    redis.call('HINCRBY', a, 'day_jobs', 1)
  end
  count('routed:' .. slot)
  local attempt = redis.call('HINCRBY', t, 'attempt', 1)
  redis.call('HSET', t, 'account_id', acct, 'slot', slot, 'reserved_ms', istr(reserve),
    'placed_at', istr(now()))
  redis.call('ZADD', K_INFLIGHT, istr(now() + DLEASE), tid)  -- the dispatch lease
  refresh(acct)
  for _, v in ipairs({tid, acct, istr(attempt), slot}) do placed[#placed + 1] = v end
end

-- Undo a task's reservation; returns the account it held, or nil.
local function release(tid)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'account_id', 'slot', 'reserved_ms')
  if not f[2] or f[2] == '' then return nil end
  local a = k_acct(f[1])
  if redis.call('EXISTS', a) == 1 then
    redis.call('HINCRBY', a, f[2] .. '_inflight', -1)
    if f[2] == 'fast' then redis.call('HINCRBY', a, 'fast_reserved_ms', 0 - tonumber(f[3])) end
  end
  redis.call('HSET', t, 'slot', '', 'reserved_ms', '0')
  redis.call('ZREM', K_INFLIGHT, tid)
  return f[1]
end

-- Put a task that lost its slot back at the head of the line for its own mode: the
-- owner's line, or its account's pin line for a child (rules 1-5 then apply again).
local function requeue(tid, acct)
  local t = k_task(tid)
  local f = redis.call('HMGET', t, 'effective_mode', 'parent_id')
  redis.call('HSET', t, 'status', 'queued', 'started_at', '')
  if f[2] and f[2] ~= '' then
    redis.call('LPUSH', k_pin(acct, slot_of(f[1])), tid)
    redis.call('SADD', K_PINNED, acct)
  else
    redis.call('HSET', t, 'account_id', '')
    redis.call('LPUSH', k_line(slot_of(f[1])), tid)
  end
end

local function next_waiting(line)
  while true do
    local tid = redis.call('LINDEX', line, 0)
    if not tid then return nil end
    if waiting(tid) then return tid end
    redis.call('LPOP', line)
  end
end

"""
    + PEER_STRATEGIES
    + """
-- Hand free slots to waiting tasks: the pinned children of `accts` first, then the
-- owner's lines, each to the best free account. No line blocks another.
local function pump(accts)
  for _, acct in ipairs(accts) do
    for _, slot in ipairs({'fast', 'relax'}) do
      local pin = k_pin(acct, slot)
      while redis.call('ZSCORE', k_free(slot), acct) do
        local tid = next_waiting(pin)
        if not tid then break end
        redis.call('LPOP', pin)
        place(tid, acct, slot)
      end
    end
    check_pins(acct)
  end
  for _, slot in ipairs({'fast', 'relax'}) do
    local line, free = k_line(slot), k_free(slot)
    while true do
      local tid = next_waiting(line)
      if not tid then break end
      local best
      if STRATEGY == 'least_loaded' then
        best = redis.call('ZRANGE', free, 0, 0)[1]
      else
        best = choose(tid, slot, redis.call('ZRANGE', free, 0, -1))
      end
      if not best then break end
      redis.call('LPOP', line)
      place(tid, best, slot)
    end
  end
end

local function out(results) return {results, placed, switches, finished} end
"""
)
