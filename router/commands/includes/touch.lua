-- After an account changed: its indexes, then the children pinned to it.
--- @include "includes/refresh"
--- @include "includes/pins"

local function touch(id)
  refresh(id)
  check_pins(id)
end
