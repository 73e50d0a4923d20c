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

-- The error of a cancelled task (the texts of CANCELLED_* in common.py): its message,
-- and the error it had before as JSON text (or nil).
local function cancelled_error(message, cause)
  local err = '{"code":"CANCELLED","message":"' .. message .. '","type":"TaskCancelled"'
  if cause and cause ~= '' then err = err .. ',"cause":' .. cause end
  return err .. '}'
end
local WORKER_GONE = 'cancelled while it ran; its worker stopped before it did'

-- End a task 'cancelled' (its stream entry already acked): kept `ttl` seconds like a
-- result, its waiters told.
local function end_cancelled(P, id, attempts, err, now, ttl)
  local key = P .. ':t:' .. id
  redis.call('HSET', key, 'status', 'cancelled', 'error', err, 'attempts', attempts,
    'updated_at', now, 'consumer', '', 'receipt', '')
  redis.call('EXPIRE', key, ttl)
  local idem = redis.call('HGET', key, 'idempotency_key')
  if idem and idem ~= '' then redis.call('EXPIRE', P .. ':idem:' .. idem, ttl) end
  notify(P, id, 'cancelled', attempts, err)
end

-- Take one delivered stream entry for this consumer.
-- S: {P = key prefix, GROUP, CONSUMER, RECEIPT, NOW, TTL (of results), out = result list,
--   lost = (capability, status) of each task this take ended (dead or cancelled), flat}.
-- An entry given back unrun (release, recover): long idle, so a scan of the pending
-- entries would adopt it, and in P:released:<stream> (by its entry id), so the next
-- claim takes it first, however many entries are in flight ahead of it.
local function give_back(P, stream, consumer, eid)
  redis.call('XCLAIM', stream, 'crank', consumer, 0, eid, 'IDLE', 1000000000000, 'JUSTID')
  redis.call('ZADD', P .. ':released:' .. stream, tonumber(string.match(eid, '^(%d+)')), eid)
end

-- Wake a worker waiting in XREADGROUP BLOCK (it waits on P:wake too, with the group
-- 'crank': one entry wakes one worker): a task given back or a retry put off is no new
-- entry on its stream, and a waiting worker would see it only when its wait ran out.
local function wake_a_worker(P)
  redis.call('XADD', P .. ':wake', 'MAXLEN', '~', 64, '*', 'w', '1')
end

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
  redis.call('ZREM', P .. ':released:' .. stream, eid)
  -- one read for the checks below and for the record the worker gets
  local h = redis.call('HMGET', key, 'status', 'max_attempts', 'attempts', 'capability', 'payload',
    'priority', 'idempotency_key', 'created_at', 'timeout_s', 'meta', 'cancel_requested', 'entry')
  local status = h[1]
  if (not status) or status == 'succeeded' or status == 'failed' or status == 'dead'
      or status == 'cancelled' or (status == 'retrying' and h[12] ~= eid) then
    -- finished (or a retry not back in line under this entry): this entry is stale
    redis.call('XACK', stream, GROUP, eid)
    redis.call('XDEL', stream, eid)
    return 0
  end
  if h[11] and h[11] ~= '' then
    -- cancelled while a worker held it, which let the lease run out (or died): it ends
    redis.call('XACK', stream, GROUP, eid)
    redis.call('XDEL', stream, eid)
    end_cancelled(P, id, h[3], cancelled_error(WORKER_GONE), NOW, S.TTL)
    S.lost[#S.lost + 1] = h[4]
    S.lost[#S.lost + 1] = 'cancelled'
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
    local dead_entry = redis.call('XADD', P .. ':dead', '*', 't', id)
    redis.call('HSET', key, 'dead_entry', dead_entry)
    notify(P, id, 'dead', attempts - 1, err)
    S.lost[#S.lost + 1] = h[4]
    S.lost[#S.lost + 1] = 'dead'
    return 0
  end
  redis.call('HSET', key, 'status', 'running', 'attempts', attempts, 'consumer', S.CONSUMER,
    'receipt', S.RECEIPT, 'entry', eid, 'updated_at', NOW)
  -- the fields _claimed() in redis.py expects, in its order
  S.out[#S.out + 1] = eid
  S.out[#S.out + 1] = {id, h[4], h[5], h[6], attempts, h[2], h[7], h[8], h[9], h[10]}
  return 1
end
