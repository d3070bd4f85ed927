-- An account's index memberships and scores (`router.policy.can_take`, `account_score`),
-- and the automatic flip to relax (rule 4).
--- @include "includes/owner"
--- @include "includes/health"

-- Whole-number division rounded down, exact for operands below 2^53 (as Python's //).
local function idiv(x, y)
  local q = math.floor(x / y)
  if q * y > x then q = q - 1 elseif (q + 1) * y <= x then q = q + 1 end
  return q
end
local function member(set, id, yes)
  if yes then redis.call('SADD', set, id) else redis.call('SREM', set, id) end
end

-- `policy.latest_start_us`: the last instant from which every fast slot running until
-- `renews` still uses `avail` ms of fast time (avail capped as the scores cap it).
local function latest_start(renews, avail, fl)
  return renews - idiv(math.min(math.max(avail, 0), SPAN - 1) * 1000, math.max(fl, 1))
end

-- `policy.account_score` for a fast slot under RENEWAL: the hour of the latest start,
-- plans without relax (Basic) first, then load; undated accounts after every dated one,
-- by `today`'s score.
local function renewal_score(a, plan, avail, fl, load, today)
  local renews = tonumber(redis.call('HGET', a, 'renews_at') or '')
  if not renews or renews == 0 then return UNDATED + today end
  local start = math.max(latest_start(renews, avail, fl), 0)
  local rank = 1
  if not RELAX_PLANS[plan] then rank = 0 end
  return (idiv(start, URGENCY) * 2 + rank) * LOAD + load
end

-- The free indexes of `slot`'s needs (`policy.can_take` with a job class): the account
-- is in each one whose class it may run (`caps`), with `score`, while it has a free slot
-- (`score` given) and, for video, room under its video limit (`video_room`).
local function free_for(id, slot, caps, video_room, score)
  for _, need in ipairs(NEEDS[slot]) do
    local yes = score and caps[need] and (CLASS_OF[need] == 'image' or video_room)
    if yes then
      redis.call('ZADD', k_free(need), istr(score), id)
    else
      redis.call('ZREM', k_free(need), id)
    end
  end
end

-- Recompute an account's index memberships and scores; flip it to relax when a fast
-- setting has no fast time left (rule 4). Returns true if it flipped. A resting account
-- is in no free index, and its next change (end of rest, renewal) is in the timers.
local function refresh(id)
  local a = k_acct(id)
  if redis.call('EXISTS', a) == 1 then renew_if_due(id, a) end
  local f = redis.call('HMGET', a, 'plan', 'setting', 'fast_ms', 'fast_reserved_ms',
    'fast_limit', 'relax_limit', 'fast_inflight', 'relax_inflight', 'enabled', 'video_limit',
    'video_inflight')
  if not f[1] then
    redis.call('SREM', K_ENABLED, id)
    for _, slot in ipairs({'fast', 'relax'}) do
      for _, need in ipairs(NEEDS[slot]) do
        redis.call('SREM', k_cap(need), id)
        redis.call('ZREM', k_free(need), id)
      end
    end
    redis.call('ZREM', K_TIMERS, id)
    redis.call('ZREM', K_EXPIRING, id)
    return false
  end
  local plan, setting = f[1], f[2]
  local fast_ms, reserved = tonumber(f[3]), tonumber(f[4])
  local fl, rl, fi, ri = tonumber(f[5]), tonumber(f[6]), tonumber(f[7]), tonumber(f[8])
  local enabled = f[9] == '1'
  -- Video jobs at once besides the slots' limits (an account stored before video: none)
  local vl, vi = tonumber(f[10] or '') or MAX_VIDEO, tonumber(f[11] or '0')
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
  local relaxcap = enabled and RELAX_PLANS[plan] and rl > 0
  -- What the plan allows per job class (the plan rules per job type): `policy.can_run`.
  local caps = {
    ['fast'] = fastcap,
    ['fast:video'] = fastcap and vl > 0,
    ['fast:hd'] = fastcap and vl > 0 and HD_PLANS[plan] or false,
    ['relax'] = relaxcap,
    ['relax:video'] = relaxcap and vl > 0 and RELAX_VIDEO_PLANS[plan] or false,
  }
  member(K_ENABLED, id, enabled)
  for need, yes in pairs(caps) do member(k_cap(need), id, yes) end
  local rest = rest_until(a)
  local timer = rest
  local renews = tonumber(redis.call('HGET', a, 'renews_at') or '0')
  -- For an opted-in owner (under ours: peers bind relax work on arrival), the instant its
  -- fast time starts to surely expire: waiting relax work may run fast from then.
  local expiring, after = 0, nil
  local lines = STRATEGY == 'renewal' or STRATEGY == 'least_loaded'
  if lines and renews > 0 and fastcap and RELAX_PLANS[plan]
      and redis.call('HGET', K_OPTIONS, 'upgrade_expiring') == '1' then
    after = latest_start(renews, fast_ms - reserved, fl) + 1
    if after > now() then expiring = after end
  end
  for _, at in ipairs({renews, hours_end(a), expiring}) do
    if at > 0 and (timer == 0 or at < timer) then timer = at end
  end
  if timer > 0 then
    redis.call('ZADD', K_TIMERS, istr(timer), id)
  else
    redis.call('ZREM', K_TIMERS, id)
  end
  if rest == 0 and fastcap and fi < fl and fast_ms - reserved > 0 then
    local avail = math.min(fast_ms - reserved, SPAN - 1)
    local load = idiv(fi * LOAD, fl)
    local score = load * SPAN + (SPAN - 1 - avail)
    if STRATEGY == 'renewal' then score = renewal_score(a, plan, avail, fl, load, score) end
    free_for(id, 'fast', caps, vi < vl, score)
  else
    free_for(id, 'fast', caps, false)
    after = nil
  end
  -- The upgrade candidates (`pump.upgrade_target`): free for fast work, from the instant
  -- their hours surely expire, so finding none is one lookup however large the pool.
  if after then
    redis.call('ZADD', K_EXPIRING, istr(after), id)
  else
    redis.call('ZREM', K_EXPIRING, id)
  end
  if rest == 0 and relaxcap and ri < rl then
    free_for(id, 'relax', caps, vi < vl, idiv(ri * LOAD, rl))
  else
    free_for(id, 'relax', caps, false)
  end
  return flipped
end
