-- INTAKE_TAKEOVER: move a dead router's claimed messages to this router's processing list
-- (then INTAKE_CLAIM with N = 0 numbers and returns them).
-- KEYS[1] the dead router's processing list, KEYS[2] this router's
-- returns how many were moved
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
