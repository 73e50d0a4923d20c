-- ARGV: prefix, now, then 8 values per task:
--   id, capability, priority, payload, max_attempts, idempotency key, timeout_s, meta
-- Returns, per task, '' when created or the id of the task that owns its idempotency key.
local P = ARGV[1]
local now = ARGV[2]
local out = {}
-- the priority band: 0, or +-bit length of |priority| capped at 7 (see redis.py)
local function band(prio)
  local p = tonumber(prio)
  local m, b = math.abs(p), 0
  while m >= 1 and b < 7 do m = math.floor(m / 2); b = b + 1 end
  if p < 0 then return -b end
  return b
end
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
      'created_at', now, 'updated_at', now, 'stream', stream, 'entry', eid)
    out[#out + 1] = ''
  end
end
return out
