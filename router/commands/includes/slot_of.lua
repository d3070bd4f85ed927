-- The slot a mode runs in: relax, or fast (fast and turbo).

local function slot_of(mode) if mode == 'relax' then return 'relax' end return 'fast' end
