-- extend.lua: give an active hold a new deadline (now + ttl).
--
-- The cap on extensions is the smallest max_extensions among the reservation's SKUs.
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
-- ARGV[7]  ttl ms;  ARGV[8] min ttl ms;  ARGV[9] max ttl ms
--
-- Returns JSON {ok=1, st="held", exp (new deadline), cust, ord, ext, lines}
-- Errors: ttl_out_of_range{ttl_seconds,min,max}, reservation_not_found{reservation_id},
-- incarnation_mismatch{reservation_id},
-- stale_keys, reservation_expired{reservation_id,expired_at} (past its deadline, or its hold was
-- reclaimed), invalid_state{reservation_id,status},
-- extension_limit{reservation_id,limit}
-- Events: extended (one per location line, deltas 0, new expires_at), expired
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "fail"
--- @include "numbers"
--- @include "events"
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
local rid, retention = ARGV[2], int_arg(ARGV[4])
local ttl, ttl_min, ttl_max = int_arg(ARGV[7]), int_arg(ARGV[8]), int_arg(ARGV[9])
if ttl == nil or ttl < ttl_min or ttl > ttl_max then
  return fail('ttl_out_of_range',
    { ttl_seconds = (tonumber(ARGV[7]) or 0) / 1000, min = ttl_min / 1000, max = ttl_max / 1000 })
end

local r, skus, now = open_reservation(stream, res_key, rid, ARGV[3], ARGV[1], retention, ARGV[6])
if r == nil then
  return skus
end
if r.st == 'expired' then
  return fail('reservation_expired', { reservation_id = rid, expired_at = r.exp })
end
if r.st ~= 'held' then
  return fail('invalid_state', { reservation_id = rid, status = r.st, expected = 'held' })
end
local limit = nil
for _, s in pairs(skus) do
  local m = tonumber(s.cfg.max_extensions) or 0
  if limit == nil or m < limit then limit = m end
end
if r.ext >= (limit or 0) then
  return fail('extension_limit', { reservation_id = rid, limit = limit or 0 })
end

local deadline = now + ttl
local lines = cjson.decode(r.lines)
for sku, allocs in pairs(allocations_by_sku(lines)) do
  redis.call('ZADD', skus[sku].holds, 'XX', deadline, hold_member(rid, r.cust, allocs))
end
for _, line in ipairs(lines) do
  local s = skus[line[1]]
  for _, a in ipairs(line[3]) do
    local q = s.q[a[1]]
    emit(stream, now, { type = 'extended', sku = s.sku, location = a[1], on_hand = q.oh,
      reserved = q.rs, committed = q.cm, available = available(q), reservation_id = rid,
      customer_id = r.cust, expires_at = fmt(deadline) })
  end
end
r.exp, r.ext = deadline, r.ext + 1
redis.call('HSET', res_key, 'exp', fmt(deadline), 'ext', fmt(r.ext))
redis.call('PEXPIREAT', res_key, deadline + retention)
return reply(r)
