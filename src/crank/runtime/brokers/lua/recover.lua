-- ARGV: prefix, consumer. Every entry the (dead) consumer holds is given back
-- (give_back), so the next claim by anyone takes it first. Returns how many.
local P = ARGV[1]
local streams = redis.call('ZRANGE', P .. ':streams', 0, -1)
local count = 0
for _, stream in ipairs(streams) do
  local pending = redis.call('XPENDING', stream, 'crank', '-', '+', 100000, ARGV[2])
  for _, p in ipairs(pending) do
    give_back(P, stream, ARGV[2], p[1])
    count = count + 1
  end
end
if count > 0 then wake_a_worker(P) end
return count
