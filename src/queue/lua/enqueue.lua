-- Admits one job while fewer than the cap wait, in one atomic step: a depth read followed by a
-- separate push let 256 concurrent clients drive a cap of 200 to 452.
-- The writes are those of apalis-redis 1.0's push (lua/batch_push.lua) for a task due now with
-- no idempotency key or metadata, so apalis workers consume it unchanged.
-- KEYS[1]: task data hash   KEYS[2]: active list   KEYS[3]: scheduled set
-- ARGV[1]: cap   ARGV[2]: task id   ARGV[3]: task data   ARGV[4]: metadata prefix
-- ARGV[5]: max attempts   ARGV[6]: run at (Unix seconds)   ARGV[7]: channel announcing new jobs
-- Returns {1, depth after} when admitted, {0, depth} when full.
local depth = redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if depth >= tonumber(ARGV[1]) then
  return {0, depth}
end
local id = ARGV[2]
if redis.call('HSETNX', KEYS[1], id, ARGV[3]) == 1 then
  redis.call('HSET', ARGV[4] .. ':' .. id, 'attempts', 0, 'max_attempts', tonumber(ARGV[5]),
    'status', 'Pending', 'idempotency_key', '')
  redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), id)
  redis.call('PUBLISH', ARGV[7], id)
end
return {1, depth + 1}
