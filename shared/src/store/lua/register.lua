-- KEYS: conn, conns, user, online, presence, webhooks, connection index, seen, active,
-- history stream, history meta, then presence.online's subs keys.
-- ARGV: conn_id, user_id, role, endpoint, connected_at, presence_ttl_ms, conn stem, offline_ttl_ms,
-- history size, ttl_ms, max event bytes, fresh epoch, index stem, the presence.online envelope
-- (without position), its id.
-- The user joins the tenant's `seen` registry (who may have an offline
-- queue); users not seen within the offline TTL leave it.
-- Returns {user_connections, came_online, tenant_was_empty, resolution or {}}:
-- when the user came online, who must hear `presence.online`, then the
-- offset and epoch it was recorded at.
local now = now_ms()
redis.call('ZADD', KEYS[8], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. (now - tonumber(ARGV[8])))
redis.call('ZADD', KEYS[9], now, ARGV[1])
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'role', ARGV[3], 'endpoint', ARGV[4], 'connected_at', ARGV[5])
local tenant_was_empty = redis.call('SCARD', KEYS[2]) == 0 and 1 or 0
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
-- The presence key's old value tells whether the user was online.
local came_online = redis.call('SET', KEYS[5], ARGV[5], 'PX', ARGV[6], 'GET') and 0 or 1
redis.call('HSET', KEYS[7], ARGV[1], ARGV[2] .. ' ' .. ARGV[4])
local presence = {}
if came_online == 1 then
    presence = resolve('tenant', KEYS[2], KEYS[6], KEYS[7], {unpack(KEYS, 12)}, ARGV[7], '')
    local p = history_append(KEYS[10], KEYS[11], '', {unpack(ARGV, 9, 13)},
        ARGV[14], 'presence.online', 'tenant', '', '', ARGV[15], '')
    presence[#presence + 1] = p[1]
    presence[#presence + 1] = p[2]
end
return {redis.call('SCARD', KEYS[3]), came_online, tenant_was_empty, presence}
