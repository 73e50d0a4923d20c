-- ARGV: prefix, now (the client's clock, as the retries' due times are).
-- Returns {now_ms, dead, n,
--   (capability, band, waiting, in_flight, oldest_ms, backing_off, not_due, due_since)*n}:
-- backing_off are the retries in P:delayed:<stream>, not_due those of them whose
-- backoff is not over (the others go back to the stream at the next claim); oldest_ms
-- is when the stream's first waiting entry (new, or given back) was added, due_since
-- when the first of its retries already due came due (-1: none).
-- Retries waiting out their backoff are counted per stream (P:delayed:<stream>, kept
-- beside P:delayed by the scripts that add and remove them). When the two disagree
-- (tasks an earlier crank put in P:delayed alone), the counts are made again from
-- P:delayed first.
local P = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local streams = redis.call('ZRANGE', P .. ':streams', 0, -1)
local counted, delayed = 0, {}
for i, stream in ipairs(streams) do
  delayed[i] = redis.call('ZCARD', P .. ':delayed:' .. stream)
  counted = counted + delayed[i]
end
if counted ~= redis.call('ZCARD', P .. ':delayed') then
  for _, stream in ipairs(streams) do redis.call('DEL', P .. ':delayed:' .. stream) end
  local all = redis.call('ZRANGE', P .. ':delayed', 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local stream = redis.call('HGET', P .. ':t:' .. all[i], 'stream')
    if stream then
      redis.call('ZADD', P .. ':delayed:' .. stream, all[i + 1], all[i])
    else  -- its task is gone: the claim that found it due would drop it
      redis.call('ZREM', P .. ':delayed', all[i])
    end
  end
  for i, stream in ipairs(streams) do
    delayed[i] = redis.call('ZCARD', P .. ':delayed:' .. stream)
  end
end
local out = {now_ms, redis.call('XLEN', P .. ':dead'), #streams}
for i, stream in ipairs(streams) do
  local cap = redis.call('HGET', P .. ':streamcap', stream)
  local len = redis.call('XLEN', stream)
  local summary = redis.call('XPENDING', stream, 'crank')
  -- entries given back unrun are in the PEL but wait for a worker like new ones
  local released = P .. ':released:' .. stream
  local back = redis.call('ZCARD', released)
  local in_flight = math.max(0, tonumber(summary[1]) - back)
  local oldest = -1
  if back > 0 then
    oldest = tonumber(redis.call('ZRANGE', released, 0, 0, 'WITHSCORES')[2])
  end
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, g in ipairs(groups) do
    local last = nil
    for j = 1, #g, 2 do
      if g[j] == 'last-delivered-id' then last = g[j + 1] end
    end
    if last then
      local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
      if #first > 0 then
        local added = tonumber(string.match(first[1][1], '^(%d+)'))
        if oldest < 0 or added < oldest then oldest = added end
      end
    end
  end
  out[#out + 1] = cap
  out[#out + 1] = tonumber(string.match(stream, ':(%-?%d+)$')) or 0
  out[#out + 1] = math.max(0, len - in_flight)
  out[#out + 1] = in_flight
  out[#out + 1] = oldest
  out[#out + 1] = delayed[i]
  out[#out + 1] = redis.call('ZCOUNT', P .. ':delayed:' .. stream, '(' .. ARGV[2], '+inf')
  local due = redis.call('ZRANGE', P .. ':delayed:' .. stream, 0, 0, 'WITHSCORES')
  if #due > 0 and tonumber(due[2]) <= tonumber(ARGV[2]) then
    out[#out + 1] = due[2]
  else
    out[#out + 1] = -1
  end
end
return out
