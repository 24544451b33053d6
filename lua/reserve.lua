-- reserve.lua: a batch of reserve requests on one partition, applied one after another in the
-- order given; each request holds every line of its cart in this partition, or none, and gets its
-- own answer. The engine coalesces concurrent reserve calls into one batch (natural batching); a
-- lone call is a batch of one.
--
-- KEYS[1]  partition event stream
-- KEYS[2 + 3i], KEYS[3 + 3i], KEYS[4 + 3i]  SKU hash, holds zset, customers hash of batch SKU i
--          (i >= 0, n SKUs in all)
-- KEYS[2 + 3n + r]  reservation hash of request r (r >= 0)
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  min ttl ms;  ARGV[3] max ttl ms
-- ARGV[4]  retention ms of a finished reservation
-- ARGV[5]  reclaim limit (due holds reclaimed per SKU)
-- ARGV[6]  max quantity per line
-- ARGV[7]  n, the number of SKUs of the batch;  ARGV[8 .. 7 + n]  their names, in KEYS order
-- ARGV[8 + n + 6r .. 13 + n + 6r]  request r: reservation id, customer id, ttl ms, request
--          fingerprint, lines JSON [[sku_index (1-based, into the batch SKUs), quantity,
--          location or ""], ...], incarnation (stored as `gen` if the request creates the
--          reservation; a replay answers the stored one)
--
-- Returns an array with one JSON answer per request, in request order:
--   {ok=1, st="held", exp, cust, ord, ext, lines, gen, replayed?}
--   or an error {err=code, ...}: ttl_out_of_range{ttl_seconds,min,max}, invalid_quantity{sku,
--   quantity,max}, invalid_request{detail}, idempotency_conflict{reservation_id}, unknown_sku{sku},
--   unknown_location{sku,location}, sale_not_started{sku,sale_starts_at}, sale_ended{sku,
--   sale_ends_at}, purchase_limit_exceeded{sku,limit,remaining}, too_many_holds{sku,limit},
--   insufficient_stock{sku,location,requested,available,so} (so = 1 when the SKU has no unit
--   and no backorder room left anywhere: the engine's sold-out fast path reads it)
--   quantity_too_large{sku,location,total,value,limit,detail} (reserved + committed at a
--   location would pass QUANTITY_LIMIT)
-- A malformed batch (argument count) is a Redis error reply: an engine bug, not a request's fault.
-- Events: reserved (one per location line; data = {fp, line, gen}), expired (lazy expiry),
-- low_stock / out_of_stock / back_in_stock (crossings)
--
-- Guarantees, per request: validates everything before its first write except lazy expiry (a
-- complete, independent change); never lets available go below -backorder_limit; enforces the
-- purchase limit (held + committed per customer and SKU) and the active-holds cap; the sale window
-- is checked against Redis TIME. The same reservation id with the same fingerprint returns the
-- stored answer, with the state the reservation has now (a hold past its deadline: expired), also
-- within one batch. A SKU's state is read once per batch and kept current by every write the
-- batch makes, so a later request sees what an earlier one took.
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "clock"
--- @include "fail"
--- @include "numbers"
--- @include "customers"
--- @include "sku_state"
--- @include "events"
--- @include "holds"
--- @include "reservation"
--- @include "fence"

local refused = partition_refusal(KEYS[1])
if refused then
  return refused
end

local stream = KEYS[1]
local ttl_min, ttl_max = int_arg(ARGV[2]), int_arg(ARGV[3])
local retention, reclaim_limit, max_qty = int_arg(ARGV[4]), int_arg(ARGV[5]), int_arg(ARGV[6])
local nbatch = int_arg(ARGV[7])
local first_request = 8 + nbatch
local nrequests = (#ARGV - first_request + 1) / 6
if nrequests < 1 or nrequests ~= math.floor(nrequests) or #KEYS ~= 1 + 3 * nbatch + nrequests then
  return redis.error_reply('reserve: malformed batch')
end

local now = now_ms(ARGV[1])
-- Batch SKU index -> state (false = unknown SKU); loaded and reclaimed once per batch.
local loaded = {}
local function sku_state(idx)
  if loaded[idx] == nil then
    local k = 2 + (idx - 1) * 3
    local s = load_sku(ARGV[7 + idx], KEYS[k], KEYS[k + 1], KEYS[k + 2])
    if s then
      reclaim(s, stream, now, now, reclaim_limit)
      s.rs_changed = {}
    end
    loaded[idx] = s or false
  end
  return loaded[idx]
end

local function sold_out(s)
  for _, loc in ipairs(s.cfg.locations) do
    if available(s.q[loc]) + s.q[loc].bl > 0 then
      return false
    end
  end
  return true
end

local function reserve_one(res_key, rid, customer, ttl_arg, fingerprint, lines_arg, gen)
  local ttl = int_arg(ttl_arg)
  if ttl == nil or ttl < ttl_min or ttl > ttl_max then
    return fail('ttl_out_of_range',
      { ttl_seconds = (tonumber(ttl_arg) or 0) / 1000, min = ttl_min / 1000, max = ttl_max / 1000 })
  end
  if rid == '' or customer == '' or string.find(rid .. customer, '[|;=]') then
    return fail('invalid_request', { detail = 'reservation and customer ids must be plain ids' })
  end
  local ok, lines = pcall(cjson.decode, lines_arg)
  if not ok or type(lines) ~= 'table' or #lines == 0 then
    return fail('invalid_request', { detail = 'lines must be a non-empty list' })
  end
  -- The request's own SKUs, as batch indices, in order of first appearance.
  local mine, seen = {}, {}
  for _, line in ipairs(lines) do
    local idx, qty = int_arg(line[1]), int_arg(line[2])
    if idx == nil or idx < 1 or idx > nbatch then
      return fail('invalid_request', { detail = 'line names no declared SKU' })
    end
    if qty == nil or qty <= 0 or qty > max_qty then
      return fail('invalid_quantity', { sku = ARGV[7 + idx], quantity = line[2], max = max_qty })
    end
    if not seen[idx] then
      seen[idx] = true
      mine[#mine + 1] = idx
    end
  end

  local existing = load_reservation(res_key, rid)
  if existing ~= nil then
    if existing.fp ~= fingerprint then
      return fail('idempotency_conflict', { reservation_id = rid })
    end
    -- The first answer as the reservation is now: a hold past its deadline has expired, whether
    -- or not expiry has reclaimed it yet.
    if existing.st == 'held' and existing.exp <= now then
      existing.st = 'expired'
    end
    return reply(existing, { replayed = 1 })
  end

  local skus = {}
  for _, i in ipairs(mine) do
    skus[i] = sku_state(i)
    if not skus[i] then
      return fail('unknown_sku', { sku = ARGV[7 + i] })
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

  -- Limits, against holds + commits after expiry was reclaimed.
  local wanted = {}
  for _, line in ipairs(lines) do
    wanted[line[1]] = (wanted[line[1]] or 0) + line[2]
  end
  local counts = {}
  for _, i in ipairs(mine) do
    local s = skus[i]
    local units, holds = customer_get(s.cust, customer)
    counts[i] = { units, holds }
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
      return fail('insufficient_stock', { sku = s.sku, location = loc_out, requested = qty,
        available = room + (qty - need), so = sold_out(s) and 1 or 0 })
    end
    local allocs = {}
    for _, loc in ipairs(order) do
      if got[loc] then
        allocs[#allocs + 1] = { loc, got[loc], backordered[loc] or 0, 0 }
      end
    end
    result_lines[n] = { s.sku, qty, allocs }
  end

  -- Totals stay exact: reserved + committed at a location (so each) never pass the limit.
  for n, line in ipairs(result_lines) do
    local s = skus[lines[n][1]]
    for _, a in ipairs(line[3]) do
      local q = s.q[a[1]]
      local units = q.rs + q.cm + taken[lines[n][1] .. '|' .. a[1]]
      local refusal = over_limit(s.sku, a[1], 'reserved', units, 'reserved + committed')
      if refusal then return refusal end
    end
  end

  -- Writes.
  local deadline = now + ttl
  local sku_names = {}
  for n, i in ipairs(mine) do
    sku_names[n] = skus[i].sku
  end
  local lines_json = cjson.encode(result_lines)
  local expires_at = fmt(deadline)
  for n, line in ipairs(result_lines) do
    local s = skus[lines[n][1]]
    for _, a in ipairs(line[3]) do
      -- `reserved` is written once per batch (flush_reserved); the event carries the total as
      -- it is after this request, as if each request had written it.
      local q = s.q[a[1]]
      q.rs = q.rs + a[2]
      s.rs_changed[a[1]] = true
      -- The fingerprint, line number and incarnation let a restore from Postgres rebuild
      -- idempotent replays and keep the reservation's tokens valid.
      emit(stream, now, { type = 'reserved', sku = s.sku, location = a[1], d_reserved = a[2],
        on_hand = q.oh, reserved = q.rs, committed = q.cm, available = available(q),
        reservation_id = rid, customer_id = customer, backordered = a[3],
        expires_at = expires_at, data = cjson.encode({ fp = fingerprint, line = n, gen = gen }) })
    end
  end
  local by_sku = allocations_by_sku(result_lines)
  for _, i in ipairs(mine) do
    local s = skus[i]
    redis.call('ZADD', s.holds, deadline, hold_member(rid, customer, by_sku[s.sku]))
    -- Both counters in one write: their values were read for the limit checks above.
    local units, holds = counts[i][1], counts[i][2]
    redis.call('HSET', s.cust, 'u:' .. customer, fmt(units + (wanted[i] or 0)),
      'h:' .. customer, fmt(holds + 1))
    check_threshold(s, stream, now)
  end
  -- No `ext` field until the first extension: absent reads as 0, and every field costs a write.
  redis.call('HSET', res_key, 'fp', fingerprint, 'cust', customer, 'st', 'held', 'exp', expires_at,
    'ca', fmt(now), 'skus', table.concat(sku_names, '\n'), 'lines', lines_json, 'gen', gen)
  redis.call('PEXPIREAT', res_key, deadline + retention)
  return cjson.encode({ ok = 1, st = 'held', exp = deadline, cust = customer, ord = '', ext = 0,
                        lines = lines_json, gen = gen })
end

-- One HSET per SKU for the batch's reservations instead of an HINCRBY per line: nothing reads
-- the hash between the requests of a batch but this script, which keeps `s.q` current.
local function flush_reserved()
  for _, s in pairs(loaded) do
    if s then
      local fields = {}
      for loc in pairs(s.rs_changed) do
        fields[#fields + 1] = 'rs:' .. loc
        fields[#fields + 1] = fmt(s.q[loc].rs)
      end
      if #fields > 0 then
        redis.call('HSET', s.key, unpack(fields))
      end
    end
  end
end

local answers = {}
for r = 0, nrequests - 1 do
  local a = first_request + 6 * r
  answers[r + 1] = reserve_one(KEYS[2 + 3 * nbatch + r], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
end
flush_reserved()
return answers
