--- @include "numbers"
--- @include "events"
-- includes/sku_state.lua: one SKU's quantities and threshold events.
-- A SKU's state `s` is {sku, key, holds, cust, cfg, q = {loc = {oh, rs, cm, ss, bl, inc, cb}},
-- lvl}.
-- `cb` (hash field `cb:<loc>`) counts the backordered units among `committed`: the rest of
-- committed, and all of reserved, are owed units on the shelf.

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
      cb = tonumber(h['cb:' .. loc] or '0'),
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

-- Backordered units that can ship from a location now: a backorder ships only from units no
-- in-stock order or hold is owed, i.e. from what is available plus the backordered units
-- committed there (shipping x of them leaves on_hand >= in-stock committed + reserved + safety).
local function backorder_in_stock(q)
  return math.max(0, available(q) + q.cb)
end

local function add_committed_backordered(s, loc, units)
  if units ~= 0 then
    s.q[loc].cb = redis.call('HINCRBY', s.key, 'cb:' .. loc, units)
  end
end

-- Applies deltas to one location, in Redis and in `s`, and emits the event describing it.
local function change(s, stream, ts, loc, d_oh, d_rs, d_cm, e)
  local q = s.q[loc]
  local moved = (d_oh ~= 0 and 1 or 0) + (d_rs ~= 0 and 1 or 0) + (d_cm ~= 0 and 1 or 0)
  if moved > 1 then
    -- Several totals in one write: `q` holds what the hash holds (this script read it and keeps
    -- it current with every write), so setting the sums is the same as incrementing each.
    local fields = {}
    for _, f in ipairs({ { 'oh', d_oh }, { 'rs', d_rs }, { 'cm', d_cm } }) do
      if f[2] ~= 0 then
        q[f[1]] = q[f[1]] + f[2]
        fields[#fields + 1] = f[1] .. ':' .. loc
        fields[#fields + 1] = fmt(q[f[1]])
      end
    end
    redis.call('HSET', s.key, unpack(fields))
  else
    if d_oh ~= 0 then q.oh = redis.call('HINCRBY', s.key, 'oh:' .. loc, d_oh) end
    if d_rs ~= 0 then q.rs = redis.call('HINCRBY', s.key, 'rs:' .. loc, d_rs) end
    if d_cm ~= 0 then q.cm = redis.call('HINCRBY', s.key, 'cm:' .. loc, d_cm) end
  end
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
