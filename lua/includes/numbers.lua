-- includes/numbers.lua: reading integer arguments and writing integers as Redis strings.

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
