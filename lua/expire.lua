-- expire.lua: reclaim one SKU's holds past their deadline (the sweeper's step). Bounded work.
--
-- KEYS[1]  partition event stream
-- KEYS[2]  SKU hash;  KEYS[3] holds zset;  KEYS[4] customers hash
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  SKU
-- ARGV[3]  reclaim limit
--
-- Returns JSON {ok=1, reclaimed=n, more=0|1 (due holds remain)}
-- Errors: none (an unknown SKU reclaims nothing)
-- Events: expired (one per location line), low_stock / out_of_stock / back_in_stock
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "clock"
--- @include "numbers"
--- @include "sku_state"
--- @include "holds"
--- @include "fence"

local refused = partition_refusal(KEYS[1])
if refused then
  return refused
end

local s = load_sku(ARGV[2], KEYS[2], KEYS[3], KEYS[4])
if s == nil then
  return cjson.encode({ ok = 1, reclaimed = 0, more = 0 })
end
local now = now_ms(ARGV[1])
local n = reclaim(s, KEYS[1], now, now, int_arg(ARGV[3]))
local more = #redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1)
return cjson.encode({ ok = 1, reclaimed = n, more = more })
