-- One page of the name index for registrar/redisstore's List; names.lua
-- comes before it.
-- KEYS[1] router; ARGV[1] chunk key prefix, ARGV[2] cursor ("" = start),
-- ARGV[3] limit.
-- Returns {more, chunk, chunk, ...}: the chunk holding the cursor and the
-- ones after it, until they hold limit names past the first chunk or 64
-- chunks were read; more is 1 when chunks were left unread.
local start = '-'
if ARGV[2] ~= '' then
  local m = nameChunk(KEYS[1], ARGV[2])
  if m then start = '[' .. m end
end
local ms = redis.call('ZRANGE', KEYS[1], start, '+', 'BYLEX', 'LIMIT', 0, 65)
local out = {0}
local n, limit = 0, tonumber(ARGV[3])
for i, m in ipairs(ms) do
  if i == 65 or (i > 1 and n >= limit) then
    out[1] = 1
    break
  end
  local c = redis.call('GET', chunkKey(ARGV[1], m))
  if c then
    out[#out + 1] = c
    if i > 1 then
      local _, k = string.gsub(c, '\n', '')
      n = n + k - 1
    end
  end
end
return out
