-- Per-AOR compare-and-set for registrar/redisstore (see casScript).
-- KEYS[1] AOR key; ARGV[1] expected version ("" = absent); ARGV[2] new
-- version; ARGV[3] JSON binding list; ARGV[4] TTL ms ("0" = delete).
local cur = redis.call('HMGET', KEYS[1], 'v', 'b')
local v = cur[1]
if not v then v = '' end
if v ~= ARGV[1] then
  return {0, cur[1], cur[2]}
end
if ARGV[4] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'b', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {1}
