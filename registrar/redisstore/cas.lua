-- Per-AOR compare-and-set for registrar/redisstore (see casScript).
-- KEYS[1] AOR key (string: 8-byte version .. encoded list)
-- KEYS[2] the AOR's key in the earlier layout (hash v, b), read when
--         KEYS[1] is absent and deleted on the first write
-- KEYS[3..5] (one-server deployments only) the expiry index, the AOR name
--         index and the earlier layout's expiry index
-- ARGV[1] expected version ("" = absent; "L:" .. v = earlier layout)
-- ARGV[2] new value ("" = delete: no binding left)
-- ARGV[3] TTL ms
-- ARGV[4] "1" when KEYS[3..5] are given, else "0"
-- ARGV[5] the AOR; then: n, n expiry members to remove; n, n score/member
-- pairs to add; n, n earlier-layout expiry members to remove.
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
  local i = 6
  local n = tonumber(ARGV[i])
  if n > 0 then redis.call('ZREM', KEYS[3], unpack(ARGV, i + 1, i + n)) end
  i = i + n + 1
  n = tonumber(ARGV[i])
  if n > 0 then redis.call('ZADD', KEYS[3], unpack(ARGV, i + 1, i + 2 * n)) end
  i = i + 2 * n + 1
  n = tonumber(ARGV[i])
  if n > 0 then redis.call('ZREM', KEYS[5], unpack(ARGV, i + 1, i + n)) end
  if ARGV[2] == '' then
    redis.call('ZREM', KEYS[4], ARGV[5])
  else
    redis.call('ZADD', KEYS[4], 0, ARGV[5])
  end
end
return {1}
