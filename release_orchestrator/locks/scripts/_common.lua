-- _common.lua: helpers prepended to every lock script; it uses no KEYS/ARGV and returns nothing.
--
-- Holders are described as 6 string fields appended to a flat list:
--   scope ('environment' | 'slot' | 'resource'), resource ('' unless scope is 'resource'),
--   owner, release_id ('' when the owner has no relo metadata), since_ms (acquisition time;
--   the observation time when there is no metadata), ttl_left_ms (-1: no expiry).
-- All times are Redis server time (TIME) in milliseconds.

local unpack = unpack or table.unpack

local function fmt(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A holder: {owner, release_id, since_ms, ttl_left_ms}, from the owner's metadata if any.
local function holder_of(meta_prefix, owner, ttl, now)
  local m = redis.call('HMGET', meta_prefix .. owner, 'release_id', 'since_ms')
  return {owner, m[1] or '', m[2] or fmt(now), ttl}
end

local function emit(out, scope, resource, h)
  out[#out + 1] = scope
  out[#out + 1] = resource or ''
  out[#out + 1] = h[1]
  out[#out + 1] = h[2]
  out[#out + 1] = h[3]
  out[#out + 1] = fmt(h[4])
end

local function describe(out, meta_prefix, scope, resource, owner, ttl, now)
  emit(out, scope, resource, holder_of(meta_prefix, owner, ttl, now))
end

-- Resource locks.  acquire.lua writes a resource key as owner .. SEP .. fencing token, with
-- no TTL of its own (one MSET for all of a lease's resources instead of a SET ... PX each):
-- the lock is live exactly while the owner's metadata hash carries that fencing token, so it
-- ends with the lease (release, expiry, re-acquisition, break) without being touched.  Such a
-- dead key is overwritten by the next acquisition and deleted by the next listing
-- (collect_all).  Owners never contain SEP (no whitespace), so any other value is a lock
-- written by hand: live while its key exists, with the key's own TTL.
local SEP = '\31'

local function relo_value(owner, fence)
  return owner .. SEP .. fence
end

-- The live holder of a resource key whose value is v (not false): nil when v is a relo lock
-- of an ended lease, else {owner, release_id, since_ms, ttl_left_ms}.  cache maps relo
-- values already resolved (a lease's keys share one value: one lookup per lease).
local function resource_holder(v, key, meta_prefix, now, cache)
  local c = cache[v]
  if c ~= nil then
    return c or nil
  end
  local p = string.find(v, SEP, 1, true)
  if not p then
    return holder_of(meta_prefix, v, redis.call('PTTL', key), now)
  end
  local owner = string.sub(v, 1, p - 1)
  local meta = meta_prefix .. owner
  local m = redis.call('HMGET', meta, 'fence', 'release_id', 'since_ms')
  c = false
  if m[1] == string.sub(v, p + 1) then
    c = {owner, m[2] or '', m[3] or fmt(now), redis.call('PTTL', meta)}
  end
  cache[v] = c
  return c or nil
end

-- Drop expired shared slots.
local function prune_slots(slots_key, now)
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', fmt(now))
end

-- Keep the slots key alive exactly as long as its longest-living member.
local function refresh_slots_ttl(slots_key, now)
  local top = redis.call('ZRANGE', slots_key, -1, -1, 'WITHSCORES')
  if top[2] then
    local left = tonumber(top[2]) - now
    if left > 0 then
      redis.call('PEXPIRE', slots_key, fmt(left))
    end
  end
end

-- redis.call(cmd, [key,] items...) in chunks of size items (Lua's unpack has a stack limit).
local function call_chunked(cmd, key, items, size)
  local i = 1
  while i <= #items do
    local j = math.min(i + size - 1, #items)
    if key then
      redis.call(cmd, key, unpack(items, i, j))
    else
      redis.call(cmd, unpack(items, i, j))
    end
    i = j + 1
  end
end

local function sadd_all(key, members)
  call_chunked('SADD', key, members, 500)
end

-- The values of keys (false for a missing one), by MGET in chunks: one command per 500 keys
-- instead of a GET each (a call from Lua costs more than a GET does).
local function mget_all(keys)
  local values = {}
  local i = 1
  while i <= #keys do
    local j = math.min(i + 499, #keys)
    local chunk = redis.call('MGET', unpack(keys, i, j))
    for n = 1, #chunk do
      values[i + n - 1] = chunk[n]
    end
    i = j + 1
  end
  return values
end

-- MSET of a flat key, value, key, value ... list, 500 pairs per call.
local function mset_all(kv)
  call_chunked('MSET', nil, kv, 1000)
end

-- DEL, 500 keys per call.
local function del_all(keys)
  call_chunked('DEL', nil, keys, 500)
end

-- Describe every live lock of an environment not held by skip_owner (nil: all of them), and
-- delete the dead resource keys met on the way.  Returns the owners described (with
-- repetitions).
local function collect_all(out, env_key, slots_key, index_key, res_prefix, meta_prefix, now,
                           skip_owner)
  local owners = {}
  local holder = redis.call('GET', env_key)
  if holder and holder ~= skip_owner then
    describe(out, meta_prefix, 'environment', nil, holder, redis.call('PTTL', env_key), now)
    owners[#owners + 1] = holder
  end
  local slots = redis.call('ZRANGE', slots_key, 0, -1, 'WITHSCORES')
  for i = 1, #slots, 2 do
    if slots[i] ~= skip_owner then
      describe(out, meta_prefix, 'slot', nil, slots[i], tonumber(slots[i + 1]) - now, now)
      owners[#owners + 1] = slots[i]
    end
  end
  local known = redis.call('SMEMBERS', index_key)
  local keys = {}
  for i, resource in ipairs(known) do
    keys[i] = res_prefix .. resource
  end
  local held = mget_all(keys)
  local cache = {}
  local dead = {}
  for i, resource in ipairs(known) do
    if held[i] then
      local h = resource_holder(held[i], keys[i], meta_prefix, now, cache)
      if not h then
        dead[#dead + 1] = keys[i]
      elseif h[1] ~= skip_owner then
        emit(out, 'resource', resource, h)
        owners[#owners + 1] = h[1]
      end
    end
  end
  del_all(dead)
  return owners
end
