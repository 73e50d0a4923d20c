-- ARGV: prefix, consumer, limit, now, min_idle_ms, receipt, rotation, result ttl, ncaps, caps...
-- Returns {claimed, streams, lost, due}: claimed is (entry id, task fields) pairs, flat;
-- when it is empty, streams names the streams looked at, for the worker to block on, and
-- due the time the first retry backing off comes due ('' if none); lost is
-- (capability, status) of each task the claim ended (dead or cancelled), flat.
local S = {P = ARGV[1], GROUP = 'crank', CONSUMER = ARGV[2], RECEIPT = ARGV[6], NOW = ARGV[4],
  TTL = ARGV[8], out = {}, lost = {}}
local P, GROUP, CONSUMER, NOW = S.P, S.GROUP, S.CONSUMER, S.NOW
local limit = tonumber(ARGV[3])
local min_idle = ARGV[5]
local rotation = tonumber(ARGV[7])
local ncaps = tonumber(ARGV[9])
local capset = nil
if ncaps >= 0 then
  capset = {}
  for i = 1, ncaps do capset[ARGV[9 + i]] = true end
end

-- retries whose backoff is over go back to their stream as new entries; they stay
-- 'retrying' (with their last error) until a claim takes them, as on every backend
local due = redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', NOW, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local key = P .. ':t:' .. id
  local stream = redis.call('HGET', key, 'stream')
  if stream and redis.call('HGET', key, 'status') == 'retrying' then
    local eid = redis.call('XADD', stream, '*', 't', id)
    redis.call('HSET', key, 'entry', eid)
  end
  redis.call('ZREM', P .. ':delayed', id)
  if stream then redis.call('ZREM', P .. ':delayed:' .. stream, id) end
end

-- streams by priority (high first); equal priorities rotate so none starves
local all = redis.call('ZREVRANGE', P .. ':streams', 0, -1, 'WITHSCORES')
local streams = {}
for i = 1, #all, 2 do
  local stream = all[i]
  if capset == nil or capset[redis.call('HGET', P .. ':streamcap', stream)] then
    streams[#streams + 1] = {stream, tonumber(all[i + 1]), 0}
  end
end
local n = #streams
for i, s in ipairs(streams) do s[3] = (i + rotation) % math.max(n, 1) end
table.sort(streams, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[3] < b[3]
end)

local got = 0
for _, s in ipairs(streams) do
  if got >= limit then break end
  local stream = s[1]
  -- entries given back unrun (release, recover), first: they were in line before the
  -- new ones. XCLAIM with the visibility timeout as its least idle time takes only those
  -- still given back (an entry a scan adopted since is busy again, and left out of the
  -- set by take(); one gone from the stream is not returned).
  local released = P .. ':released:' .. stream
  local back = redis.call('ZRANGE', released, 0, limit - got - 1)
  if #back > 0 then
    redis.call('ZREM', released, unpack(back))
    local r = redis.call('XCLAIM', stream, GROUP, CONSUMER, min_idle, unpack(back))
    for _, ent in ipairs(r) do
      if ent then got = got + take(S, stream, ent) end
    end
  end
  -- entries idle past the visibility timeout (their consumer died or hung), oldest
  -- first. XAUTOCLAIM walks the pending entries, which is most of a claim's cost when
  -- many are in flight, so a stream is scanned at most every 100 ms by anyone (a
  -- scan cut short clears that mark; what a release or a recover gives back is taken
  -- above, from P:released, without a scan).
  local mark = P .. ':reclaim:' .. stream
  if got < limit and redis.call('SET', mark, '1', 'PX', 100, 'NX') then
    local cursor = '0-0'
    for _ = 1, 4 do
      if got >= limit then break end
      local r = redis.call('XAUTOCLAIM', stream, GROUP, CONSUMER, min_idle, cursor, 'COUNT', limit - got)
      for _, ent in ipairs(r[2]) do got = got + take(S, stream, ent) end
      cursor = r[1]
      if cursor == '0-0' then break end
    end
    if cursor ~= '0-0' then redis.call('DEL', mark) end
  end
  if got < limit then
    local r = redis.call('XREADGROUP', 'GROUP', GROUP, CONSUMER, 'COUNT', limit - got, 'STREAMS', stream, '>')
    if r then
      for _, ent in ipairs(r[1][2]) do got = got + take(S, stream, ent) end
    end
  end
end
if got > 0 then return {S.out, {}, S.lost, ''} end
local names = {}
for i, s in ipairs(streams) do names[i] = s[1] end
-- the worker waits on these streams and on P:wake (a give-back or a retry put off wakes
-- it), at most until the first retry comes due
pcall(redis.call, 'XGROUP', 'CREATE', P .. ':wake', GROUP, '$', 'MKSTREAM')
local first = redis.call('ZRANGE', P .. ':delayed', 0, 0, 'WITHSCORES')
return {S.out, names, S.lost, first[2] or ''}
