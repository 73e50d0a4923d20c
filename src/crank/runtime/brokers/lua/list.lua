-- ARGV: prefix, before ('' = from the newest), limit, budget (entries to look at, at
-- most), status, capability, caller ('' = any, for each filter).
-- Walks P:ix from the newest entry below `before`, keeping the tasks that match, until
-- one more than `limit` matched (so it knows whether a next page exists) or `budget`
-- entries were looked at. Returns {cursor, then per task the fields of _summary() in
-- redis.py}: the cursor is the position of the last task returned when more matched, of
-- the last entry looked at when the budget ran out, '' when the index ended. An entry
-- whose task expired is taken out.
local P = ARGV[1]
local key = P .. ':ix'
local upper = ARGV[2] == '' and '+inf' or '(' .. ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local status, capability, caller = ARGV[5], ARGV[6], ARGV[7]
local out = {''}
local found, looked, last = 0, 0, nil
while looked < budget do
  local got = redis.call('ZREVRANGEBYSCORE', key, upper, '-inf', 'WITHSCORES', 'LIMIT', 0,
    math.min(budget - looked, math.max(limit + 1 - found, 16)))
  if #got == 0 then
    out[1] = ''  -- the index ended: no next page
    return out
  end
  for i = 1, #got, 2 do
    looked = looked + 1
    last = got[i + 1]
    local h = redis.call('HMGET', P .. ':t:' .. got[i], 'status', 'id', 'capability', 'priority',
      'attempts', 'max_attempts', 'created_at', 'updated_at', 'error', 'meta', 'caller')
    if not h[1] then
      redis.call('ZREM', key, got[i])
    elseif (status == '' or h[1] == status) and (capability == '' or h[3] == capability)
        and (caller == '' or h[11] == caller) then
      if found == limit then return out end  -- a next page exists: out[1] is its cursor
      out[#out + 1] = h
      found = found + 1
      out[1] = last
    end
  end
  upper = '(' .. last
end
out[1] = last or ''
return out
