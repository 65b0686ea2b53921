-- acquire.lua: take all locks of one request atomically (all or nothing).
--
-- KEYS[1]     exclusive environment lock      {prefix}:lock:{env}:env
-- KEYS[2]     shared slots zset               {prefix}:lock:{env}:slots
-- KEYS[3]     fencing counter                 {prefix}:fence:{env}
-- KEYS[4]     known resources set             {prefix}:lockidx:{env}
-- KEYS[5]     metadata hash of the owner      {prefix}:lockmeta:{env}:{owner}
-- ARGV[1]     owner
-- ARGV[2]     ttl in ms
-- ARGV[3]     '1' exclusive (whole environment) | '0' shared slot + resources
-- ARGV[4]     release id or ''
-- ARGV[5]     resources as a JSON array (stored in the metadata; the resource lock keys are
--             ARGV[6] .. name: one argument instead of one key per resource keeps the call
--             cheap for 100 resources)
-- ARGV[6]     resource key prefix             {prefix}:lock:{env}:res:
-- ARGV[7]     metadata key prefix             {prefix}:lockmeta:{env}:
--
-- Returns {1, fencing_token} on success, or {0, now_ms, {holder fields...}} listing every
-- conflicting holder (see _common.lua); nothing is written to locks or the fence then.
-- Requested resource names are added to the known resources set in both cases.
-- Locks already held by the owner never conflict; on success the owner's previous locks
-- are replaced by the new ones.  Resource keys are written without a TTL: they live as long
-- as the metadata (see _common.lua), which expires with the lease.

local owner = ARGV[1]
local ttl = ARGV[2]
local exclusive = ARGV[3] == '1'
local res_prefix = ARGV[6]
local meta_prefix = ARGV[7]
local names = cjson.decode(ARGV[5])
local nres = #names
local rkeys = {}
for i = 1, nres do
  rkeys[i] = res_prefix .. names[i]
end
local now = now_ms()

prune_slots(KEYS[2], now)
sadd_all(KEYS[4], names)

local out = {}
if exclusive then
  collect_all(out, KEYS[1], KEYS[2], KEYS[4], res_prefix, meta_prefix, now, owner)
else
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= owner then
    describe(out, meta_prefix, 'environment', nil, holder, redis.call('PTTL', KEYS[1]), now)
  end
  local values = mget_all(rkeys)
  local cache = {}
  for i = 1, nres do
    local v = values[i]
    if v and v ~= owner then
      local h = resource_holder(v, rkeys[i], meta_prefix, now, cache)
      if h and h[1] ~= owner then
        emit(out, 'resource', names[i], h)
      end
    end
  end
end
if #out > 0 then
  return {0, fmt(now), out}
end

-- A retry / re-acquisition by the same owner replaces whatever it held before (its old
-- resource keys die with the old fencing token in its metadata).
if redis.call('EXISTS', KEYS[5]) == 1 then
  if redis.call('GET', KEYS[1]) == owner then
    redis.call('DEL', KEYS[1])
  end
  redis.call('ZREM', KEYS[2], owner)
  redis.call('DEL', KEYS[5])
end

local fence = redis.call('INCR', KEYS[3])
if exclusive then
  redis.call('SET', KEYS[1], owner, 'PX', ttl)
else
  redis.call('ZADD', KEYS[2], fmt(now + tonumber(ttl)), owner)
  refresh_slots_ttl(KEYS[2], now)
  local value = relo_value(owner, fence)
  local kv = {}
  for i = 1, nres do
    kv[2 * i - 1] = rkeys[i]
    kv[2 * i] = value
  end
  mset_all(kv)
end
redis.call('HSET', KEYS[5], 'release_id', ARGV[4], 'since_ms', fmt(now), 'exclusive', ARGV[3],
           'resources', ARGV[5], 'fence', fence, 'ttl_ms', ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
return {1, fence}
