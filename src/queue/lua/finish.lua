-- Records that job ARGV[1] finished, in one step, before apalis hears of it:
-- - its result ARGV[6] (compact JSON) under its own key, expiring by itself after ARGV[3] ms;
-- - its payload stays until the job is forgotten: apalis has not yet recorded the job as done,
--   and a worker killed (or a Redis restart) before it does puts the job back on the active
--   list as an orphan; without its payload, every fetch that drew it failed ("Invalid job data
--   format") and stranded the jobs fetched beside it (the compose smoke test's failover lost 33);
-- - its expiry entry (ARGV[2] + ARGV[3], Unix ms) for the purge of what apalis keeps;
-- - the announcement on ARGV[7] that wakes the callers waiting for it (after the write, so a
--   woken caller always finds the result);
-- and keeps at most ARGV[4] finished jobs: the oldest go first. A job apalis has not yet
-- recorded as finished is skipped, as apalis' record would bring its metadata back.
-- ARGV[5]: metadata prefix   ARGV[8]: result key prefix. Returns how many older jobs went.
local id = ARGV[1]
local ttl = tonumber(ARGV[3])
redis.call('SET', ARGV[8] .. id, ARGV[6], 'PX', ttl)
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + ttl, id)
redis.call('PUBLISH', ARGV[7], id)
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
local removed = 0
if excess > 0 then
  local ids = redis.call('ZRANGE', KEYS[1], 0, excess + 63)
  for _, old in ipairs(ids) do
    if removed >= excess then
      break
    end
    local status = redis.call('HGET', ARGV[5] .. ':' .. old, 'status')
    if old ~= id and (status == false or status == 'Done' or status == 'Killed') then
      forget(ARGV[5], ARGV[8], old)
      removed = removed + 1
    end
  end
end
return removed
