-- includes/clock.lua: the time every script decides by.

-- Scripts read Redis TIME so no client clock decides expiry or a sale window. The offset is a
-- test-only knob the engine passes (0 in production) so tests can move time forward.
local function now_ms(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + (tonumber(offset) or 0)
end
