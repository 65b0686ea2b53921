-- break.lua: force-remove locks regardless of owner (like terraform force-unlock).
--
-- KEYS[1]     exclusive environment lock      {prefix}:lock:{env}:env
-- KEYS[2]     shared slots zset               {prefix}:lock:{env}:slots
-- KEYS[3]     known resources set             {prefix}:lockidx:{env}
-- KEYS[4]     resource lock key               {prefix}:lock:{env}:res:{type/name}
--             (only when ARGV[3] names a resource)
-- ARGV[1]     resource key prefix             {prefix}:lock:{env}:res:
-- ARGV[2]     metadata key prefix             {prefix}:lockmeta:{env}:
-- ARGV[3]     resource name, or '' to break every lock of the environment
--
-- Returns {now_ms, {holder fields...}} describing what was removed (see _common.lua).
-- Breaking one resource leaves its owner's other locks and metadata alone (so the owner's
-- next extend fails); breaking everything also deletes the holders' metadata.  The fencing
-- counter and the known resources set are kept.

local res_prefix = ARGV[1]
local meta_prefix = ARGV[2]
local now = now_ms()
local out = {}

if ARGV[3] ~= '' then
  local v = redis.call('GET', KEYS[4])
  if v then
    local h = resource_holder(v, KEYS[4], meta_prefix, now, {})
    if h then
      emit(out, 'resource', ARGV[3], h)
    end
    redis.call('DEL', KEYS[4])
  end
  redis.call('SADD', KEYS[3], ARGV[3])
  return {fmt(now), out}
end

prune_slots(KEYS[2], now)
local owners = collect_all(out, KEYS[1], KEYS[2], KEYS[3], res_prefix, meta_prefix, now, nil)
redis.call('DEL', KEYS[1], KEYS[2])
for i = 1, #out, 6 do
  if out[i] == 'resource' then
    redis.call('DEL', res_prefix .. out[i + 1])
  end
end
for _, owner in ipairs(owners) do
  redis.call('DEL', meta_prefix .. owner)
end
return {fmt(now), out}
