-- configure_sku.lua: create or replace a SKU's configuration and its locations.
--
-- Locations keep their quantities; a location given an on_hand gets it (an on_hand_set event).
-- A location that still has units on hand, held or committed cannot be removed.
--
-- KEYS[1]  partition event stream
-- KEYS[2]  partition SKU set
-- KEYS[3]  SKU hash;  KEYS[4] holds zset;  KEYS[5] customers hash
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  SKU
-- ARGV[3]  config JSON {locations=[{location, on_hand|null, safety_stock, backorder_limit,
--          incoming}], purchase_limit, max_active_holds_per_customer, max_extensions,
--          allocation_strategy, low_stock_threshold, backorder_lead_days,
--          sale_starts_at (ms|null), sale_ends_at (ms|null), placement_group (string|null)}
--          placement_group must be the one the SKU has (the engine's directory fixed it before)
-- ARGV[4]  reclaim limit
-- ARGV[5]  reason for on_hand changes;  ARGV[6] reference
--
-- Returns JSON {ok=1, created=0|1}
-- Errors: invalid_request{detail}, invariant_violation{sku,location,detail},
-- placement_group_fixed{sku,placement_group?,requested?} (another group than the SKU's),
-- quantity_too_large{sku,location,total,value,limit,detail} (a quantity past QUANTITY_LIMIT)
-- Events: sku_configured (data = the config), on_hand_set (per location whose on_hand changed),
-- expired, low_stock / out_of_stock / back_in_stock
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "clock"
--- @include "fail"
--- @include "numbers"
--- @include "events"
--- @include "sku_state"
--- @include "holds"
--- @include "fence"

local refused = partition_refusal(KEYS[1])
if refused then
  return refused
end

local stream, skus_key, sku_key, holds_key, cust_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sku, reclaim_limit, reason, reference = ARGV[2], int_arg(ARGV[4]), ARGV[5], ARGV[6]

local ok, cfg = pcall(cjson.decode, ARGV[3])
if not ok or type(cfg) ~= 'table' or type(cfg.locations) ~= 'table' or #cfg.locations == 0 then
  return fail('invalid_request', { detail = 'a SKU needs at least one location' })
end
local function nonneg(value)
  local n = int_arg(value)
  return n ~= nil and n >= 0
end
for _, field in ipairs({ 'purchase_limit', 'max_active_holds_per_customer', 'max_extensions',
                         'low_stock_threshold', 'backorder_lead_days' }) do
  if not nonneg(cfg[field]) then
    return fail('invalid_request', { detail = field .. ' must be an integer >= 0' })
  end
end
if cfg.allocation_strategy ~= 'prioritize-sorting-order'
    and cfg.allocation_strategy ~= 'prioritize-high-stock' then
  return fail('invalid_request', { detail = 'unknown allocation_strategy' })
end
local starts, ends = cfg.sale_starts_at, cfg.sale_ends_at
if starts ~= cjson.null and starts ~= nil and ends ~= cjson.null and ends ~= nil and starts >= ends then
  return fail('invalid_request', { detail = 'sale_starts_at must be before sale_ends_at' })
end
local group = cfg.placement_group
if group == nil then group = cjson.null end
if group ~= cjson.null and (type(group) ~= 'string' or group == '') then
  return fail('invalid_request', { detail = 'placement_group must be a plain id or null' })
end
local names, seen = {}, {}
for n, loc in ipairs(cfg.locations) do
  local name = loc.location
  if type(name) ~= 'string' or name == '' or string.find(name, '[|;=\n]') or seen[name] then
    return fail('invalid_request', { detail = 'location names must be unique plain ids' })
  end
  for _, field in ipairs({ 'safety_stock', 'backorder_limit', 'incoming' }) do
    if not nonneg(loc[field]) then
      return fail('invalid_request', { detail = name .. ': ' .. field .. ' must be an integer >= 0' })
    end
  end
  if loc.on_hand ~= nil and loc.on_hand ~= cjson.null and not nonneg(loc.on_hand) then
    return fail('invalid_request', { detail = name .. ': on_hand must be an integer >= 0' })
  end
  for _, field in ipairs({ 'on_hand', 'safety_stock', 'backorder_limit', 'incoming' }) do
    local value = loc[field]
    local refusal = value ~= cjson.null and value ~= nil and over_limit(sku, name, field, value)
    if refusal then return refusal end
  end
  seen[name] = true
  names[n] = name
end

local now = now_ms(ARGV[1])
local s = load_sku(sku, sku_key, holds_key, cust_key)
local created = 0
if s == nil then
  created = 1
  s = { sku = sku, key = sku_key, holds = holds_key, cust = cust_key, q = {}, lvl = 0 }
else
  -- The SKU's keys are in its group's partition: another group would be another partition.
  local had = s.cfg.placement_group
  if had == nil then had = cjson.null end
  if had ~= group then
    return fail('placement_group_fixed', { sku = sku,
      placement_group = had ~= cjson.null and had or nil,
      requested = group ~= cjson.null and group or nil })
  end
  reclaim(s, stream, now, now, reclaim_limit)
  for loc, q in pairs(s.q) do
    if not seen[loc] and (q.oh ~= 0 or q.rs ~= 0 or q.cm ~= 0) then
      return fail('invariant_violation', { sku = sku, location = loc,
        detail = 'a location with units on hand, held or committed cannot be removed' })
    end
  end
  for loc, _ in pairs(s.q) do
    if not seen[loc] then
      redis.call('HDEL', sku_key, 'oh:' .. loc, 'rs:' .. loc, 'cm:' .. loc, 'ss:' .. loc,
        'bl:' .. loc, 'in:' .. loc, 'cb:' .. loc)
      s.q[loc] = nil
    end
  end
end

local stored = {
  locations = names, purchase_limit = cfg.purchase_limit,
  max_active_holds_per_customer = cfg.max_active_holds_per_customer,
  max_extensions = cfg.max_extensions, allocation_strategy = cfg.allocation_strategy,
  low_stock_threshold = cfg.low_stock_threshold, backorder_lead_days = cfg.backorder_lead_days,
  sale_starts_at = starts or cjson.null, sale_ends_at = ends or cjson.null,
  placement_group = group,
}
s.cfg = stored
redis.call('HSET', sku_key, 'cfg', cjson.encode(stored))
for _, loc in ipairs(cfg.locations) do
  local name = loc.location
  if s.q[name] == nil then
    s.q[name] = { oh = 0, rs = 0, cm = 0 }
  end
  local q = s.q[name]
  q.ss, q.bl, q.inc = loc.safety_stock, loc.backorder_limit, loc.incoming
  redis.call('HSET', sku_key, 'ss:' .. name, fmt(q.ss), 'bl:' .. name, fmt(q.bl),
    'in:' .. name, fmt(q.inc))
  if loc.on_hand ~= nil and loc.on_hand ~= cjson.null and loc.on_hand ~= q.oh then
    change(s, stream, now, name, loc.on_hand - q.oh, 0, 0,
      { type = 'on_hand_set', reason = reason, reference = reference })
  elseif created == 1 then
    redis.call('HSET', sku_key, 'oh:' .. name, '0')
  end
end
redis.call('SADD', skus_key, sku)
emit(stream, now, { type = 'sku_configured', sku = sku, available = total_available(s),
  data = ARGV[3], reason = reason, reference = reference })
check_threshold(s, stream, now)
return cjson.encode({ ok = 1, created = created })
