--- @include "fail"
-- includes/numbers.lua: reading integer arguments, writing integers as Redis strings, and the
-- ceiling of stock totals.

-- Every stock total at a location (on_hand, safety_stock, backorder_limit, incoming, reserved,
-- committed) stays at or below this; engine/validation.py QUANTITY_LIMIT is the same value. Lua
-- numbers are doubles and cjson writes 14 significant digits: below it every total, and every sum
-- of totals a script forms or answers, is an exact integer.
local QUANTITY_LIMIT = 1e12

-- Integer argument or nil: rejects "1.5", "abc", "" and absurd magnitudes.
local function int_arg(value)
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) or n > 1e15 or n < -1e15 then
    return nil
  end
  return n
end

local function fmt(n)
  return string.format('%d', n)
end

-- The refusal of a change that would take a total past QUANTITY_LIMIT, or nil when it fits.
-- `what` names the total in the sentence when it is not `total` itself.
local function over_limit(sku, location, total, value, what)
  if value <= QUANTITY_LIMIT then
    return nil
  end
  return fail('quantity_too_large', { sku = sku, location = location, total = total,
    value = value, limit = QUANTITY_LIMIT, detail = (what or total) .. ' would be ' .. fmt(value)
      .. ', above the limit of ' .. fmt(QUANTITY_LIMIT) .. ' units' })
end
