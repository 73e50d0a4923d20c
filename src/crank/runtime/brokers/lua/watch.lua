-- ARGV: prefix, channel, ttl_s, then task ids. Records the channel of a listening
-- process next to each task still to end, or about to be submitted (P:w:<id>, a set:
-- several processes may wait), so the script that ends the task publishes its notice
-- there (notify in common.lua). Returns each task's status now ('' when there is none).
local P, channel, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  local status = redis.call('HGET', P .. ':t:' .. ARGV[i], 'status') or ''
  if status ~= 'succeeded' and status ~= 'failed' and status ~= 'dead' and status ~= 'cancelled' then
    local key = P .. ':w:' .. ARGV[i]
    redis.call('SADD', key, channel)
    redis.call('EXPIRE', key, ttl)
  end
  out[#out + 1] = status
end
return out
