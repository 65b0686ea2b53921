-- release.lua: release the parts of a lease that its owner still holds (idempotent).
--
-- KEYS[1]     exclusive environment lock      {prefix}:lock:{env}:env
-- KEYS[2]     shared slots zset               {prefix}:lock:{env}:slots
-- KEYS[3]     metadata hash of the owner      {prefix}:lockmeta:{env}:{owner}
-- ARGV[1]     owner
-- ARGV[2]     fencing token of the lease
-- ARGV[3]     resource key prefix             {prefix}:lock:{env}:res:
-- KEYS[4]     (optional) known resources set  {prefix}:lockidx:{env}
-- ARGV[4]     (with KEYS[4]) metadata key prefix {prefix}:lockmeta:{env}:
--
-- Returns the number of lock parts removed (the exclusive lock, the slot and the metadata,
-- which ends every resource lock of the lease at once: see _common.lua).  Locks of other
-- owners are never touched; if the owner's metadata carries a different fencing token (the
-- lease was superseded by a newer acquisition of the same owner) nothing is removed and 0 is
-- returned.  With KEYS[4] it returns {removed, now_ms, {holder fields...}}: the
-- environment's locks left afterwards, as holders.lua lists them (the dispatcher's next
-- decision needs them: one round trip, not two); the dead resource keys of the lease are
-- deleted on the way.

local function result(removed)
  if #KEYS < 4 then
    return removed
  end
  local now = now_ms()
  prune_slots(KEYS[2], now)
  local out = {}
  collect_all(out, KEYS[1], KEYS[2], KEYS[4], ARGV[3], ARGV[4], now, nil)
  return {removed, fmt(now), out}
end

local owner = ARGV[1]
local fence = redis.call('HGET', KEYS[3], 'fence')
if fence and fence ~= ARGV[2] then
  return result(0)
end

local removed = 0
if redis.call('GET', KEYS[1]) == owner then
  redis.call('DEL', KEYS[1])
  removed = removed + 1
end
removed = removed + redis.call('ZREM', KEYS[2], owner)
removed = removed + redis.call('DEL', KEYS[3])
return result(removed)
