-- get_reservation.lua: read one reservation's part in a partition, with Redis time, so the engine
-- reports a held reservation past its deadline as expired. Read only.
--
-- KEYS[1]  reservation hash
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  reservation id
--
-- Returns JSON {ok=1, st, exp, cust, ord, ext, lines, skus, now}
-- Errors: reservation_not_found{reservation_id}

--- @include "clock"
--- @include "fail"
--- @include "reservation"

local r = load_reservation(KEYS[1], ARGV[2])
if r == nil then
  return fail('reservation_not_found', { reservation_id = ARGV[2] })
end
return reply(r, { skus = r.skus, now = now_ms(ARGV[1]) })
