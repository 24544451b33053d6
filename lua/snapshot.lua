-- snapshot.lua: one SKU's configuration and quantities, with due holds reclaimed first so the
-- answer never counts an expired hold (reclaim is bounded; the sweeper takes any rest).
--
-- KEYS[1]  partition event stream
-- KEYS[2]  SKU hash;  KEYS[3] holds zset;  KEYS[4] customers hash
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  SKU
-- ARGV[3]  reclaim limit
--
-- Returns JSON {ok=1, cfg (JSON string), q={loc={oh,rs,cm,ss,bl,inc}}, now}
-- Errors: unknown_sku{sku}
-- Events: expired, low_stock / out_of_stock / back_in_stock (from the reclaim)
-- Fencing: while the partition is not verified on this server (includes/fence.lua) nothing is
--   reclaimed or written: the answer is the quantities as stored.

--- @include "clock"
--- @include "fail"
--- @include "numbers"
--- @include "sku_state"
--- @include "holds"
--- @include "fence"

local s = load_sku(ARGV[2], KEYS[2], KEYS[3], KEYS[4])
if s == nil then
  return fail('unknown_sku', { sku = ARGV[2] })
end
local now = now_ms(ARGV[1])
if partition_verified(KEYS[1]) then
  reclaim(s, KEYS[1], now, now, int_arg(ARGV[3]))
end
return cjson.encode({ ok = 1, cfg = redis.call('HGET', KEYS[2], 'cfg'), q = s.q, now = now })
