-- ARGV: prefix, now, then 8 values per task:
--   id, capability, priority, payload, max_attempts, idempotency key, timeout_s, meta
-- Returns, per task, '' when created or the id of the task that owns its idempotency key.
local P = ARGV[1]
local now = ARGV[2]
local out = {}
for i = 3, #ARGV, 8 do
  local id, cap, prio = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local idem = ARGV[i + 5]
  local existing = false
  if idem ~= '' then
    local set = redis.call('SET', P .. ':idem:' .. idem, id, 'NX', 'GET')
    if set then existing = set end
  end
  if existing then
    out[#out + 1] = existing
  else
    local stream = P .. ':q:' .. cap .. ':' .. prio
    if not redis.call('ZSCORE', P .. ':streams', stream) then
      pcall(redis.call, 'XGROUP', 'CREATE', stream, 'crank', '0', 'MKSTREAM')
      redis.call('ZADD', P .. ':streams', prio, stream)
      redis.call('HSET', P .. ':streamcap', stream, cap)
    end
    local eid = redis.call('XADD', stream, '*', 't', id)
    redis.call('HSET', P .. ':t:' .. id, 'id', id, 'capability', cap, 'priority', prio,
      'payload', ARGV[i + 3], 'max_attempts', ARGV[i + 4], 'idempotency_key', idem,
      'timeout_s', ARGV[i + 6], 'meta', ARGV[i + 7], 'status', 'pending', 'attempts', 0,
      'created_at', now, 'updated_at', now, 'stream', stream, 'entry', eid)
    out[#out + 1] = ''
  end
end
return out
