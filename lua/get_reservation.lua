-- get_reservation.lua: read one reservation's part in a partition, with Redis time, so the engine
-- reports a held reservation past its deadline as expired; and the decision record, when this is
-- the home partition of a cart spanning partitions. Read only.
--
-- KEYS[1]  reservation hash
-- KEYS[2]  the cart's decision record (exists only in a spanning cart's home partition)
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  reservation id
--
-- Returns JSON {ok=1, st, exp, cust, ord, ext, lines, skus, now, cart?} (cart: the record's
-- fields), or {ok=1, missing=1, cart, now} when this partition has the record but no part
-- Errors: reservation_not_found{reservation_id} (neither a part nor a record here)

--- @include "clock"
--- @include "fail"
--- @include "reservation"

local function record()
  local raw = redis.call('HGETALL', KEYS[2])
  if #raw == 0 then
    return nil
  end
  local cart = {}
  for i = 1, #raw, 2 do
    cart[raw[i]] = raw[i + 1]
  end
  return cart
end

local r = load_reservation(KEYS[1], ARGV[2])
local cart = record()
if r == nil then
  if cart == nil then
    return fail('reservation_not_found', { reservation_id = ARGV[2] })
  end
  return cjson.encode({ ok = 1, missing = 1, cart = cart, now = now_ms(ARGV[1]) })
end
return reply(r, { skus = r.skus, now = now_ms(ARGV[1]), cart = cart })
