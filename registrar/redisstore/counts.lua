-- The binding counts of registrar/redisstore (redisstore.go describes
-- them). Prepended to the scripts that change them.

-- applyCounts applies one write's change to the counts hash and returns
-- the index of the first argument after its own: a[i] = n, then n pairs
-- (expiry second, member in the prior expiry set) for the bindings the
-- write replaces, then m and m expiry seconds for the bindings it stores.
-- A replaced binding found in the prior set (written by an earlier
-- version) was counted there: it leaves that set instead of a count.
local function applyCounts(prior, counts, a, i)
  local d = {}
  local drain = redis.call('EXISTS', prior) == 1
  local n = tonumber(a[i])
  for j = i + 1, i + 2 * n, 2 do
    if not (drain and redis.call('ZREM', prior, a[j + 1]) == 1) then
      d[a[j]] = (d[a[j]] or 0) - 1
    end
  end
  i = i + 2 * n + 1
  n = tonumber(a[i])
  for j = i + 1, i + n do d[a[j]] = (d[a[j]] or 0) + 1 end
  for s, v in pairs(d) do
    if v ~= 0 and redis.call('HINCRBY', counts, s, v) == 0 then
      redis.call('HDEL', counts, s)
    end
  end
  return i + n + 1
end
