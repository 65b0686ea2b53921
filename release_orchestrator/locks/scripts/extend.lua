-- extend.lua: reset the TTL of every part of a lease, only if the lease still owns all of them.
--
-- KEYS[1]     exclusive environment lock      {prefix}:lock:{env}:env
-- KEYS[2]     shared slots zset               {prefix}:lock:{env}:slots
-- KEYS[3]     metadata hash of the owner      {prefix}:lockmeta:{env}:{owner}
-- ARGV[1]     owner
-- ARGV[2]     new ttl in ms
-- ARGV[3]     '1' exclusive lease | '0' shared lease
-- ARGV[4]     fencing token of the lease
-- ARGV[5]     the lease's resources as a JSON array ('[]' for an exclusive lease)
-- ARGV[6]     resource key prefix             {prefix}:lock:{env}:res:
--
-- Returns 1 if every part was still owned (and the metadata carries the lease's fencing
-- token) and all were extended; 0 if any part was lost, in which case nothing is changed.
-- Resource keys have no TTL of their own: extending the metadata extends them.

local owner = ARGV[1]
local rkeys = {}
for i, name in ipairs(cjson.decode(ARGV[5])) do
  rkeys[i] = ARGV[6] .. name
end
local ttl = ARGV[2]
local now = now_ms()

if redis.call('HGET', KEYS[3], 'fence') ~= ARGV[4] then
  return 0
end
if ARGV[3] == '1' then
  if redis.call('GET', KEYS[1]) ~= owner then
    return 0
  end
else
  local score = redis.call('ZSCORE', KEYS[2], owner)
  if not score or tonumber(score) <= now then
    return 0
  end
  local mine = relo_value(owner, ARGV[4])
  local held = mget_all(rkeys)
  for i = 1, #rkeys do
    if held[i] ~= mine then
      return 0
    end
  end
end

if ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('ZADD', KEYS[2], fmt(now + tonumber(ttl)), owner)
  refresh_slots_ttl(KEYS[2], now)
end
redis.call('HSET', KEYS[3], 'ttl_ms', ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
