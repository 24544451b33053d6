-- change_on_hand.lua: restock, adjust or set on_hand at one location, with a reason.
--
-- One script for the three on_hand operations (restock, adjust, set): they differ only in how
-- the new value is given (a delta, or an absolute value optionally checked against
-- change_from_quantity).
-- An idempotency key makes a retried adjustment count once.
--
-- KEYS[1]  partition event stream
-- KEYS[2]  SKU hash;  KEYS[3] holds zset;  KEYS[4] customers hash
-- KEYS[5]  idempotency record of this operation (used only when ARGV[10] is not "")
-- ARGV[1]  clock offset ms (0 in production)
-- ARGV[2]  SKU;  ARGV[3] location
-- ARGV[4]  mode: "delta" or "set"
-- ARGV[5]  quantity: the delta (mode delta) or the new on_hand (mode set)
-- ARGV[6]  change_from_quantity (mode set), or ""
-- ARGV[7]  reason;  ARGV[8] reference URI or ""
-- ARGV[9]  event type: restocked | adjusted | on_hand_set
-- ARGV[10] request fingerprint for the idempotency record, or ""
-- ARGV[11] retention ms of the idempotency record
-- ARGV[12] reclaim limit
--
-- Returns JSON {ok=1, oh, rs, cm, ss, bl, inc, replayed?}
-- Errors: invalid_quantity{sku,location,quantity}, unknown_sku{sku}, unknown_location{sku,location},
-- quantity_stale{sku,location,expected,current}, invariant_violation{sku,location,detail,on_hand},
-- quantity_too_large{sku,location,total,value,limit,detail} (on_hand past QUANTITY_LIMIT),
-- idempotency_conflict{key}
-- Events: restocked | adjusted | on_hand_set (data = {key, fp, answer} with an idempotency key),
-- expired, low_stock / out_of_stock / back_in_stock
-- Fencing: before any write, a PARTITION_RECOVERING <partition> recovering|fenced error reply
--   while the partition is not verified on this server (includes/fence.lua).

--- @include "clock"
--- @include "fail"
--- @include "numbers"
--- @include "sku_state"
--- @include "holds"
--- @include "fence"

local refused = partition_refusal(KEYS[1])
if refused then
  return refused
end

local stream, sku_key, holds_key, cust_key, op_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sku, loc, mode = ARGV[2], ARGV[3], ARGV[4]
local quantity, change_from = int_arg(ARGV[5]), ARGV[6]
local fingerprint, retention, reclaim_limit = ARGV[10], int_arg(ARGV[11]), int_arg(ARGV[12])

if quantity == nil or (mode == 'set' and quantity < 0) or (mode == 'delta' and quantity == 0) then
  return fail('invalid_quantity', { sku = sku, location = loc, quantity = ARGV[5] })
end
if fingerprint ~= '' then
  local seen = redis.call('GET', op_key)
  if seen then
    local stored = cjson.decode(seen)
    if stored.fp ~= fingerprint then
      return fail('idempotency_conflict', { key = op_key })
    end
    stored.answer.replayed = 1
    return cjson.encode(stored.answer)
  end
end
local s = load_sku(sku, sku_key, holds_key, cust_key)
if s == nil then
  return fail('unknown_sku', { sku = sku })
end
local q = s.q[loc]
if q == nil then
  return fail('unknown_location', { sku = sku, location = loc })
end
local delta = quantity
if mode == 'set' then
  if change_from ~= '' and int_arg(change_from) ~= q.oh then
    return fail('quantity_stale', { sku = sku, location = loc, expected = int_arg(change_from),
                                    current = q.oh })
  end
  delta = quantity - q.oh
end
if q.oh + delta < 0 then
  return fail('invariant_violation', { sku = sku, location = loc, on_hand = q.oh,
    detail = 'on_hand cannot go below zero' })
end
if delta > 0 then
  local refusal = over_limit(sku, loc, 'on_hand', q.oh + delta)
  if refusal then return refusal end
end

local now = now_ms(ARGV[1])
reclaim(s, stream, now, now, reclaim_limit)
local answer = { ok = 1, oh = q.oh + delta, rs = q.rs, cm = q.cm, ss = q.ss, bl = q.bl,
                 inc = q.inc }
if delta ~= 0 then
  local data = ''
  if fingerprint ~= '' then
    -- The idempotency record travels in the event, so a restore from Postgres rebuilds it. Its
    -- key is KEYS[5] without the partition prefix (engine/keys.py: {p<N>}:op:<key>).
    data = cjson.encode({ key = string.match(op_key, '^[^:]*:op:(.*)$'), fp = fingerprint,
                          answer = answer })
  end
  change(s, stream, now, loc, delta, 0, 0, { type = ARGV[9], reason = ARGV[7],
    reference = ARGV[8], data = data })
  check_threshold(s, stream, now)
end
if fingerprint ~= '' then
  redis.call('SET', op_key, cjson.encode({ fp = fingerprint, answer = answer }), 'PX', retention)
end
return cjson.encode(answer)
