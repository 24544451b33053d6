-- cart.lua: the decision record of a cart that spans partitions, kept in its home partition
-- (the lowest-numbered one). Its state is the cart's commit point: the engine answers "held" or
-- "committed" only once the record says so, never releases a part after it says committed, and
-- never commits one after it says released. Transient states sit in the partition's recovery
-- index with the time after which any process (the sweeper) may finish them.
--
-- KEYS[1]  the cart's record (hash)
-- KEYS[2]  the partition's recovery index (sorted set: reservation id -> due ms)
-- ARGV[1]  operation: "begin", "decide", "get" or "due"
-- ARGV[2]  clock offset ms (0 in production)
-- begin:   ARGV[3] reservation id, ARGV[4] request fingerprint, ARGV[5] customer id,
--          ARGV[6] incarnation, ARGV[7] parts JSON [[partition, "sku\nsku"], ...],
--          ARGV[8] cart lines JSON [[sku, quantity, location or ""], ...], ARGV[9] ttl ms,
--          ARGV[10] recovery bound ms, ARGV[11] retention ms
-- decide:  ARGV[3] reservation id, ARGV[4] states it may leave, ","-joined, ARGV[5] new state,
--          ARGV[6] recovery bound ms (0: a final or resting state, leaves the index),
--          ARGV[7] record expiry: ms from now, -1 to persist, 0 to leave as is,
--          ARGV[8] the incarnation the caller's token names, or "" for any,
--          ARGV[9 ..] field, value pairs to set with the change (ord, to, why)
-- get:     ARGV[3] reservation id
-- due:     ARGV[3] the most ids to return (KEYS[1] is then unused)
--
-- Returns (begin, decide, get) JSON {ok=1, rid, st, fp, cust, gen, parts, lines, ttl, ord, to, err,
--   changed (1 when this call created or moved the record), now}; decide moves the record only
--   from one of the states named, and otherwise answers it as it is.
--   (due) the reservation ids whose recovery time has come.
-- Errors: idempotency_conflict{reservation_id} (begin: the id holds a different request),
--   reservation_not_found{reservation_id} (decide, get: no record; get also drops the id from
--   the index), incarnation_mismatch{reservation_id} (decide: the id was reused since the
--   caller's token was issued; nothing changes)
-- States: reserving -> held -> committing -> committed -> fulfilled, and from any of them
--   -> releasing -> released | expired; reserving -> releasing -> aborted (a part refused: why
--   holds its refusal). Reaching aborted deletes the record (its parts are forgotten too), so
--   the id is free again.
--   reserving, committing and releasing are transient; to names where releasing ends.
-- Events: none. The parts' own scripts emit every change of stock; the record changes none.
-- Fencing: begin and decide answer a PARTITION_RECOVERING <partition> recovering|fenced error
--   reply while the partition is not verified on this server (includes/fence.lua); get and due
--   read and answer.

--- @include "clock"
--- @include "fail"
--- @include "fence"

local record, index = KEYS[1], KEYS[2]
local op = ARGV[1]
if op == 'begin' or op == 'decide' then
  local refused = partition_refusal(record)
  if refused then
    return refused
  end
end
local now = now_ms(ARGV[2])

local function load(rid)
  local raw = redis.call('HGETALL', record)
  if #raw == 0 then
    return nil
  end
  local r = { ok = 1, rid = rid, now = now, changed = 0 }
  for i = 1, #raw, 2 do
    r[raw[i]] = raw[i + 1]
  end
  return r
end

local function reindex(rid, bound)
  if bound > 0 then
    redis.call('ZADD', index, now + bound, rid)
  else
    redis.call('ZREM', index, rid)
  end
end

if op == 'begin' then
  local rid = ARGV[3]
  local r = load(rid)
  if r ~= nil then
    if r.fp ~= ARGV[4] then
      return fail('idempotency_conflict', { reservation_id = rid })
    end
    return cjson.encode(r)
  end
  redis.call('HSET', record, 'st', 'reserving', 'fp', ARGV[4], 'cust', ARGV[5], 'gen', ARGV[6],
    'parts', ARGV[7], 'lines', ARGV[8], 'ttl', ARGV[9], 'upd', now)
  -- Bounded even if every process driving it dies: the record never outlives its parts' holds.
  redis.call('PEXPIRE', record, tonumber(ARGV[9]) + tonumber(ARGV[11]))
  reindex(rid, tonumber(ARGV[10]))
  r = load(rid)
  r.changed = 1
  return cjson.encode(r)
end

if op == 'decide' then
  local rid = ARGV[3]
  local r = load(rid)
  if r == nil then
    return fail('reservation_not_found', { reservation_id = rid })
  end
  if ARGV[8] ~= '' and ARGV[8] ~= r.gen then
    return fail('incarnation_mismatch', { reservation_id = rid })
  end
  local allowed = false
  for state in string.gmatch(ARGV[4], '[^,]+') do
    if r.st == state then
      allowed = true
    end
  end
  if not allowed then
    return cjson.encode(r)
  end
  local fields = { 'st', ARGV[5], 'upd', now }
  for i = 9, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
  if ARGV[5] == 'aborted' then
    -- A refused cart leaves nothing: its id may be used again, as after a refusal within one
    -- partition. The answer still carries why it was refused.
    for i = 1, #fields, 2 do
      r[fields[i]] = fields[i + 1]
    end
    redis.call('DEL', record)
    redis.call('ZREM', index, rid)
    r.changed = 1
    return cjson.encode(r)
  end
  redis.call('HSET', record, unpack(fields))
  reindex(rid, tonumber(ARGV[6]))
  local expiry = tonumber(ARGV[7])
  if expiry > 0 then
    redis.call('PEXPIRE', record, expiry)
  elseif expiry < 0 then
    redis.call('PERSIST', record)
  end
  r = load(rid)
  r.changed = 1
  return cjson.encode(r)
end

if op == 'get' then
  local rid = ARGV[3]
  local r = load(rid)
  if r == nil then
    redis.call('ZREM', index, rid)  -- its record expired: nothing left to recover
    return fail('reservation_not_found', { reservation_id = rid })
  end
  return cjson.encode(r)
end

if op == 'due' then
  return redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
end

return redis.error_reply('cart: unknown operation ' .. tostring(op))
