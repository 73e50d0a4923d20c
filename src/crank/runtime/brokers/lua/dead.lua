-- Redrive or purge dead letters.
-- ARGV: prefix, action ('redrive' | 'purge'), now, then either
--   'id', task id                       -> {outcome, the task's hash (HGETALL)}: outcome
--                                          'none' (no such task), 'done', or the task's
--                                          status when it is no dead letter; the hash as
--                                          the script left it (redrive, no dead letter)
--                                          or as it was before (purge), so the answer is
--                                          the moment of the change, not a read after it
--   'cap', capability, cursor, budget, last
--                                       -> {next cursor ('' at the end), how many, last}
-- A redriven task goes to the back of its stream as a new entry: pending, 0 attempts, no
-- error; its hash, events and list entry stay. A purged one is deleted with its events,
-- its waiters, its idempotency key (when it owns it) and its list entry. Either way its
-- entry of P:dead goes (so XLEN P:dead keeps counting the dead letters); the 'cap' form
-- walks P:dead from `cursor` up to `last` (the stream's last entry when the first call
-- ran, which it answers: a task redriven that dies again meanwhile is not taken twice),
-- `budget` entries per call, and drops the entries of tasks that are gone or no longer
-- dead on the way.
local P, action, now = ARGV[1], ARGV[2], ARGV[3]
local DEAD = P .. ':dead'

-- the P:dead entry of a task dead before the hash recorded it: look for it
local function find_dead_entry(id)
  local from = '-'
  while true do
    local got = redis.call('XRANGE', DEAD, from, '+', 'COUNT', 1000)
    for _, ent in ipairs(got) do
      if ent[2][2] == id then return ent[1] end
    end
    if #got < 1000 then return nil end
    from = '(' .. got[#got][1]
  end
end

local function change(id, key, h, dead_entry)
  -- h: status, stream, idempotency_key, dead_entry
  if dead_entry then redis.call('XDEL', DEAD, dead_entry) end
  if action == 'purge' then
    redis.call('DEL', key, P .. ':ev:' .. id, P .. ':w:' .. id)
    if h[3] and h[3] ~= '' and redis.call('GET', P .. ':idem:' .. h[3]) == id then
      redis.call('DEL', P .. ':idem:' .. h[3])
    end
    redis.call('ZREM', P .. ':ix', id)
    return
  end
  local stream = h[2]
  if not redis.call('ZSCORE', P .. ':streams', stream) then
    -- its stream went away (a flushed queue): made again as a submit makes it
    local cap = redis.call('HGET', key, 'capability')
    local b = tonumber(string.match(stream, ':(%-?%d+)$')) or 0
    pcall(redis.call, 'XGROUP', 'CREATE', stream, 'crank', '0', 'MKSTREAM')
    redis.call('ZADD', P .. ':streams', b, stream)
    redis.call('HSET', P .. ':streamcap', stream, cap)
  end
  local eid = redis.call('XADD', stream, '*', 't', id)
  redis.call('HSET', key, 'status', 'pending', 'attempts', 0, 'updated_at', now, 'entry', eid,
    'consumer', '', 'receipt', '')
  redis.call('HDEL', key, 'error', 'result', 'cancel_requested', 'dead_entry')
end

local FIELDS = {'status', 'stream', 'idempotency_key', 'dead_entry', 'capability'}

if ARGV[4] == 'id' then
  local id = ARGV[5]
  local key = P .. ':t:' .. id
  local h = redis.call('HMGET', key, unpack(FIELDS))
  if not h[1] then return {'none', {}} end
  if h[1] ~= 'dead' then return {h[1], redis.call('HGETALL', key)} end
  local dead_entry = h[4]
  if not dead_entry or dead_entry == '' then dead_entry = find_dead_entry(id) end
  local before = nil
  if action == 'purge' then before = redis.call('HGETALL', key) end
  change(id, key, h, dead_entry)
  return {'done', before or redis.call('HGETALL', key)}
end

local capability, cursor, budget, last = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
if last == '' then
  local newest = redis.call('XREVRANGE', DEAD, '+', '-', 'COUNT', 1)
  if #newest == 0 then return {'', 0, ''} end
  last = newest[1][1]
end
local from = '-'
if cursor ~= '' then from = '(' .. cursor end
local got = redis.call('XRANGE', DEAD, from, last, 'COUNT', budget)
local count = 0
for _, ent in ipairs(got) do
  local id = ent[2][2]
  local key = P .. ':t:' .. id
  local h = redis.call('HMGET', key, unpack(FIELDS))
  if h[1] ~= 'dead' or (h[4] and h[4] ~= '' and h[4] ~= ent[1]) then
    redis.call('XDEL', DEAD, ent[1])  -- stale: its task is gone, or dead again elsewhere
  elseif h[5] == capability then
    change(id, key, h, ent[1])
    count = count + 1
  end
end
local next_cursor = ''
if #got == budget and got[#got][1] ~= last then next_cursor = got[#got][1] end
return {next_cursor, count, last}
