-- The list index (see redis.py, "Listing"): P:ix holds every task's id scored by its
-- submission number (P:ix:seq). P:ix:clock remembers, about once a minute, which
-- number a submit reached at what time, so the sweep knows which entries are old
-- enough to belong to an expired task.

local function index(P, ids, count, now, ttl)
  local first = redis.call('INCRBY', P .. ':ix:seq', count) - count
  for j = 1, #ids, 2 do ids[j] = first + ids[j] end
  for from = 1, #ids, 1000 do  -- unpack has a stack limit
    redis.call('ZADD', P .. ':ix', unpack(ids, from, math.min(from + 999, #ids)))
  end
  if redis.call('SET', P .. ':ix:tick', '1', 'NX', 'EX', 60) then
    redis.call('ZADD', P .. ':ix:clock', now, first)
    redis.call('ZREMRANGEBYSCORE', P .. ':ix:clock', '-inf', now - 2 * ttl - 600)
  end
  return first
end

-- Look at up to n entries of P:ix submitted more than `ttl` ago (only those can belong
-- to an expired task), after the sweep's position (P:ix:swept), round and round, and
-- take out those whose task is gone: a trickle that keeps the index as large as the
-- tasks it lists, whether or not anyone lists.
local function sweep(P, n, now, ttl)
  local mark = redis.call('ZREVRANGEBYSCORE', P .. ':ix:clock', now - ttl, '-inf', 'LIMIT', 0, 1)
  if #mark == 0 then return end
  local key = P .. ':ix:swept'
  local from = redis.call('GET', key) or '0'
  local got = redis.call('ZRANGEBYSCORE', P .. ':ix', '(' .. from, mark[1], 'WITHSCORES',
    'LIMIT', 0, n)
  for i = 1, #got, 2 do
    if redis.call('EXISTS', P .. ':t:' .. got[i]) == 0 then redis.call('ZREM', P .. ':ix', got[i]) end
  end
  if #got < 2 * n then redis.call('SET', key, '0') else redis.call('SET', key, got[#got]) end
end
