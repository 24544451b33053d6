-- fence.lua: the state of a partition's fence, and its changes (see includes/fence.lua).
--
-- KEYS[1]  {p<N>}:verified  the run_id of the server the partition was verified on
-- KEYS[2]  {p<N>}:fenced    why the partition is fenced (JSON), while it is
-- KEYS[3]  {p<N>}:events    the partition's event stream (its last id is the partition's
--                           sequence: assigned by the script that made each change)
-- ARGV[1]  operation: "status", "verify", "fence" or "adopt"
-- verify:  ARGV[2] the run_id the caller compared, ARGV[3] the newest stream id Postgres holds
--          for the partition ("ms-seq"; "0-0" for none)
-- fence:   ARGV[2] the run_id the caller compared, ARGV[3] why (JSON)
--
-- Returns JSON {run, marker, fenced, last, ok}: this server's run_id, the marker ("" when
--   absent), the fence reason ("" when not fenced), the stream's last generated id ("0-0" when
--   there is no stream), and ok = 1 when the operation changed what it was asked to
--   (status: always 1).
--   verify sets the marker to this server's run_id, and lifts a fence, only when the run_id is
--   the one compared (a server that restarted since is checked again) and the stream's last id
--   is not below Postgres' (ok = 0 otherwise).
--   fence records the reason and, when the marker names this server, replaces it so no script
--   writes (ok = 0 when the run_id is not the one compared).
--   adopt marks the partition verified on this server, whatever it holds: restore, once it has
--   rebuilt the partition from Postgres (and raised the stream's last id to Postgres' newest),
--   and an engine configured without a durable side to compare with.
-- Errors: none; a malformed call is a Redis error reply (an engine bug).
-- Events: none.

--- @include "fence"

local marker_key, fenced_key, stream = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local run = server_run_id()

-- Stream ids compare as (ms, seq); both fit a Lua number exactly.
local function below(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local function status(ok)
  return cjson.encode({
    run = run,
    marker = redis.call('GET', marker_key) or '',
    fenced = redis.call('GET', fenced_key) or '',
    last = stream_last_id(stream),
    ok = ok,
  })
end

if op == 'status' then
  return status(1)
end

if op == 'verify' then
  if run ~= ARGV[2] or below(stream_last_id(stream), ARGV[3]) then
    return status(0)
  end
  redis.call('SET', marker_key, ARGV[2])
  redis.call('DEL', fenced_key)
  return status(1)
end

if op == 'fence' then
  if run ~= ARGV[2] then
    return status(0)
  end
  redis.call('SET', fenced_key, ARGV[3])
  if redis.call('GET', marker_key) == ARGV[2] then
    redis.call('SET', marker_key, 'fenced')
  end
  return status(1)
end

if op == 'adopt' then
  redis.call('SET', marker_key, run)
  redis.call('DEL', fenced_key)
  return status(1)
end

return redis.error_reply('fence: unknown operation ' .. tostring(op))
