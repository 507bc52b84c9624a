-- KEYS: conn, connch, active, the channel's subscribers hash. ARGV: conn id, channel.
-- Returns -1 for an unknown connection, else 1 when it followed the channel, 0 when not.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('ZADD', KEYS[3], 'XX', now_ms(), ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return redis.call('HDEL', KEYS[4], ARGV[1])
