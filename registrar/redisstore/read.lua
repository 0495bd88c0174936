-- Reads one AOR for registrar/redisstore (see readScript).
-- KEYS[1] AOR key; KEYS[2] the AOR's key in the earlier layout.
-- Returns {value}, {"L:" .. v, b} from the earlier layout, or {} (absent).
local cur = redis.call('GET', KEYS[1])
if cur then return {cur} end
local old = redis.call('HMGET', KEYS[2], 'v', 'b')
if old[1] then return {'L:' .. old[1], old[2]} end
return {}
