-- ARGV: prefix. Returns {now_ms, dead, n,
--   (capability, band, waiting, in_flight, oldest_ms)*n, (capability, priority)* of retrying}
local P = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local streams = redis.call('ZRANGE', P .. ':streams', 0, -1)
local out = {now_ms, redis.call('XLEN', P .. ':dead'), #streams}
for _, stream in ipairs(streams) do
  local cap = redis.call('HGET', P .. ':streamcap', stream)
  local len = redis.call('XLEN', stream)
  local summary = redis.call('XPENDING', stream, 'crank')
  local in_flight = tonumber(summary[1])
  local oldest = -1
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, g in ipairs(groups) do
    local last = nil
    for j = 1, #g, 2 do
      if g[j] == 'last-delivered-id' then last = g[j + 1] end
    end
    if last then
      local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
      if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
    end
  end
  out[#out + 1] = cap
  out[#out + 1] = tonumber(string.match(stream, ':(%-?%d+)$')) or 0
  out[#out + 1] = math.max(0, len - in_flight)
  out[#out + 1] = in_flight
  out[#out + 1] = oldest
end
local delayed = redis.call('ZRANGE', P .. ':delayed', 0, 9999)
for _, id in ipairs(delayed) do
  local task = redis.call('HMGET', P .. ':t:' .. id, 'capability', 'priority')
  if task[1] then
    out[#out + 1] = task[1]
    out[#out + 1] = task[2] or '0'
  end
end
return out
