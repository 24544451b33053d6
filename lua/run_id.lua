-- run_id.lua: the run_id of the Redis server process that runs it. The sync worker sends it in
-- the same pipeline (the same connection) as each stream read, so it knows which server the
-- entries it writes to Postgres came from (see fence.lua).
--
-- KEYS[1]  any key of the partition read (routes the call to its node on a cluster)
-- ARGV     none
-- Returns the run_id (40 hex digits).
-- Errors: none. Events: none.

-- The same match as includes/fence.lua's run_id_of, without the include: the worker sends this
-- script's text with every stream read, so it stays a line long.
return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
