-- KEYS: conns, online, webhooks, connection index, active, history stream, history meta,
-- then presence.offline's subs keys.
-- ARGV: conn stem, connsubs stem, user stem, presence stem, subs stem,
-- connch stem, channel subscribers stem,
-- history size, ttl_ms, max event bytes, fresh epoch, index stem, the presence.offline
-- envelope in three parts (head .. event id .. mid .. user id .. tail),
-- then connection id and event id pairs.
-- Returns {{user_id, connections_left, offset, epoch, envelope, ...}, resolution or {}}:
-- five for each id that was registered (a user who went offline has their
-- presence.offline recorded: its place and its envelope; else 0, '', ''),
-- and when a user went offline, who must hear `presence.offline`.
local out = {}
local offline = false
local h = {unpack(ARGV, 8, 12)}
for i = 16, #ARGV, 2 do
    local id = ARGV[i]
    local conn_key, subs_key = ARGV[1] .. id, ARGV[2] .. id
    local user = redis.call('HGET', conn_key, 'user_id')
    redis.call('SREM', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    for _, topic in ipairs(redis.call('SMEMBERS', subs_key)) do
        redis.call('SREM', ARGV[5] .. topic, id)
    end
    local connch = ARGV[6] .. id
    for _, channel in ipairs(redis.call('HKEYS', connch)) do
        redis.call('HDEL', ARGV[7] .. channel, id)
    end
    redis.call('DEL', conn_key, subs_key, connch)
    if user then
        local user_key = ARGV[3] .. user
        redis.call('SREM', user_key, id)
        local left = redis.call('SCARD', user_key)
        local p, text = {0, ''}, ''
        if left == 0 then
            redis.call('SREM', KEYS[2], user)
            redis.call('DEL', ARGV[4] .. user)
            offline = true
            text = ARGV[13] .. ARGV[i + 1] .. ARGV[14] .. user .. ARGV[15]
            p = history_append(KEYS[6], KEYS[7], '', h, text, 'presence.offline', 'tenant', '', '', ARGV[i + 1], '')
        end
        out[#out + 1] = user
        out[#out + 1] = left
        out[#out + 1] = p[1]
        out[#out + 1] = p[2]
        out[#out + 1] = text
    end
end
local presence = {}
if offline then
    presence = resolve('tenant', KEYS[1], KEYS[3], KEYS[4], {unpack(KEYS, 8)}, ARGV[1], '')
end
return {out, presence}
