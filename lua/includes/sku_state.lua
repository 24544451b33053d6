-- includes/sku_state.lua: one SKU's quantities, expiry reclaim and threshold events.
-- A SKU's state `s` is {sku, key, holds, cust, cfg, q = {loc = {oh, rs, cm, ss, bl, inc}}, lvl}.

local function load_sku(sku, sku_key, holds_key, cust_key)
  local raw = redis.call('HGETALL', sku_key)
  if #raw == 0 then
    return nil
  end
  local h = {}
  for i = 1, #raw, 2 do
    h[raw[i]] = raw[i + 1]
  end
  local s = { sku = sku, key = sku_key, holds = holds_key, cust = cust_key,
              cfg = cjson.decode(h['cfg']), q = {}, lvl = tonumber(h['lvl'] or '0') }
  for _, loc in ipairs(s.cfg.locations) do
    s.q[loc] = {
      oh = tonumber(h['oh:' .. loc] or '0'), rs = tonumber(h['rs:' .. loc] or '0'),
      cm = tonumber(h['cm:' .. loc] or '0'), ss = tonumber(h['ss:' .. loc] or '0'),
      bl = tonumber(h['bl:' .. loc] or '0'), inc = tonumber(h['in:' .. loc] or '0'),
    }
  end
  return s
end

local function available(q)
  return q.oh - q.rs - q.cm - q.ss
end

local function total_available(s)
  local total = 0
  for _, loc in ipairs(s.cfg.locations) do
    total = total + available(s.q[loc])
  end
  return total
end

-- Applies deltas to one location, in Redis and in `s`, and emits the event describing it.
local function change(s, stream, ts, loc, d_oh, d_rs, d_cm, e)
  local q = s.q[loc]
  if d_oh ~= 0 then q.oh = redis.call('HINCRBY', s.key, 'oh:' .. loc, d_oh) end
  if d_rs ~= 0 then q.rs = redis.call('HINCRBY', s.key, 'rs:' .. loc, d_rs) end
  if d_cm ~= 0 then q.cm = redis.call('HINCRBY', s.key, 'cm:' .. loc, d_cm) end
  e.sku = s.sku
  e.location = loc
  e.d_on_hand, e.d_reserved, e.d_committed = d_oh, d_rs, d_cm
  e.on_hand, e.reserved, e.committed, e.available = q.oh, q.rs, q.cm, available(q)
  emit(stream, ts, e)
end

-- Levels: 0 = in stock, 1 = low (available <= low_stock_threshold), 2 = out (available <= 0).
-- Only the script whose change crosses a boundary sees the level move, so each crossing emits once.
local function check_threshold(s, stream, ts)
  local total = total_available(s)
  local threshold = tonumber(s.cfg.low_stock_threshold) or 0
  local new = 0
  if total <= 0 then
    new = 2
  elseif threshold > 0 and total <= threshold then
    new = 1
  end
  if new == s.lvl then
    return
  end
  local e = { sku = s.sku, available = total }
  if new > s.lvl then
    if s.lvl == 0 and threshold > 0 then
      e.type = 'low_stock'
      emit(stream, ts, e)
    end
    if new == 2 then
      e.type = 'out_of_stock'
      emit(stream, ts, e)
    end
  elseif s.lvl == 2 then
    e.type = 'back_in_stock'
    emit(stream, ts, e)
  end
  s.lvl = new
  redis.call('HSET', s.key, 'lvl', new)
end

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
