-- holders.lua: list every live lock of an environment (no SCAN).
--
-- KEYS[1]     exclusive environment lock      {prefix}:lock:{env}:env
-- KEYS[2]     shared slots zset               {prefix}:lock:{env}:slots
-- KEYS[3]     known resources set             {prefix}:lockidx:{env}
-- ARGV[1]     resource key prefix             {prefix}:lock:{env}:res:
-- ARGV[2]     metadata key prefix             {prefix}:lockmeta:{env}:
--
-- Returns {now_ms, {holder fields...}} (see _common.lua).  Expired slots are pruned.

local now = now_ms()
prune_slots(KEYS[2], now)
local out = {}
collect_all(out, KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now, nil)
return {fmt(now), out}
