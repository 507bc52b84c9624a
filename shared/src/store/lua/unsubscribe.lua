-- KEYS: conn, connsubs, active, subs key per topic. ARGV: conn_id, unused, topics.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('ZADD', KEYS[3], 'XX', now_ms(), ARGV[1])
for i = 3, #ARGV do
    redis.call('SREM', KEYS[2], ARGV[i])
    redis.call('SREM', KEYS[i + 1], ARGV[1])
end
return redis.call('SMEMBERS', KEYS[2])
