-- ARGV: event stream key, ttl in ms, then one JSON event per value.
-- Entry ids are 0-1, 0-2, ...: the id's sequence part is the event's number.
local key = ARGV[1]
local n = redis.call('XLEN', key)
for i = 3, #ARGV do
  n = n + 1
  redis.call('XADD', key, '0-' .. n, 'e', ARGV[i])
end
redis.call('PEXPIRE', key, ARGV[2])
return n
