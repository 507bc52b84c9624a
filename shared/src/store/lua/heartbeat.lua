-- KEYS: presence, online, user, active. ARGV: user_id, now_ms, ttl_ms, connection id.
if redis.call('SCARD', KEYS[3]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then
    redis.call('ZADD', KEYS[4], 'XX', now_ms(), ARGV[4])
end
return 1
