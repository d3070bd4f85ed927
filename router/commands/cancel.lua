-- CANCEL: a queued task ends now and frees any slot it holds; a running one is marked,
-- and the worker polling its driver job cancels that job and settles it cancelled.
-- ARGV[7] task id
-- results {status after the call, status before it, attempt} ('', '' and '' if there is no
-- such task): a running one's poller learns of the cancel at its next poll, which the caller
-- makes due at once (`Polls.later`).
-- KEYS, ARGV[1] to ARGV[6] and the reply: the owner scripts' convention (includes/owner.lua).

--- @include "includes/owner"
--- @include "includes/finish"
--- @include "includes/pins"
--- @include "includes/touch"
--- @include "includes/release"
--- @include "includes/reconcile"
--- @include "includes/pump"

local tid = ARGV[7]
local status = redis.call('HGET', k_task(tid), 'status')
if not status then return out({'', '', ''}) end
local before = status
if status == 'running' then
  redis.call('HSET', k_task(tid), 'cancel_requested', '1')
elseif status == 'queued' then
  local acct = release(tid)
  finish(tid, 'cancelled')
  status = 'cancelled'
  if acct then
    touch(acct)
    reconcile()
    pump({acct})
  end
end
return out({status, before, redis.call('HGET', k_task(tid), 'attempt') or ''})
