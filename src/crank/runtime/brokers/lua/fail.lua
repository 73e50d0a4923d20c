-- ARGV: prefix, task id, entry id, receipt, retryable (1/0), error json, now, retry due,
--       client fault (1/0), result ttl (s)
-- A client fault ends the task 'failed' (kept like a result, no dead letter); a
-- retryable failure with attempts left waits out its backoff; the rest is 'dead'.
local P = ARGV[1]
local id = ARGV[2]
local key = P .. ':t:' .. id
local h = redis.call('HMGET', key, 'status', 'receipt', 'attempts', 'max_attempts', 'stream',
  'idempotency_key', 'cancel_requested')
if not h[1] then return 'dead' end
if h[1] ~= 'running' or h[2] ~= ARGV[4] then return h[1] end
redis.call('XACK', h[5], 'crank', ARGV[3])
redis.call('XDEL', h[5], ARGV[3])
if h[7] and h[7] ~= '' then
  -- asked to stop while it ran: however the handler ended, the task is cancelled
  end_cancelled(P, id, h[3], cancelled_error('cancelled while it ran', ARGV[6]), ARGV[7], ARGV[10])
  return 'cancelled'
end
if ARGV[9] == '1' then
  redis.call('HSET', key, 'status', 'failed', 'error', ARGV[6], 'updated_at', ARGV[7],
    'consumer', '', 'receipt', '')
  redis.call('EXPIRE', key, ARGV[10])
  if h[6] and h[6] ~= '' then redis.call('EXPIRE', P .. ':idem:' .. h[6], ARGV[10]) end
  notify(P, id, 'failed', h[3], ARGV[6])
  return 'failed'
end
if ARGV[5] == '1' and tonumber(h[3]) < tonumber(h[4]) then
  redis.call('HSET', key, 'status', 'retrying', 'error', ARGV[6], 'updated_at', ARGV[7],
    'consumer', '', 'receipt', '')
  redis.call('ZADD', P .. ':delayed', ARGV[8], id)
  redis.call('ZADD', P .. ':delayed:' .. h[5], ARGV[8], id)  -- counted per stream
  wake_a_worker(P)  -- a waiting worker learns when this retry comes due
  return 'retrying'
end
redis.call('HSET', key, 'status', 'dead', 'error', ARGV[6], 'updated_at', ARGV[7],
  'consumer', '', 'receipt', '')
local dead_entry = redis.call('XADD', P .. ':dead', '*', 't', id)
redis.call('HSET', key, 'dead_entry', dead_entry)
notify(P, id, 'dead', h[3], ARGV[6])
return 'dead'
