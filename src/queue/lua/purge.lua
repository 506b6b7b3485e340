-- Drops up to ARGV[2] jobs whose results expired at or before ARGV[1] (Unix milliseconds).
-- ARGV[3]: metadata prefix   ARGV[4]: result key prefix. Returns how many went.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  forget(ARGV[3], ARGV[4], id)
end
return #ids
