-- The AOR name index of registrar/redisstore (list.go describes it).
-- Prepended to the scripts that change or read it.
--
-- router: sorted set, all scores 0, members "<lower> NUL <id>": chunk <id>
--         holds the AORs from <lower> (the first chunk's lower is "") up to
--         the next member's lower.
-- chunk:  string "\n" .. aor .. "\n" .. aor .. "\n", unordered between
--         splits; key cprefix .. id.

-- nameLess orders by bytes. Lua's < on strings uses strcoll, which
-- follows redis-server's locale.
local function nameLess(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- nameChunk returns the router member of the chunk that holds aor, or nil.
local function nameChunk(router, aor)
  return redis.call('ZRANGE', router, '(' .. aor .. '\1', '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
end

local function chunkKey(cprefix, m)
  return cprefix .. string.match(m, '%z(%d+)$')
end

-- nameAdd adds aor; 1 if it was not there. A chunk over 8 KiB is sorted
-- and split in two.
local function nameAdd(router, idkey, cprefix, aor)
  local m = nameChunk(router, aor)
  local ck, c
  if m then
    ck = chunkKey(cprefix, m)
    c = redis.call('GET', ck) or '\n'
    if string.find(c, '\n' .. aor .. '\n', 1, true) then return 0 end
    c = c .. aor .. '\n'
  else
    local id = redis.call('INCR', idkey)
    redis.call('ZADD', router, 0, '\0' .. id)
    ck = cprefix .. id
    c = '\n' .. aor .. '\n'
  end
  if #c > 8192 then
    local names = {}
    for n in string.gmatch(c, '[^\n]+') do names[#names + 1] = n end
    if #names >= 2 then
      table.sort(names, nameLess)
      local h = math.floor(#names / 2)
      local id = redis.call('INCR', idkey)
      redis.call('SET', cprefix .. id, '\n' .. table.concat(names, '\n', h + 1) .. '\n')
      redis.call('ZADD', router, 0, names[h + 1] .. '\0' .. id)
      c = '\n' .. table.concat(names, '\n', 1, h) .. '\n'
    end
  end
  redis.call('SET', ck, c)
  return 1
end

-- nameDel removes aor; 1 if it was there. An emptied chunk goes.
local function nameDel(router, cprefix, aor)
  local m = nameChunk(router, aor)
  if not m then return 0 end
  local ck = chunkKey(cprefix, m)
  local c = redis.call('GET', ck)
  if not c then return 0 end
  local i = string.find(c, '\n' .. aor .. '\n', 1, true)
  if not i then return 0 end
  c = string.sub(c, 1, i) .. string.sub(c, i + #aor + 2)
  if c == '\n' then
    redis.call('DEL', ck)
    redis.call('ZREM', router, m)
  else
    redis.call('SET', ck, c)
  end
  return 1
end
