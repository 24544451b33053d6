-- reserve.lua: hold every line of a cart in one partition, or none.
--
-- Guarantees: validates everything before its first write except lazy expiry (a complete,
-- independent change); never lets available go below -backorder_limit; enforces the purchase limit
-- (held + committed per customer and SKU) and the active-holds cap; the sale window is checked
-- against Redis TIME. The same reservation id with the same fingerprint returns the stored answer.
--
-- KEYS[1]  partition event stream
-- KEYS[2]  reservation hash
-- KEYS[3 + 3i], KEYS[4 + 3i], KEYS[5 + 3i]  SKU hash, holds zset, customers hash of SKU i (i >= 0)
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  reservation id
-- ARGV[3]  customer id
-- ARGV[4]  ttl ms;  ARGV[5] min ttl ms;  ARGV[6] max ttl ms
-- ARGV[7]  request fingerprint
-- ARGV[8]  retention ms of a finished reservation
-- ARGV[9]  reclaim limit (due holds reclaimed per SKU)
-- ARGV[10] max quantity per line
-- ARGV[11] lines, JSON [[sku_index (1-based, into the SKU keys), quantity, location or ""], ...]
-- ARGV[12..] SKU names, in KEYS order
--
-- Returns JSON {ok=1, st="held", exp, cust, ord, ext, lines, replayed?}
-- Errors (JSON {err=code, ...}): ttl_out_of_range{ttl_seconds,min,max}, invalid_quantity{sku,
-- quantity,max}, invalid_request{detail}, idempotency_conflict{reservation_id}, unknown_sku{sku},
-- unknown_location{sku,location}, sale_not_started{sku,sale_starts_at}, sale_ended{sku,
-- sale_ends_at}, purchase_limit_exceeded{sku,limit,remaining}, too_many_holds{sku,limit},
-- insufficient_stock{sku,location,requested,available}
-- Events: reserved (one per location line; data = {fp, line}), expired (lazy expiry), low_stock / out_of_stock /
-- back_in_stock (crossings)

local stream, res_key = KEYS[1], KEYS[2]
local rid, customer = ARGV[2], ARGV[3]
local ttl, ttl_min, ttl_max = int_arg(ARGV[4]), int_arg(ARGV[5]), int_arg(ARGV[6])
local fingerprint, retention = ARGV[7], int_arg(ARGV[8])
local reclaim_limit, max_qty = int_arg(ARGV[9]), int_arg(ARGV[10])

if ttl == nil or ttl < ttl_min or ttl > ttl_max then
  return fail('ttl_out_of_range',
    { ttl_seconds = (tonumber(ARGV[4]) or 0) / 1000, min = ttl_min / 1000, max = ttl_max / 1000 })
end
if rid == '' or customer == '' or string.find(rid .. customer, '[|;=]') then
  return fail('invalid_request', { detail = 'reservation and customer ids must be plain ids' })
end
local ok, lines = pcall(cjson.decode, ARGV[11])
if not ok or type(lines) ~= 'table' or #lines == 0 then
  return fail('invalid_request', { detail = 'lines must be a non-empty list' })
end
local nskus = #ARGV - 11
for _, line in ipairs(lines) do
  local idx, qty = int_arg(line[1]), int_arg(line[2])
  if idx == nil or idx < 1 or idx > nskus then
    return fail('invalid_request', { detail = 'line names no declared SKU' })
  end
  if qty == nil or qty <= 0 or qty > max_qty then
    return fail('invalid_quantity', { sku = ARGV[11 + idx], quantity = line[2], max = max_qty })
  end
end

local now = now_ms(ARGV[1])

local existing = load_reservation(res_key, rid)
if existing ~= nil then
  if existing.fp ~= fingerprint then
    return fail('idempotency_conflict', { reservation_id = rid })
  end
  return reply(existing, { replayed = 1 })
end

local skus = {}
for i = 1, nskus do
  local k = 3 + (i - 1) * 3
  skus[i] = load_sku(ARGV[11 + i], KEYS[k], KEYS[k + 1], KEYS[k + 2])
  if skus[i] == nil then
    return fail('unknown_sku', { sku = ARGV[11 + i] })
  end
  local cfg = skus[i].cfg
  if cfg.sale_starts_at and cfg.sale_starts_at ~= cjson.null and now < cfg.sale_starts_at then
    return fail('sale_not_started', { sku = skus[i].sku, sale_starts_at = cfg.sale_starts_at })
  end
  if cfg.sale_ends_at and cfg.sale_ends_at ~= cjson.null and now >= cfg.sale_ends_at then
    return fail('sale_ended', { sku = skus[i].sku, sale_ends_at = cfg.sale_ends_at })
  end
end
for _, line in ipairs(lines) do
  local loc = line[3]
  if loc ~= nil and loc ~= '' and loc ~= cjson.null and skus[line[1]].q[loc] == nil then
    return fail('unknown_location', { sku = skus[line[1]].sku, location = loc })
  end
end

