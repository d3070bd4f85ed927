-- INTAKE_TAKEOVER: move a dead router's messages to this router, each list to its like:
-- the processing list (numbered entries) to this router's processing list, the landing list
-- (messages not yet numbered) to this router's landing list, oldest first. INTAKE_CLAIM with
-- N = 0 then numbers the landed ones and returns them all.
-- KEYS[1] the dead router's landing list, KEYS[2] its processing list,
-- KEYS[3] this router's landing list, KEYS[4] this router's processing list
-- returns how many were moved
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[4], 'RIGHT', 'LEFT') do n = n + 1 end
while redis.call('LMOVE', KEYS[1], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
return n
