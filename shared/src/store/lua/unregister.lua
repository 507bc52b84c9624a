-- KEYS: conns, online, webhooks, connection index, active, then presence.offline's subs keys.
-- ARGV: conn stem, connsubs stem, user stem, presence stem, subs stem, then connection ids.
-- Returns {{user_id, connections_left, ...}, resolution or {}}: a pair for
-- each id that was registered, and when a user went offline, who must hear
-- `presence.offline`.
local out = {}
local offline = false
for i = 6, #ARGV do
    local id = ARGV[i]
    local conn_key, subs_key = ARGV[1] .. id, ARGV[2] .. id
    local user = redis.call('HGET', conn_key, 'user_id')
    redis.call('SREM', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    for _, topic in ipairs(redis.call('SMEMBERS', subs_key)) do
        redis.call('SREM', ARGV[5] .. topic, id)
    end
    redis.call('DEL', conn_key, subs_key)
    if user then
        local user_key = ARGV[3] .. user
        redis.call('SREM', user_key, id)
        local left = redis.call('SCARD', user_key)
        if left == 0 then
            redis.call('SREM', KEYS[2], user)
            redis.call('DEL', ARGV[4] .. user)
            offline = true
        end
        out[#out + 1] = user
        out[#out + 1] = left
    end
end
local presence = {}
if offline then
    presence = resolve('tenant', KEYS[1], KEYS[3], KEYS[4], {unpack(KEYS, 6)}, ARGV[1], '')
end
return {out, presence}
