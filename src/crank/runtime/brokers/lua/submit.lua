-- ARGV: prefix, now, result ttl (s), watcher (the notice channel to record for each task
-- created, as watch.lua does; '' for none), then 10 values per task:
--   id, capability, priority, payload, max_attempts, idempotency key, timeout_s, meta,
--   fingerprint (of capability and input; '' without a key), caller ('' for none)
-- Returns, per task: '' when created; the id of the task that owns its idempotency key
-- when that task was made from the same capability and input; '!' when the key is bound
-- to another capability or input (nothing is created, nothing of the other task is told);
-- '?' .. id when the owner predates fingerprints (the caller compares).
local P = ARGV[1]
local now = ARGV[2]
local ttl = tonumber(ARGV[3])
local watcher = ARGV[4]
local out = {}
local created = 0
local ix = {}  -- ZADD arguments: offset in this call, id
-- the priority band: 0, or +-bit length of |priority| capped at 7 (see redis.py)
local function band(prio)
  local p = tonumber(prio)
  local m, b = math.abs(p), 0
  while m >= 1 and b < 7 do m = math.floor(m / 2); b = b + 1 end
  if p < 0 then return -b end
  return b
end
for i = 5, #ARGV, 10 do
  local id, cap, prio = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local idem, fp = ARGV[i + 5], ARGV[i + 8]
  local answer = nil
  if idem ~= '' then
    local idem_key = P .. ':idem:' .. idem
    local owner = redis.call('SET', idem_key, id, 'NX', 'GET')
    if owner then
      local known = redis.call('HGET', P .. ':t:' .. owner, 'fp')
      if known == fp then
        answer = owner
      elseif known then
        answer = '!'
      elseif redis.call('EXISTS', P .. ':t:' .. owner) == 1 then
        answer = '?' .. owner
      else
        -- the owner expired before its key: the key is free again
        redis.call('SET', idem_key, id)
      end
    end
  end
  if answer then
    out[#out + 1] = answer
  else
    local b = band(prio)
    local stream = P .. ':q:' .. cap .. ':' .. b
    if not redis.call('ZSCORE', P .. ':streams', stream) then
      pcall(redis.call, 'XGROUP', 'CREATE', stream, 'crank', '0', 'MKSTREAM')
      redis.call('ZADD', P .. ':streams', b, stream)
      redis.call('HSET', P .. ':streamcap', stream, cap)
    end
    local eid = redis.call('XADD', stream, '*', 't', id)
    redis.call('HSET', P .. ':t:' .. id, 'id', id, 'capability', cap, 'priority', prio,
      'payload', ARGV[i + 3], 'max_attempts', ARGV[i + 4], 'idempotency_key', idem,
      'timeout_s', ARGV[i + 6], 'meta', ARGV[i + 7], 'status', 'pending', 'attempts', 0,
      'created_at', now, 'updated_at', now, 'stream', stream, 'entry', eid, 'fp', fp,
      'caller', ARGV[i + 9])
    if watcher ~= '' then
      redis.call('SADD', P .. ':w:' .. id, watcher)
      redis.call('EXPIRE', P .. ':w:' .. id, ttl)
    end
    created = created + 1
    ix[#ix + 1] = created
    ix[#ix + 1] = id
    out[#out + 1] = ''
  end
end
if created > 0 then
  local first = index(P, ix, created, tonumber(now), ttl)
  -- the sweep, every 64 tasks: two entries looked at per task submitted, the cost of a
  -- look at the clock and the sweep's position shared by 64 submits
  local rounds = math.floor((first + created) / 64) - math.floor(first / 64)
  if rounds > 0 then sweep(P, 128 * rounds, tonumber(now), ttl) end
end
return out
