-- Records that job ARGV[1] finished (its result expires at ARGV[2], Unix seconds) and keeps at
-- most ARGV[3] finished jobs: the oldest go first. A job apalis has not yet recorded as finished
-- is skipped, as apalis' record would bring its metadata back with no expiry.
-- ARGV[4]: metadata prefix. Returns how many older jobs went.
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
local removed = 0
if excess > 0 then
  local ids = redis.call('ZRANGE', KEYS[1], 0, excess + 63)
  for _, id in ipairs(ids) do
    if removed >= excess then
      break
    end
    local status = redis.call('HGET', ARGV[4] .. ':' .. id, 'status')
    if status == false or status == 'Done' or status == 'Killed' then
      forget(ARGV[4], id)
      removed = removed + 1
    end
  end
end
return removed
