-- ARGV: prefix, release (1 = give back, 0 = extend), now, result ttl, then
-- (task id, entry id, receipt) triples.
-- Extending resets the entry's idle time; releasing gives it back (give_back: the
-- next claim takes it first), or ends a task cancelled while held ('cancelled', its
-- delivery not counted). Returns 1/0 per triple: was the claim still held.
local P = ARGV[1]
local release = ARGV[2] == '1'
local out = {}
local gave = false
for i = 5, #ARGV, 3 do
  local key = P .. ':t:' .. ARGV[i]
  local h = redis.call('HMGET', key, 'status', 'receipt', 'stream', 'consumer', 'attempts',
    'cancel_requested')
  if h[1] == 'running' and h[2] == ARGV[i + 2] then
    if release and h[6] and h[6] ~= '' then
      redis.call('XACK', h[3], 'crank', ARGV[i + 1])
      redis.call('XDEL', h[3], ARGV[i + 1])
      end_cancelled(P, ARGV[i], math.max(0, tonumber(h[5]) - 1),
        cancelled_error('cancelled before it ran'), ARGV[3], ARGV[4])
    elseif release then
      redis.call('HSET', key, 'status', 'pending', 'consumer', '', 'receipt', '',
        'attempts', math.max(0, tonumber(h[5]) - 1))
      give_back(P, h[3], h[4], ARGV[i + 1])
      gave = true
    else
      redis.call('XCLAIM', h[3], 'crank', h[4], 0, ARGV[i + 1], 'JUSTID')
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if gave then wake_a_worker(P) end
return out
