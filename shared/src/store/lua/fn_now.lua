-- `now_ms()`: the Redis server's clock, so TTLs (relative, on that clock)
-- and the scores compared with them agree whichever function wrote them.
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
