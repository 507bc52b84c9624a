-- `offline_push(k, user, msg, cap, ttl_ms, max_queues, max_bytes)` with
-- k = {offline list, seen, offline index, offline bytes, offline total}:
-- appends `msg` to the user's offline queue. Returns the length, or -1
-- unknown user, -2 queues full, -3 bytes full, -4 message bigger than the
-- budget (nothing queued).
local function offline_push(k, user, msg, cap, ttl, max_queues, max_bytes)
    cap, ttl, max_queues, max_bytes = tonumber(cap), tonumber(ttl), tonumber(max_queues), tonumber(max_bytes)
    local now = now_ms()
    -- Queues that expired give their bytes back (a bounded number a call).
    for _, u in ipairs(redis.call('ZRANGEBYSCORE', k[3], '-inf', now, 'LIMIT', 0, 100)) do
        release(k[3], k[4], k[5], u)
    end
    local seen = redis.call('ZSCORE', k[2], user)
    if not seen or tonumber(seen) < now - ttl then return -1 end
    if #msg > max_bytes then return -4 end
    local len = redis.call('LLEN', k[1])
    if len == 0 then
        release(k[3], k[4], k[5], user)
        if redis.call('ZCARD', k[3]) >= max_queues then return -2 end
    elseif not redis.call('ZSCORE', k[3], user) then
        -- A list the budget does not know (written before it existed):
        -- counted from now on, like any other.
        if redis.call('ZCARD', k[3]) >= max_queues then return -2 end
        local held = 0
        for _, m in ipairs(redis.call('LRANGE', k[1], 0, -1)) do held = held + #m end
        redis.call('HSET', k[4], user, held)
        redis.call('INCRBY', k[5], held)
    end
    -- The cap drops the oldest: their bytes come back.
    local freed = 0
    if len + 1 > cap then
        for _, m in ipairs(redis.call('LRANGE', k[1], 0, len - cap)) do freed = freed + #m end
    end
    local total = tonumber(redis.call('GET', k[5]) or '0')
    if total + #msg - freed > max_bytes then return -3 end
    redis.call('RPUSH', k[1], msg)
    redis.call('LTRIM', k[1], -cap, -1)
    redis.call('PEXPIRE', k[1], ttl)
    redis.call('ZADD', k[3], now + ttl, user)
    redis.call('HINCRBY', k[4], user, #msg - freed)
    redis.call('INCRBY', k[5], #msg - freed)
    -- The bookkeeping lives as long as the newest queue.
    for i = 3, 5 do redis.call('PEXPIRE', k[i], ttl) end
    return redis.call('LLEN', k[1])
end
