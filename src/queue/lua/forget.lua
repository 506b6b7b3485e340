-- Shared by the scripts that drop finished jobs (prepended to them).
-- KEYS[1]: expiry set   KEYS[2]: task data hash   KEYS[3]: done set   KEYS[4]: dead set
-- Deletes everything a job keeps: its result, metadata, payload, set entries and expiry entry.
local function forget(meta_prefix, result_prefix, id)
  redis.call('DEL', result_prefix .. id)
  redis.call('DEL', meta_prefix .. ':' .. id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('SREM', KEYS[3], id)
  redis.call('SREM', KEYS[4], id)
  redis.call('ZREM', KEYS[1], id)
end
