-- commit.lua: held -> committed (an order was placed for the cart).
--
-- Commit racing expiry resolves once: the deadline is compared with Redis TIME in the same script
-- that moves the units, so a reservation ends committed or expired, never both.
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
-- ARGV[7]  order id
--
-- Returns JSON {ok=1, st="committed", exp, cust, ord, ext, lines, replayed?}
-- Errors: reservation_not_found{reservation_id}, incarnation_mismatch{reservation_id}, stale_keys
-- (engine re-reads the SKU list),
-- reservation_expired{reservation_id,expired_at} (past its deadline, or its hold was reclaimed),
-- invalid_state{reservation_id,status},
-- idempotency_conflict{reservation_id,order_id}
-- Events: committed (one per location line), expired (when it finds the hold expired)
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
local rid, retention, reclaim_limit, order_id = ARGV[2], int_arg(ARGV[4]), int_arg(ARGV[5]), ARGV[7]
if order_id == nil or order_id == '' then
  return fail('invalid_request', { detail = 'order_id is required' })
end

local r, skus, now = open_reservation(stream, res_key, rid, ARGV[3], ARGV[1], retention, ARGV[6])
if r == nil then
  return skus
end

if r.st == 'committed' or r.st == 'fulfilled' then
  if r.ord == order_id then
    return reply(r, { replayed = 1 })
  end
  return fail('idempotency_conflict', { reservation_id = rid, order_id = r.ord })
end
if r.st == 'expired' then
  return fail('reservation_expired', { reservation_id = rid, expired_at = r.exp })
end
if r.st ~= 'held' then
  return fail('invalid_state', { reservation_id = rid, status = r.st, expected = 'held' })
end

for _, s in pairs(skus) do
  reclaim(s, stream, now, now, reclaim_limit)
end
local lines = cjson.decode(r.lines)
-- Units move only off a hold this call removes (open_reservation checked they are all there):
-- a hold already reclaimed gave its units back once.
local removed = {}
for sku, allocs in pairs(allocations_by_sku(lines)) do
  local s = skus[sku]
  removed[sku] = redis.call('ZREM', s.holds, hold_member(rid, r.cust, allocs)) == 1
  if removed[sku] then
    customer_add(s.cust, r.cust, 0, -1)
  end
end
for _, line in ipairs(lines) do
  local s = skus[line[1]]
  for _, a in ipairs(removed[line[1]] and line[3] or {}) do
    change(s, stream, now, a[1], 0, -a[2], a[2], { type = 'committed', reservation_id = rid,
      order_id = order_id, customer_id = r.cust, backordered = a[3] })
    add_committed_backordered(s, a[1], a[3])
  end
end
r.st, r.ord = 'committed', order_id
redis.call('HSET', res_key, 'st', 'committed', 'ord', order_id)
redis.call('PERSIST', res_key)
return reply(r)
