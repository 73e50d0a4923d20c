-- ARGV: prefix, now, result_ttl_s, then (task id, entry id, result json) triples
local P = ARGV[1]
local now = ARGV[2]
local ttl = ARGV[3]
for i = 4, #ARGV, 3 do
  local key = P .. ':t:' .. ARGV[i]
  local h = redis.call('HMGET', key, 'status', 'stream', 'idempotency_key')
  if h[1] then
    if h[1] ~= 'succeeded' and h[1] ~= 'dead' then
      redis.call('HSET', key, 'status', 'succeeded', 'result', ARGV[i + 2], 'error', '',
        'updated_at', now, 'consumer', '', 'receipt', '')
      redis.call('EXPIRE', key, ttl)
      redis.call('ZREM', P .. ':delayed', ARGV[i])
      if h[3] and h[3] ~= '' then redis.call('EXPIRE', P .. ':idem:' .. h[3], ttl) end
    end
    redis.call('XACK', h[2], 'crank', ARGV[i + 1])
    redis.call('XDEL', h[2], ARGV[i + 1])
  end
end
return 1
