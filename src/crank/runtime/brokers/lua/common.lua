-- Shared by the scripts that claim or end tasks.

-- Tell the processes waiting for a task that it ended (see watch.lua): the outcome is
-- already stored. A notice is '<id> <status> <attempts>', then a newline and the
-- outcome's JSON when it is small (notices.py reads it).
local function notify(P, id, status, attempts, body)
  local key = P .. ':w:' .. id
  local channels = redis.call('SMEMBERS', key)
  if #channels == 0 then return end
  local msg = id .. ' ' .. status .. ' ' .. attempts
  if body and #body <= 16384 then msg = msg .. '\n' .. body end
  for _, channel in ipairs(channels) do redis.call('PUBLISH', channel, msg) end
  redis.call('DEL', key)
end

-- Take one delivered stream entry for this consumer.
-- S: {P = key prefix, GROUP, CONSUMER, RECEIPT, NOW, out = result list}.
local function take(S, stream, ent)
  local P, GROUP, NOW = S.P, S.GROUP, S.NOW
  local eid = ent[1]
  local fields = ent[2]
  if not fields or #fields < 2 then
    redis.call('XACK', stream, GROUP, eid)
    redis.call('XDEL', stream, eid)
    return 0
  end
  local id = fields[2]
  local key = P .. ':t:' .. id
  -- one read for the checks below and for the record the worker gets
  local h = redis.call('HMGET', key, 'status', 'max_attempts', 'attempts', 'capability', 'payload',
    'priority', 'idempotency_key', 'created_at', 'timeout_s', 'meta')
  local status = h[1]
  if (not status) or status == 'succeeded' or status == 'failed' or status == 'dead'
      or status == 'retrying' then
    -- finished (or waiting for its retry under a newer entry): this entry is stale
    redis.call('XACK', stream, GROUP, eid)
    redis.call('XDEL', stream, eid)
    return 0
  end
  local attempts = tonumber(h[3]) + 1
  if attempts > tonumber(h[2]) then
    local err = cjson.encode({code = 'WORKER_LOST', type = 'WorkerLost',
      message = 'the task was delivered ' .. (attempts - 1) ..
        ' times and its worker never finished it (the worker process died or hung each time)'})
    redis.call('HSET', key, 'status', 'dead', 'error', err, 'updated_at', NOW,
      'consumer', '', 'receipt', '')
    redis.call('XACK', stream, GROUP, eid)
    redis.call('XDEL', stream, eid)
    redis.call('XADD', P .. ':dead', 'MAXLEN', '~', 100000, '*', 't', id)
    notify(P, id, 'dead', attempts - 1, err)
    return 0
  end
  redis.call('HSET', key, 'status', 'running', 'attempts', attempts, 'consumer', S.CONSUMER,
    'receipt', S.RECEIPT, 'entry', eid, 'updated_at', NOW)
  -- the fields _claimed() in redis.py expects, in its order
  S.out[#S.out + 1] = eid
  S.out[#S.out + 1] = {id, h[4], h[5], h[6], attempts, h[2], h[7], h[8], h[9], h[10]}
  return 1
end
