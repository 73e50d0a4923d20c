-- Entries this consumer already read with a blocking XREADGROUP.
-- ARGV: prefix, consumer, now, receipt, result ttl, then (stream, entry id, task id) triples
local S = {P = ARGV[1], GROUP = 'crank', CONSUMER = ARGV[2], NOW = ARGV[3], RECEIPT = ARGV[4],
  TTL = ARGV[5], out = {}, lost = {}}
local wake = S.P .. ':wake'
for i = 6, #ARGV, 3 do
  if ARGV[i] == wake then  -- a wake-up, not a task: done with
    redis.call('XACK', wake, S.GROUP, ARGV[i + 1])
    redis.call('XDEL', wake, ARGV[i + 1])
  else
    take(S, ARGV[i], {ARGV[i + 1], {'t', ARGV[i + 2]}})
  end
end
return {S.out, S.lost}
