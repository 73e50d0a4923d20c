-- ARGV: event stream key, ttl in ms, waiters key, task id, then one JSON event per value.
-- Entry ids are 0-1, 0-2, ...: the id's sequence part is the event's number. The
-- processes watching the task (watch.lua) are told the number of the last one.
local key = ARGV[1]
local n = redis.call('XLEN', key)
for i = 5, #ARGV do
  n = n + 1
  redis.call('XADD', key, '0-' .. n, 'e', ARGV[i])
end
redis.call('PEXPIRE', key, ARGV[2])
for _, channel in ipairs(redis.call('SMEMBERS', ARGV[3])) do
  redis.call('PUBLISH', channel, ARGV[4] .. ' event ' .. n)
end
return n
