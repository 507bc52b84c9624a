-- KEYS: active, conns, connection index. ARGV: idle_ms, max, conn stem.
-- Returns {id, 'user endpoint', last_active_ms, ...}: connections with no
-- client frame for idle_ms, oldest first. Connections recorded before the active set
-- existed join it now; ids with no record left leave it.
local now = now_ms()
if redis.call('ZCARD', KEYS[1]) < redis.call('SCARD', KEYS[2]) then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('ZADD', KEYS[1], 'NX', now, id) end
end
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #found, 2 do
    local id, at = found[i], found[i + 1]
    local rec = redis.call('HGET', KEYS[3], id)
    if not rec then
        local h = redis.call('HMGET', ARGV[3] .. id, 'user_id', 'endpoint')
        if h[1] then rec = h[1] .. ' ' .. h[2] end
    end
    if rec then
        out[#out + 1] = id
        out[#out + 1] = rec
        out[#out + 1] = at
    else
        redis.call('ZREM', KEYS[1], id)
    end
end
return out