for i = 1, nskus do
  reclaim(skus[i], stream, now, now, reclaim_limit)
end

-- Limits, against holds + commits after expiry was reclaimed.
local wanted = {}
for _, line in ipairs(lines) do
  wanted[line[1]] = (wanted[line[1]] or 0) + line[2]
end
for i = 1, nskus do
  local s = skus[i]
  local units, holds = customer_get(s.cust, customer)
  local limit = tonumber(s.cfg.purchase_limit) or 0
  if limit > 0 and units + (wanted[i] or 0) > limit then
    return fail('purchase_limit_exceeded',
      { sku = s.sku, limit = limit, remaining = math.max(0, limit - units) })
  end
  local max_holds = tonumber(s.cfg.max_active_holds_per_customer) or 0
  if max_holds > 0 and holds + 1 > max_holds then
    return fail('too_many_holds', { sku = s.sku, limit = max_holds })
  end
end

-- Allocation on a scratch copy: nothing is written until every line has found its units.
local taken = {}
local function free(i, loc)
  local key = i .. '|' .. loc
  return available(skus[i].q[loc]) - (taken[key] or 0)
end
local function take(i, loc, qty)
  local key = i .. '|' .. loc
  taken[key] = (taken[key] or 0) + qty
end

local function location_order(s, i)
  local order = {}
  for n, loc in ipairs(s.cfg.locations) do
    order[n] = loc
  end
  if s.cfg.allocation_strategy == 'prioritize-high-stock' then
    local rank = {}
    for n, loc in ipairs(order) do
      rank[loc] = n
    end
    table.sort(order, function(a, b)
      local fa, fb = free(i, a), free(i, b)
      if fa ~= fb then return fa > fb end
      return rank[a] < rank[b]
    end)
  end
  return order
end

local result_lines = {}
for n, line in ipairs(lines) do
  local i, qty, fixed = line[1], line[2], line[3]
  local s = skus[i]
  local order
  if fixed ~= nil and fixed ~= '' and fixed ~= cjson.null then
    order = { fixed }
  else
    order = location_order(s, i)
  end
  local got, backordered = {}, {}
  local need = qty
  -- First from units on the shelf, then from backorder room, in the same location order.
  for _, loc in ipairs(order) do
    if need == 0 then break end
    local q = math.min(need, math.max(0, free(i, loc)))
    if q > 0 then
      take(i, loc, q)
      got[loc] = (got[loc] or 0) + q
      need = need - q
    end
  end
  for _, loc in ipairs(order) do
    if need == 0 then break end
    local q = math.min(need, math.max(0, free(i, loc) + s.q[loc].bl))
    if q > 0 then
      take(i, loc, q)
      got[loc] = (got[loc] or 0) + q
      backordered[loc] = (backordered[loc] or 0) + q
      need = need - q
    end
  end
  if need > 0 then
    local room = 0
    for _, loc in ipairs(order) do
      room = room + math.max(0, free(i, loc) + s.q[loc].bl)
    end
    local loc_out = ''
    if #order == 1 and fixed ~= nil and fixed ~= '' and fixed ~= cjson.null then loc_out = fixed end
    return fail('insufficient_stock',
      { sku = s.sku, location = loc_out, requested = qty, available = room + (qty - need) })
  end
  local allocs = {}
  for _, loc in ipairs(order) do
    if got[loc] then
      allocs[#allocs + 1] = { loc, got[loc], backordered[loc] or 0, 0 }
    end
  end
  result_lines[n] = { s.sku, qty, allocs }
end

-- Writes.
local deadline = now + ttl
local sku_names = {}
for i = 1, nskus do
  sku_names[i] = skus[i].sku
end
local lines_json = cjson.encode(result_lines)
for n, line in ipairs(result_lines) do
  local s = skus[lines[n][1]]
  for _, a in ipairs(line[3]) do
    -- The fingerprint and line number let a restore from Postgres rebuild idempotent replays.
    change(s, stream, now, a[1], 0, a[2], 0, { type = 'reserved', reservation_id = rid,
      customer_id = customer, backordered = a[3], expires_at = fmt(deadline),
      data = cjson.encode({ fp = fingerprint, line = n }) })
  end
end
local by_sku = allocations_by_sku(result_lines)
for i = 1, nskus do
  local s = skus[i]
  redis.call('ZADD', s.holds, deadline, hold_member(rid, customer, by_sku[s.sku]))
  customer_add(s.cust, customer, wanted[i] or 0, 1)
  check_threshold(s, stream, now)
end
redis.call('HSET', res_key, 'fp', fingerprint, 'cust', customer, 'st', 'held', 'exp', fmt(deadline),
  'ext', '0', 'ca', fmt(now), 'skus', table.concat(sku_names, '\n'), 'lines', lines_json)
redis.call('PEXPIREAT', res_key, deadline + retention)
return cjson.encode({ ok = 1, st = 'held', exp = deadline, cust = customer, ord = '', ext = 0,
                      lines = lines_json })
