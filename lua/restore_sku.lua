-- restore_sku.lua: write one SKU's state, rebuilt from Postgres, into a Redis that lost its data.
--
-- KEYS[1]  partition SKU set
-- KEYS[2]  SKU hash;  KEYS[3] holds zset;  KEYS[4] customers hash
-- KEYS[5..] reservation hashes this call writes, in ARGV[7] order
-- ARGV[1]  SKU
-- ARGV[2]  mode: "replace" | "append"
-- ARGV[3]  replace: the config JSON configure_sku takes (its locations' on_hand is ignored); ""
-- ARGV[4]  replace: quantities JSON [[location, on_hand, reserved, committed,
--          committed_backordered (optional, 0)], ...]; ""
-- ARGV[5]  holds JSON [[member, deadline ms], ...]
-- ARGV[6]  customer counters JSON [[customer, units, holds], ...], added to what is there
-- ARGV[7]  reservations JSON [[pexpireat ms (0: no expiry), field, value, field, value, ...], ...]
--
-- Returns JSON {ok=1, lvl}
-- Errors: invalid_request{detail}
-- Events: none (see below)
--
-- Emits NO events, unlike every other writing script: what it writes is already in the ledger
-- event for event, and appending events would make the sync worker count the same units twice.
-- It runs only from `flashsale restore`, while the sale is closed.
--
-- The first call for a SKU (mode "replace") drops whatever the SKU's keys hold, then writes its
-- config and quantities; the calls after it (mode "append") add holds, customer counters and
-- reservation hashes in chunks, so no single call runs long. Each call validates all its input
-- before its first write. The threshold level (`lvl`) is recomputed from the restored quantities
-- with the rule of check_threshold (includes/sku_state.lua), so the next crossing emits once.

--- @include "fail"
--- @include "numbers"
--- @include "customers"
--- @include "sku_state"

local skus_key, sku_key, holds_key, cust_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sku, mode = ARGV[1], ARGV[2]

local function decode(raw, what)
  local ok, value = pcall(cjson.decode, raw)
  if not ok or type(value) ~= 'table' then
    return nil, fail('invalid_request', { detail = what .. ' must be a JSON list' })
  end
  return value
end

local function count(value)
  local n = int_arg(value)
  return n ~= nil and n >= 0
end

if mode ~= 'replace' and mode ~= 'append' then
  return fail('invalid_request', { detail = 'mode must be replace or append' })
end
local holds, err = decode(ARGV[5], 'holds')
if holds == nil then return err end
local customers
customers, err = decode(ARGV[6], 'customer counters')
if customers == nil then return err end
local reservations
reservations, err = decode(ARGV[7], 'reservations')
if reservations == nil then return err end
if #reservations ~= #KEYS - 4 then
  return fail('invalid_request', { detail = 'one reservation per reservation key' })
end
for _, h in ipairs(holds) do
  if type(h[1]) ~= 'string' or not string.find(h[1], '^[^|]+|[^|]+|') or int_arg(h[2]) == nil then
    return fail('invalid_request', { detail = 'a hold is [member, deadline ms]' })
  end
end
for _, c in ipairs(customers) do
  if type(c[1]) ~= 'string' or c[1] == '' or not count(c[2]) or not count(c[3]) then
    return fail('invalid_request', { detail = 'a customer counter is [customer, units, holds]' })
  end
end
for _, r in ipairs(reservations) do
  if not count(r[1]) or #r < 3 or #r % 2 ~= 1 then
    return fail('invalid_request', { detail = 'a reservation is [pexpireat, field, value, ...]' })
  end
end

local s
if mode == 'replace' then
  local cfg
  cfg, err = decode(ARGV[3], 'config')
  if cfg == nil then return err end
  local quantities
  quantities, err = decode(ARGV[4], 'quantities')
  if quantities == nil then return err end
  if type(cfg.locations) ~= 'table' or #cfg.locations == 0 then
    return fail('invalid_request', { detail = 'a SKU needs at least one location' })
  end
  -- The same shape configure_sku.lua stores, from the same payload.
  local names, q = {}, {}
  for n, loc in ipairs(cfg.locations) do
    if type(loc.location) ~= 'string' or loc.location == '' or q[loc.location] ~= nil
        or not count(loc.safety_stock) or not count(loc.backorder_limit)
        or not count(loc.incoming) then
      return fail('invalid_request', { detail = 'bad location in config' })
    end
    names[n] = loc.location
    q[loc.location] = { oh = 0, rs = 0, cm = 0, cb = 0, ss = loc.safety_stock,
                        bl = loc.backorder_limit, inc = loc.incoming }
  end
  for _, row in ipairs(quantities) do
    local t = q[row[1]]
    if t == nil or not count(row[2]) or not count(row[3]) or not count(row[4])
        or (row[5] ~= nil and not count(row[5])) then
      return fail('invalid_request', { detail = 'quantities name a location not in the config' })
    end
    t.oh, t.rs, t.cm, t.cb = row[2], row[3], row[4], row[5] or 0
  end
  s = { sku = sku, q = q, cfg = {
    locations = names, purchase_limit = cfg.purchase_limit,
    max_active_holds_per_customer = cfg.max_active_holds_per_customer,
    max_extensions = cfg.max_extensions, allocation_strategy = cfg.allocation_strategy,
    low_stock_threshold = cfg.low_stock_threshold, backorder_lead_days = cfg.backorder_lead_days,
    sale_starts_at = cfg.sale_starts_at or cjson.null, sale_ends_at = cfg.sale_ends_at or cjson.null,
    placement_group = cfg.placement_group or cjson.null,
  } }
elseif redis.call('EXISTS', sku_key) == 0 then
  return fail('invalid_request', { detail = 'append before replace' })
end

-- Writes.
local lvl = tonumber(redis.call('HGET', sku_key, 'lvl') or '0')
if mode == 'replace' then
  redis.call('DEL', sku_key, holds_key, cust_key)
  redis.call('HSET', sku_key, 'cfg', cjson.encode(s.cfg))
  for _, loc in ipairs(s.cfg.locations) do
    local t = s.q[loc]
    redis.call('HSET', sku_key, 'oh:' .. loc, fmt(t.oh), 'rs:' .. loc, fmt(t.rs),
      'cm:' .. loc, fmt(t.cm), 'ss:' .. loc, fmt(t.ss), 'bl:' .. loc, fmt(t.bl),
      'in:' .. loc, fmt(t.inc), 'cb:' .. loc, fmt(t.cb))
  end
  local total = total_available(s)
  local threshold = tonumber(s.cfg.low_stock_threshold) or 0
  lvl = 0
  if total <= 0 then
    lvl = 2
  elseif threshold > 0 and total <= threshold then
    lvl = 1
  end
  redis.call('HSET', sku_key, 'lvl', lvl)
  redis.call('SADD', skus_key, sku)
end
for _, h in ipairs(holds) do
  redis.call('ZADD', holds_key, fmt(h[2]), h[1])
end
for _, c in ipairs(customers) do
  customer_add(cust_key, c[1], c[2], c[3])
end
for i, r in ipairs(reservations) do
  local key = KEYS[4 + i]
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(r, 2))
  if r[1] > 0 then
    redis.call('PEXPIREAT', key, fmt(r[1]))
  end
end
return cjson.encode({ ok = 1, lvl = lvl })
