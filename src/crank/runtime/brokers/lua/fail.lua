-- ARGV: prefix, task id, entry id, receipt, retryable (1/0), error json, now, retry due
local P = ARGV[1]
local id = ARGV[2]
local key = P .. ':t:' .. id
local h = redis.call('HMGET', key, 'status', 'receipt', 'attempts', 'max_attempts', 'stream')
if not h[1] then return 'dead' end
if h[1] ~= 'running' or h[2] ~= ARGV[4] then return h[1] end
redis.call('XACK', h[5], 'crank', ARGV[3])
redis.call('XDEL', h[5], ARGV[3])
if ARGV[5] == '1' and tonumber(h[3]) < tonumber(h[4]) then
  redis.call('HSET', key, 'status', 'retrying', 'error', ARGV[6], 'updated_at', ARGV[7],
    'consumer', '', 'receipt', '')
  redis.call('ZADD', P .. ':delayed', ARGV[8], id)
  return 'retrying'
end
redis.call('HSET', key, 'status', 'dead', 'error', ARGV[6], 'updated_at', ARGV[7],
  'consumer', '', 'receipt', '')
redis.call('XADD', P .. ':dead', 'MAXLEN', '~', 100000, '*', 't', id)
return 'dead'
