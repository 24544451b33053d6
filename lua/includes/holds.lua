--- @include "numbers"
--- @include "customers"
--- @include "sku_state"
-- includes/holds.lua: the holds zset of a SKU: its members, releasing them, lazy expiry.

-- A hold member is "<reservation_id>|<customer_id>|<loc>=<qty>;<loc>=<qty>": reclaiming it needs
-- nothing but the SKU's own keys.
local function hold_member(reservation_id, customer, allocs)
  local parts = {}
  for i, a in ipairs(allocs) do
    parts[i] = a[1] .. '=' .. fmt(a[2])
  end
  return reservation_id .. '|' .. customer .. '|' .. table.concat(parts, ';')
end

local function parse_member(member)
  local rid, customer, rest = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
  local allocs = {}
  for loc, qty in string.gmatch(rest, '([^=;]+)=(%d+)') do
    allocs[#allocs + 1] = { loc, tonumber(qty) }
  end
  return rid, customer, allocs
end

-- Releases one hold's units on this SKU; `kind` is the event type (expired / released).
local function drop_hold(s, stream, ts, member, kind)
  local rid, customer, allocs = parse_member(member)
  local units = 0
  for _, a in ipairs(allocs) do
    if s.q[a[1]] ~= nil then
      change(s, stream, ts, a[1], 0, -a[2], 0,
        { type = kind, reservation_id = rid, customer_id = customer })
    end
    units = units + a[2]
  end
  customer_add(s.cust, customer, -units, -1)
end

-- Lazy expiry: every script that touches a SKU first reclaims its due holds, at most `limit`.
local function reclaim(s, stream, ts, now, limit)
  local due = redis.call('ZRANGEBYSCORE', s.holds, '-inf', now, 'LIMIT', 0, limit)
  if #due == 0 then
    return 0
  end
  for _, member in ipairs(due) do
    drop_hold(s, stream, ts, member, 'expired')
  end
  redis.call('ZREM', s.holds, unpack(due))
  check_threshold(s, stream, ts)
  return #due
end

-- Aggregated allocations of one SKU in a reservation: {{loc, qty}, ...} in first-seen order.
local function allocations_by_sku(lines)
  local by_sku, order = {}, {}
  for _, line in ipairs(lines) do
    local sku = line[1]
    if by_sku[sku] == nil then
      by_sku[sku] = {}
      order[#order + 1] = sku
    end
    local agg = by_sku[sku]
    for _, a in ipairs(line[3]) do
      local found = false
      for _, x in ipairs(agg) do
        if x[1] == a[1] then
          x[2] = x[2] + a[2]
          found = true
        end
      end
      if not found then
        agg[#agg + 1] = { a[1], a[2] }
      end
    end
  end
  return by_sku, order
end

-- Units of an allocation {loc, qty, backordered, shipped} still backordered once `shipped` of it
-- have shipped: its in-stock units ship first, so its last `backordered` units are the late ones.
local function open_backordered(a, shipped)
  return math.max(0, math.min(a[3] or 0, a[2] - shipped))
end
