-- ARGV: prefix, now, result_ttl_s, then (task id, entry id, result json) triples.
-- Entries are acked and deleted with one XACK and one XDEL per stream.
local P = ARGV[1]
local now = ARGV[2]
local ttl = ARGV[3]
local by_stream = {}
for i = 4, #ARGV, 3 do
  local key = P .. ':t:' .. ARGV[i]
  local h = redis.call('HMGET', key, 'status', 'stream', 'idempotency_key', 'attempts')
  if h[1] then
    if h[1] ~= 'succeeded' and h[1] ~= 'failed' and h[1] ~= 'dead' and h[1] ~= 'cancelled' then
      -- consumer and receipt stay: they only mean something while the status is running
      redis.call('HSET', key, 'status', 'succeeded', 'result', ARGV[i + 2], 'updated_at', now)
      redis.call('EXPIRE', key, ttl)
      if h[1] == 'retrying' then
        redis.call('ZREM', P .. ':delayed', ARGV[i])
        if h[2] then redis.call('ZREM', P .. ':delayed:' .. h[2], ARGV[i]) end
      end
      if h[3] and h[3] ~= '' then redis.call('EXPIRE', P .. ':idem:' .. h[3], ttl) end
      notify(P, ARGV[i], 'succeeded', h[4] or 0, ARGV[i + 2])
    end
    local ids = by_stream[h[2]]
    if not ids then ids = {}; by_stream[h[2]] = ids end
    ids[#ids + 1] = ARGV[i + 1]
  end
end
for stream, ids in pairs(by_stream) do
  for first = 1, #ids, 500 do  -- unpack has a stack limit
    local last = math.min(first + 499, #ids)
    redis.call('XACK', stream, 'crank', unpack(ids, first, last))
    redis.call('XDEL', stream, unpack(ids, first, last))
  end
end
return 1
