-- Name index operations of registrar/redisstore outside the CAS script
-- (Cluster, listing repairs, moving the prior name set); names.lua comes
-- before it. All keys share one hash slot.
-- KEYS[1] router, KEYS[2] chunk id counter, KEYS[3] name count,
-- KEYS[4] the prior name set (sorted set of AORs)
-- ARGV[1] "add", "del" or "move"; ARGV[2] chunk key prefix;
-- ARGV[3] the AOR ("add", "del") or how many to move ("move").
-- "move" returns how many names it took from the prior set.
local op = ARGV[1]
if op == 'add' then
  if nameAdd(KEYS[1], KEYS[2], ARGV[2], ARGV[3]) == 1 then redis.call('INCR', KEYS[3]) end
  return 1
elseif op == 'del' then
  if nameDel(KEYS[1], ARGV[2], ARGV[3]) == 1 then redis.call('DECR', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[3])
  return 1
end
local ms = redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)
for _, m in ipairs(ms) do
  if nameAdd(KEYS[1], KEYS[2], ARGV[2], m) == 1 then redis.call('INCR', KEYS[3]) end
end
if #ms > 0 then redis.call('ZREM', KEYS[4], unpack(ms)) end
return #ms
