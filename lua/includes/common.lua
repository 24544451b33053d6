-- includes/common.lua: helpers shared by every script (prepended by engine/scripts.py).
-- Every helper is local; nothing here touches a key that is not passed in.

-- Scripts read Redis TIME so no client clock decides expiry or a sale window. The offset is a
-- test-only knob the engine passes (0 in production) so tests can move time forward.
local function now_ms(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + (tonumber(offset) or 0)
end

local function fail(code, details)
  details = details or {}
  details['err'] = code
  return cjson.encode(details)
end

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

-- Per customer and SKU: `u:` units held + committed (purchase limit), `h:` active holds.
-- Fields that reach zero are deleted so a long sale does not accumulate them.
local function customer_add(cust_key, customer, units, holds)
  if units ~= 0 then
    if redis.call('HINCRBY', cust_key, 'u:' .. customer, units) <= 0 then
      redis.call('HDEL', cust_key, 'u:' .. customer)
    end
  end
  if holds ~= 0 then
    if redis.call('HINCRBY', cust_key, 'h:' .. customer, holds) <= 0 then
      redis.call('HDEL', cust_key, 'h:' .. customer)
    end
  end
end

local function customer_get(cust_key, customer)
  local v = redis.call('HMGET', cust_key, 'u:' .. customer, 'h:' .. customer)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end

-- One event per changed line. Every event carries the same fields in the same order, which
-- lets the stream's listpacks store the field names once per node.
local function emit(stream, ts, e)
  redis.call('XADD', stream, '*',
    'type', e.type, 'sku', e.sku, 'location', e.location or '',
    'd_on_hand', fmt(e.d_on_hand or 0), 'd_reserved', fmt(e.d_reserved or 0),
    'd_committed', fmt(e.d_committed or 0),
    'on_hand', fmt(e.on_hand or 0), 'reserved', fmt(e.reserved or 0),
    'committed', fmt(e.committed or 0), 'available', fmt(e.available or 0),
    'reservation_id', e.reservation_id or '', 'order_id', e.order_id or '',
    'customer_id', e.customer_id or '', 'reason', e.reason or '', 'reference', e.reference or '',
    'backordered', fmt(e.backordered or 0), 'expires_at', e.expires_at or '',
    'data', e.data or '', 'ts', fmt(ts))
end
