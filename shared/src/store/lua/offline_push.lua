-- KEYS: offline list, seen, offline index, offline bytes, offline total.
-- ARGV: user, message, cap, ttl_ms, max queues, max bytes.
-- Returns the length, or -1 unknown user, -2 queues full, -3 bytes full,
-- -4 message bigger than the budget.
local user, msg = ARGV[1], ARGV[2]
local cap, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_queues, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
-- Queues that expired give their bytes back (a bounded number a call).
for _, u in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)) do
    release(KEYS[3], KEYS[4], KEYS[5], u)
end
local seen = redis.call('ZSCORE', KEYS[2], user)
if not seen or tonumber(seen) < now - ttl then return -1 end
if #msg > max_bytes then return -4 end
local len = redis.call('LLEN', KEYS[1])
if len == 0 then
    release(KEYS[3], KEYS[4], KEYS[5], user)
    if redis.call('ZCARD', KEYS[3]) >= max_queues then return -2 end
elseif not redis.call('ZSCORE', KEYS[3], user) then
    -- A list the budget does not know (written before it existed):
    -- counted from now on, like any other.
    if redis.call('ZCARD', KEYS[3]) >= max_queues then return -2 end
    local held = 0
    for _, m in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do held = held + #m end
    redis.call('HSET', KEYS[4], user, held)
    redis.call('INCRBY', KEYS[5], held)
end
-- The cap drops the oldest: their bytes come back.
local freed = 0
if len + 1 > cap then
    for _, m in ipairs(redis.call('LRANGE', KEYS[1], 0, len - cap)) do freed = freed + #m end
end
local total = tonumber(redis.call('GET', KEYS[5]) or '0')
if total + #msg - freed > max_bytes then return -3 end
redis.call('RPUSH', KEYS[1], msg)
redis.call('LTRIM', KEYS[1], -cap, -1)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], now + ttl, user)
redis.call('HINCRBY', KEYS[4], user, #msg - freed)
redis.call('INCRBY', KEYS[5], #msg - freed)
-- The bookkeeping lives as long as the newest queue.
for i = 3, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
return redis.call('LLEN', KEYS[1])
