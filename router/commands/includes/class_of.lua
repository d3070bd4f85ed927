-- The job class a task needs an account for.
--- @include "includes/owner"

-- A task's job class (`router.costs.job_class`; a task stored before classes: image).
local function class_of(tid)
  local c = redis.call('HGET', k_task(tid), 'job_class')
  if not c or c == '' then return 'image' end
  return c
end
