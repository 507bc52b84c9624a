-- `subscribe(first_subs_key, first_topic_arg)`, shared by the scripts that
-- subscribe: KEYS[1] conn, KEYS[2] connsubs, KEYS[3] active, a subs key per
-- topic from KEYS[first_subs_key]; ARGV[1] conn_id, ARGV[2] limit, the
-- topics from ARGV[first_topic_arg] to the end.
-- Returns -1 for an unknown connection, -2 over the limit, else the
-- connection's topics. The connection counts as active (a frame from its client).
local function subscribe(ks, as)
    if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
    redis.call('ZADD', KEYS[3], 'XX', now_ms(), ARGV[1])
    local n = #ARGV - as + 1
    local limit = tonumber(ARGV[2])
    local held = redis.call('SCARD', KEYS[2])
    if held + n > limit then
        -- Only the topics not held yet count against the limit.
        local new = 0
        for i = 0, n - 1 do
            if redis.call('SISMEMBER', KEYS[2], ARGV[as + i]) == 0 then new = new + 1 end
        end
        if held + new > limit then return -2 end
    end
    if n > 0 then redis.call('SADD', KEYS[2], unpack(ARGV, as)) end
    for i = 0, n - 1 do
        redis.call('SADD', KEYS[ks + i], ARGV[1])
    end
    if held > 0 then return redis.call('SMEMBERS', KEYS[2]) end
    -- A first subscribe: the topics are the ones just given.
    local topics, seen = {}, {}
    for i = as, #ARGV do
        if not seen[ARGV[i]] then
            seen[ARGV[i]] = true
            topics[#topics + 1] = ARGV[i]
        end
    end
    return topics
end
