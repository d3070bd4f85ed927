-- Checking a script's number arguments before it writes anything.
--- @include "includes/owner"

local MAX_INT = 2 ^ 53  -- the whole numbers a Lua number (a double) holds exactly
-- An argument as a whole number in [lo, hi], else nil: scripts check before they write
-- (Redis does not roll a script back, so a write that fails half way leaves half a change).
local function int_arg(v, lo, hi)
  local n = tonumber(v)
  if not n or n ~= n or n < lo or n > hi or n ~= math.floor(n) then return nil end
  return n
end
