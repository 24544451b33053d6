--- @include "clock"
--- @include "fail"
--- @include "sku_state"
--- @include "holds"
--- @include "reservation"
-- includes/open_reservation.lua: the opening of every script that changes an existing
-- reservation.

-- Loads the SKUs named by KEYS[first..] (three keys each) after checking they are the ones the
-- reservation holds: the engine names them from a cache, and an id can be reused after retention.
local function load_reservation_skus(r, skus_arg, first)
  if r.skus ~= skus_arg then
    return nil
  end
  local list = {}
  local i = 0
  for sku in string.gmatch(r.skus, '[^\n]+') do
    local k = first + i * 3
    list[sku] = load_sku(sku, KEYS[k], KEYS[k + 1], KEYS[k + 2])
    i = i + 1
  end
  return list
end

-- A held reservation past its deadline is expired: reclaim whatever lazy expiry has not reclaimed
-- yet and record the final state, once.
local function finalize_expired(r, res_key, skus, stream, ts, retention_ms)
  local by_sku = allocations_by_sku(cjson.decode(r.lines))
  for sku, allocs in pairs(by_sku) do
    local s = skus[sku]
    local member = hold_member(r.rid, r.cust, allocs)
    if s ~= nil and redis.call('ZREM', s.holds, member) == 1 then
      drop_hold(s, stream, ts, member, 'expired')
      check_threshold(s, stream, ts)
    end
  end
  r.st = 'expired'
  redis.call('HSET', res_key, 'st', 'expired')
  redis.call('PEXPIRE', res_key, retention_ms)
end

-- Whether every hold member of a held reservation is still in its SKU's zset and not yet due.
-- The hash alone cannot say: Redis TIME can go backwards (a failover to a slower clock), so a
-- hold lazy expiry or the sweeper reclaimed may belong to a deadline that looks not yet passed.
local function holds_intact(r, skus, now)
  for sku, allocs in pairs(allocations_by_sku(cjson.decode(r.lines))) do
    local s = skus[sku]
    local score = s and redis.call('ZSCORE', s.holds, hold_member(r.rid, r.cust, allocs))
    if not score or tonumber(score) <= now then
      return false
    end
  end
  return true
end

-- The opening every script on an existing reservation shares: load it, check the SKU keys the
-- engine declared, and record expiry if its deadline has passed or its holds were reclaimed.
-- `incarnation` ("" for any) is the one the caller's token names: once an id is reused, a token
-- issued for its earlier use opens nothing.
-- Returns r, skus, now; or nil and the error reply to return.
local function open_reservation(stream, res_key, rid, skus_arg, clock_offset, retention_ms,
                                incarnation)
  local r = load_reservation(res_key, rid)
  if r == nil then
    return nil, fail('reservation_not_found', { reservation_id = rid })
  end
  if incarnation ~= '' and incarnation ~= (r.gen or '') then
    return nil, fail('incarnation_mismatch', { reservation_id = rid })
  end
  local skus = load_reservation_skus(r, skus_arg, 3)
  if skus == nil then
    return nil, fail('stale_keys')
  end
  local now = now_ms(clock_offset)
  if r.st == 'held' and (r.exp <= now or not holds_intact(r, skus, now)) then
    finalize_expired(r, res_key, skus, stream, now, retention_ms)
  end
  return r, skus, now
end
