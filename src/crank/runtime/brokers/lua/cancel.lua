-- ARGV: prefix, task id, now, result ttl.
-- Returns {outcome, consumer, the task's hash as it is after the cancel (HGETALL: one
-- moment with the outcome; read after the script, a worker may have ended it meanwhile)}:
-- 'none' (no such task), 'finished' (it ended before),
-- 'cancelled' (it was pending or waiting out a retry: off the queue, ended 'cancelled',
-- never delivered again), 'stopping' (a worker holds it: marked, and the consumer's
-- channel P:cancel:<consumer> is told; the scripts that end it make it 'cancelled').
local P, id, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ':t:' .. id
local h = redis.call('HMGET', key, 'status', 'stream', 'entry', 'consumer', 'attempts', 'error',
  'cancel_requested')
local status = h[1]
if not status then return {'none', '', {}} end
if status == 'pending' or status == 'retrying' then
  if status == 'retrying' then
    redis.call('ZREM', P .. ':delayed', id)
    if h[2] then redis.call('ZREM', P .. ':delayed:' .. h[2], id) end
  end
  if h[2] and h[3] and h[3] ~= '' then
    -- off its stream (and out of the pending entries, if it was given back)
    redis.call('XACK', h[2], 'crank', h[3])
    redis.call('XDEL', h[2], h[3])
    redis.call('ZREM', P .. ':released:' .. h[2], h[3])
  end
  local cause = nil
  if status == 'retrying' then cause = h[6] end
  redis.call('HSET', key, 'cancel_requested', now)
  end_cancelled(P, id, h[5], cancelled_error('cancelled before it ran', cause), now, ttl)
  return {'cancelled', '', redis.call('HGETALL', key)}
end
if status ~= 'running' then return {'finished', '', redis.call('HGETALL', key)} end
if not h[7] or h[7] == '' then redis.call('HSET', key, 'cancel_requested', now) end
redis.call('PUBLISH', P .. ':cancel:' .. h[4], id)
return {'stopping', h[4], redis.call('HGETALL', key)}
