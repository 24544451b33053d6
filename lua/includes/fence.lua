-- includes/fence.lua: no write on a partition whose Redis may have lost time.
--
-- `{p<N>}:verified` holds the run_id of the Redis server process confirmed to be at least as new
-- as Postgres for this partition. A restart (from any file), a restore of an older file and a
-- promoted replica are all a new server process with a new run_id, so after any of them the
-- marker names another server and every script that writes refuses, until the sync worker has
-- compared the partition with Postgres and written the new run_id (or fenced the partition).
-- The check runs inside the script, before its first write: nothing can be written between a
-- restart and the check.
-- A partition with no marker whose stream never had an entry has no history to be behind of (a
-- new Redis): the first script claims it. The sync worker still compares it with Postgres.
-- The marker shares the hash tag of the key given (KEYS[1] of the caller), so it lives on the
-- node that runs the script, also on a cluster.

-- The stream's last generated id ("0-0": no stream, or not one entry ever); it survives trims.
local function stream_last_id(stream)
  if redis.call('EXISTS', stream) == 0 then
    return '0-0'
  end
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return info[i + 1]
    end
  end
  return '0-0'
end

-- This server process's identity, in an `INFO server` reply (`info`) or asked for.
local function run_id_of(info)
  return string.match(info, 'run_id:(%x+)')
end

local function server_run_id()
  return run_id_of(redis.call('INFO', 'server'))
end

local function partition_tag(key)
  return string.match(key, '^{p%d+}')
end

-- True when this server may write to the partition of `key`.
local function partition_verified(key)
  local tag = partition_tag(key)
  local marker = redis.call('GET', tag .. ':verified')
  local info = redis.call('INFO', 'server')
  -- Matched as plain text with its line end: a pattern match over INFO costs 4 µs more.
  if marker and string.find(info, 'run_id:' .. marker .. '\r', 1, true) then
    return true
  end
  if not marker and stream_last_id(tag .. ':events') == '0-0' then
    redis.call('SET', tag .. ':verified', run_id_of(info))
    return true
  end
  return false
end

-- nil when the partition of `key` may be written; else the error reply the script returns:
-- "PARTITION_RECOVERING <partition> recovering|fenced".
local function partition_refusal(key)
  if partition_verified(key) then
    return nil
  end
  local tag = partition_tag(key)
  local state = redis.call('EXISTS', tag .. ':fenced') == 1 and 'fenced' or 'recovering'
  return redis.error_reply('PARTITION_RECOVERING ' .. string.sub(tag, 3, -2) .. ' ' .. state)
end
