-- POLL_ROUND: a poller's round over some of one owner's submitted jobs, before it asks
-- their backends: what it needs to poll each attempt that still runs, when that job's next
-- poll falls due if it runs on, and its lease renewed to a run lease past that (one ZADD
-- for the round: nothing is written per job between its polls). Lean (no owner prelude):
-- it runs once per owner per round.
-- KEYS[1] the owner's inflight zset (task -> lease deadline µs), KEYS[2:] the task hashes
-- ARGV[1] poll interval µs, ARGV[2] longest wait between two polls µs, ARGV[3] to ARGV[5]
-- run timeout µs of fast, turbo and relax jobs, ARGV[6] run lease µs,
-- ARGV[7:] the attempt claimed for each task (as KEYS[2:]), then the task ids (likewise)
-- returns, seven per task: verdict ('poll' | 'stale': settled, reclaimed or re-placed; its
-- entry goes | 'wait': running without a handle, a reaper is adopting it), handle, cancel
-- requested ('1'|''), started µs, effective mode, account id, and next poll due µs.
-- The next poll: at the job's expected end (`poll_from`, RENEW) while it is ahead; past it,
-- after as long as the job has overrun (so the waits double from the interval), at most
-- ARGV[2]; never later than just past the job's run timeout. Times are the Redis clock's.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local INTERVAL = tonumber(ARGV[1])
local LONGEST = math.max(tonumber(ARGV[2]), INTERVAL)
local LIMIT = {fast = tonumber(ARGV[3]), turbo = tonumber(ARGV[4]), relax = tonumber(ARGV[5])}
local LEASE = tonumber(ARGV[6])
local n = #KEYS - 1

local function next_due(from, started, mode)
  local due = from
  if due <= now then due = now + math.min(math.max(now - from, INTERVAL), LONGEST) end
  local limit = LIMIT[mode]
  if limit and started then  -- the poll that finds it overdue comes on time
    local cut = started + limit + 1
    if cut > now and cut < due then due = cut end
  end
  return due
end

local results, leases = {}, {}
for i = 1, n do
  local tid = ARGV[6 + n + i]
  local f = redis.call('HMGET', KEYS[i + 1], 'status', 'attempt', 'handle', 'cancel_requested',
    'started_at', 'effective_mode', 'account_id', 'poll_from')
  local verdict, due = 'stale', ''
  if f[1] == 'running' and f[2] == ARGV[6 + i] then
    if (f[3] or '') == '' then
      verdict = 'wait'
    else
      verdict = 'poll'
      local started = tonumber(f[5] or '')
      local d = next_due(tonumber(f[8] or '') or started or now, started, f[6])
      due = string.format('%d', d)
      leases[#leases + 1] = string.format('%d', d + LEASE)
      leases[#leases + 1] = tid
      if #leases >= 1000 then
        redis.call('ZADD', KEYS[1], 'XX', unpack(leases))
        leases = {}
      end
    end
  end
  local m = #results
  results[m + 1], results[m + 2], results[m + 3] = verdict, f[3] or '', f[4] or ''
  results[m + 4], results[m + 5], results[m + 6] = f[5] or '', f[6] or '', f[7] or ''
  results[m + 7] = due
end
-- XX: a lease is renewed, never made (a task holding no slot gets none)
if #leases > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(leases)) end
return results
