-- release.lua: give a hold or a committed order's unshipped units back. Idempotent.
--
-- A held reservation's units leave `reserved`; a committed one's unfulfilled units leave
-- `committed`. Releasing a finished reservation (released, expired, fulfilled) changes nothing.
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
-- ARGV[7]  "1" to forget the part once nothing is held or owed by it (a cart spanning partitions
--          that was refused leaves nothing behind, so its id may be used again, as a refused cart
--          within one partition does); "" to keep it readable for the retention time
--
-- Returns JSON {ok=1, st, exp, cust, ord, ext, lines} (st is the state after the call)
-- Errors: reservation_not_found{reservation_id} (the engine treats it as done), stale_keys,
-- incarnation_mismatch{reservation_id}
-- Events: released (one per location line), expired (when it finds the hold past its deadline
-- or reclaimed: st is then "expired" and the reclaimed part moves nothing again)
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

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

local r, skus, now = open_reservation(stream, res_key, rid, ARGV[3], ARGV[1], retention, ARGV[6])
if r == nil then
  return skus
end
local forget = ARGV[7] == '1'
if r.st ~= 'held' and r.st ~= 'committed' then
  if forget and r.st ~= 'fulfilled' then
    redis.call('DEL', res_key)
  end
  return reply(r)
end

for _, s in pairs(skus) do
  reclaim(s, stream, now, now, reclaim_limit)
end
local lines = cjson.decode(r.lines)
if r.st == 'held' then
  for sku, allocs in pairs(allocations_by_sku(lines)) do
    local s = skus[sku]
    local member = hold_member(rid, r.cust, allocs)
    -- Only a hold this call removes gives units back: a reclaimed one already did.
    if redis.call('ZREM', s.holds, member) == 1 then
      drop_hold(s, stream, now, member, 'released')
    end
  end
else
  for _, line in ipairs(lines) do
    local s = skus[line[1]]
    for _, a in ipairs(line[3]) do
      local open = a[2] - (a[4] or 0)
      if open > 0 then
        change(s, stream, now, a[1], 0, 0, -open, { type = 'released', reservation_id = rid,
          order_id = r.ord, customer_id = r.cust })
        add_committed_backordered(s, a[1], -open_backordered(a, a[4] or 0))
        customer_add(s.cust, r.cust, -open, 0)
      end
    end
  end
end
for _, s in pairs(skus) do
  check_threshold(s, stream, now)
end
r.st = 'released'
if forget then
  redis.call('DEL', res_key)
else
  redis.call('HSET', res_key, 'st', 'released')
  redis.call('PEXPIRE', res_key, retention)
end
return reply(r)
