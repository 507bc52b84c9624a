-- KEYS: conn, connsubs, active, subs key per topic. ARGV: conn_id, limit, topics.
-- Returns -1 for an unknown connection, -2 over the limit, else the topics.
-- The connection counts as active (a frame from its client).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('ZADD', KEYS[3], 'XX', now_ms(), ARGV[1])
local new = 0
for i = 3, #ARGV do
    if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then new = new + 1 end
end
if redis.call('SCARD', KEYS[2]) + new > tonumber(ARGV[2]) then return -2 end
for i = 3, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
    redis.call('SADD', KEYS[i + 1], ARGV[1])
end
return redis.call('SMEMBERS', KEYS[2])
