-- Per-AOR compare-and-set for registrar/redisstore (see casScript);
-- names.lua and counts.lua come before it.
-- KEYS[1] AOR key (string: 8-byte version .. encoded list)
-- KEYS[2] the AOR's key in the earlier layout (hash v, b), read when
--         KEYS[1] is absent and deleted on the first write
-- KEYS[3..9] (one-server deployments only) the prior expiry set, the
--         binding counts, the earliest expiry set, the name router, the
--         chunk id counter, the name count and the prior name set
-- ARGV[1] expected version ("" = absent; "L:" .. v = earlier layout)
-- ARGV[2] new value ("" = delete: no binding left)
-- ARGV[3] TTL ms
-- ARGV[4] "1" when KEYS[3..9] are given, else "0"
-- ARGV[5] the AOR
-- ARGV[6] the name chunk key prefix ("": leave the name index alone)
-- ARGV[7..] applyCounts' arguments, then n and n members of the earliest
--         expiry set to remove.
local cur = redis.call('GET', KEYS[1])
local v = ''
local old
if cur then
  v = string.sub(cur, 1, 8)
else
  old = redis.call('HMGET', KEYS[2], 'v', 'b')
  if old[1] then v = 'L:' .. old[1] end
end
if v ~= ARGV[1] then
  if cur then return {0, cur} end
  if old[1] then return {0, v, old[2]} end
  return {0}
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if old and old[1] then redis.call('DEL', KEYS[2]) end
if ARGV[4] == '1' then
  local i = applyCounts(KEYS[3], KEYS[4], ARGV, 7)
  local n = tonumber(ARGV[i])
  if n > 0 then redis.call('ZREM', KEYS[5], unpack(ARGV, i + 1, i + n)) end
  if ARGV[6] == '' then
  elseif ARGV[2] == '' then
    if nameDel(KEYS[6], ARGV[6], ARGV[5]) == 1 then redis.call('DECR', KEYS[8]) end
    redis.call('ZREM', KEYS[9], ARGV[5])
  elseif not cur then
    if nameAdd(KEYS[6], KEYS[7], ARGV[6], ARGV[5]) == 1 then redis.call('INCR', KEYS[8]) end
  end
end
return {1}
