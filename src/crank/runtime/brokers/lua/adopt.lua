-- Entries this consumer already read with a blocking XREADGROUP.
-- ARGV: prefix, consumer, now, receipt, result ttl, then (stream, entry id, task id) triples
local S = {P = ARGV[1], GROUP = 'crank', CONSUMER = ARGV[2], NOW = ARGV[3], RECEIPT = ARGV[4],
  TTL = ARGV[5], out = {}, lost = {}}
for i = 6, #ARGV, 3 do
  take(S, ARGV[i], {ARGV[i + 1], {'t', ARGV[i + 2]}})
end
return {S.out, S.lost}
