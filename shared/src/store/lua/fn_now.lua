-- `now_ms()`: the Redis server's clock, so TTLs (relative, on that clock)
-- and the scores compared with them agree whichever function wrote them.
-- Read once per script run: every step of one script is the same moment,
-- and each `redis.call` from Lua costs Redis more than the command itself.
local now_cached
local function now_ms()
    if not now_cached then
        local t = redis.call('TIME')
        now_cached = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return now_cached
end
