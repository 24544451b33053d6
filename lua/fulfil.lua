-- fulfil.lua: committed units ship: `committed` and `on_hand` go down together.
--
-- Whole (no lines) or per line, partial allowed, never more than committed. A fulfilment id makes
-- a partial fulfilment safe to retry. Backordered units ship only once they are in stock: from
-- units on hand that no in-stock order or hold is owed (an allocation's in-stock units ship
-- first), so a backorder never takes the unit an earlier in-stock order was sold.
--
-- KEYS[1]  partition event stream
-- KEYS[2]  reservation hash
-- KEYS[3 + 3i], KEYS[4 + 3i], KEYS[5 + 3i]  SKU hash, holds zset, customers hash of its SKU i
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  reservation id
-- ARGV[3]  the reservation's SKUs, "\n"-joined, in KEYS order
-- ARGV[4]  retention ms of a finished reservation
-- ARGV[5]  reclaim limit
-- ARGV[6]  the incarnation the caller was given (its token's), or "" for any: a reservation
--          whose id was reused since is refused, not acted on
-- ARGV[7]  lines to ship, JSON [[sku, quantity, location or ""], ...], or "" for all that is open
-- ARGV[8]  fulfilment id, or ""
-- ARGV[9]  "1" to check only: answer as if shipped (or refuse) without writing the shipment
--
-- Returns JSON {ok=1, st ("committed" while units remain, then "fulfilled"), exp, cust, ord, ext,
-- lines (each allocation's 4th number is what has shipped), replayed?}
-- Errors: reservation_not_found, incarnation_mismatch, stale_keys, invalid_state{reservation_id,status,expected},
-- invalid_request{detail}, invalid_quantity{sku,quantity}, over_fulfil{sku,location,requested,
-- remaining}, invariant_violation{sku,location,detail,on_hand}, idempotency_conflict{fulfilment_id},
-- backorder_not_in_stock{reservation_id,sku,location,requested,in_stock,detail}
-- Events: fulfilled (one per location line; data = {req = ARGV[7]} with a fulfilment id), expired
-- (when it finds a hold past its deadline)
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "fail"
--- @include "numbers"
--- @include "customers"
--- @include "sku_state"
--- @include "holds"
--- @include "reservation"
--- @include "open_reservation"
--- @include "fence"

local refused = partition_refusal(KEYS[1])
if refused then
  return refused
end

local stream, res_key = KEYS[1], KEYS[2]
local rid, retention, reclaim_limit = ARGV[2], int_arg(ARGV[4]), int_arg(ARGV[5])
local wanted_arg, fid = ARGV[7], ARGV[8]

local r, skus, now = open_reservation(stream, res_key, rid, ARGV[3], ARGV[1], retention, ARGV[6])
if r == nil then
  return skus
end
if fid ~= '' and r['fid:' .. fid] ~= nil then
  if r['fid:' .. fid] ~= wanted_arg then
    return fail('idempotency_conflict', { reservation_id = rid, fulfilment_id = fid })
  end
  return reply(r, { replayed = 1 })
end
if r.st ~= 'committed' then
  return fail('invalid_state', { reservation_id = rid, status = r.st, expected = 'committed' })
end
-- Expired holds are owed nothing: reclaim them before deciding what backorders may ship.
for _, s in pairs(skus) do
  reclaim(s, stream, now, now, reclaim_limit)
end
local lines = cjson.decode(r.lines)

-- Plan the shipment on the decoded lines; nothing is written until it all fits.
local ships = {}  -- {line, allocation, qty}
if wanted_arg == '' then
  for _, line in ipairs(lines) do
    for _, a in ipairs(line[3]) do
      if a[2] - a[4] > 0 then ships[#ships + 1] = { line, a, a[2] - a[4] } end
    end
  end
else
  local ok, wanted = pcall(cjson.decode, wanted_arg)
  if not ok or type(wanted) ~= 'table' or #wanted == 0 then
    return fail('invalid_request', { detail = 'lines must be a non-empty list' })
  end
  local planned = {}
  for _, w in ipairs(wanted) do
    local sku, qty, loc = w[1], int_arg(w[2]), w[3]
    if qty == nil or qty <= 0 then
      return fail('invalid_quantity', { sku = sku, quantity = w[2] })
    end
    local need, remaining = qty, 0
    for _, line in ipairs(lines) do
      if line[1] == sku then
        for _, a in ipairs(line[3]) do
          if loc == nil or loc == '' or loc == cjson.null or loc == a[1] then
            local open = a[2] - a[4] - (planned[a] or 0)
            remaining = remaining + open
            local q = math.min(need, open)
            if q > 0 then
              planned[a] = (planned[a] or 0) + q
              ships[#ships + 1] = { line, a, q }
              need = need - q
            end
          end
        end
      end
    end
    if need > 0 then
      return fail('over_fulfil', { sku = sku, location = loc or '', requested = qty,
                                   remaining = remaining })
    end
  end
end
if #ships == 0 then
  return fail('over_fulfil', { sku = '', location = '', requested = 0, remaining = 0 })
end
local per_loc, late_per_loc, shipped = {}, {}, {}
for _, sh in ipairs(ships) do
  local a = sh[2]
  local key = sh[1][1] .. '|' .. a[1]
  per_loc[key] = (per_loc[key] or 0) + sh[3]
  local before = shipped[a] or a[4]
  shipped[a] = before + sh[3]
  sh[4] = open_backordered(a, before) - open_backordered(a, shipped[a])  -- late units shipped
  late_per_loc[key] = (late_per_loc[key] or 0) + sh[4]
  local q = skus[sh[1][1]].q[a[1]]
  local in_stock = backorder_in_stock(q)
  if late_per_loc[key] > in_stock then
    return fail('backorder_not_in_stock', { reservation_id = rid, sku = sh[1][1],
      location = a[1], requested = late_per_loc[key], in_stock = in_stock,
      detail = 'only ' .. fmt(in_stock) .. ' backordered units of ' .. sh[1][1] .. ' at ' .. a[1]
        .. ' are in stock (the rest on hand is owed to in-stock orders and holds), '
        .. fmt(late_per_loc[key]) .. ' requested' })
  end
  if q.oh < per_loc[key] then
    return fail('invariant_violation', { sku = sh[1][1], location = a[1], on_hand = q.oh,
      detail = 'on_hand would go below zero: backordered units must arrive before they ship' })
  end
end

if ARGV[9] == '1' then
  return reply(r)  -- the engine checks every partition of a cart before any of them ships
end

-- The request a fulfilment id stands for travels in its events, so a restore rebuilds its record.
local data = fid ~= '' and cjson.encode({ req = wanted_arg }) or ''
for _, sh in ipairs(ships) do
  local s, a, q = skus[sh[1][1]], sh[2], sh[3]
  change(s, stream, now, a[1], -q, 0, -q, { type = 'fulfilled', reservation_id = rid,
    order_id = r.ord, customer_id = r.cust, reference = fid, data = data })
  add_committed_backordered(s, a[1], -sh[4])
  customer_add(s.cust, r.cust, -q, 0)
  a[4] = a[4] + q
end
local open = 0
for _, line in ipairs(lines) do
  for _, a in ipairs(line[3]) do open = open + a[2] - a[4] end
end
r.lines = cjson.encode(lines)
redis.call('HSET', res_key, 'lines', r.lines)
if open == 0 then
  r.st = 'fulfilled'
  redis.call('HSET', res_key, 'st', 'fulfilled')
  redis.call('PEXPIRE', res_key, retention)
end
if fid ~= '' then
  redis.call('HSET', res_key, 'fid:' .. fid, wanted_arg)
end
for _, s in pairs(skus) do
  check_threshold(s, stream, now)
end
return reply(r)
