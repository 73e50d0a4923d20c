-- ARGV: prefix, consumer. Every entry the (dead) consumer holds becomes long idle,
-- so the next claim by anyone takes it at once. Returns how many.
local P = ARGV[1]
local streams = redis.call('ZRANGE', P .. ':streams', 0, -1)
local count = 0
for _, stream in ipairs(streams) do
  local pending = redis.call('XPENDING', stream, 'crank', '-', '+', 100000, ARGV[2])
  for _, p in ipairs(pending) do
    redis.call('XCLAIM', stream, 'crank', ARGV[2], 0, p[1], 'IDLE', 1000000000000, 'JUSTID')
    count = count + 1
  end
  redis.call('DEL', P .. ':reclaim:' .. stream)
end
return count
