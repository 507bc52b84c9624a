-- KEYS: [1] target (conns set, user set or conn hash), [2] webhooks hash,
-- [3] the tenant's rate-limit counter for this second, [4] the connection
-- index, [5] history stream, [6] history meta, [7] the event's `recorded`
-- key, [8..] the event's subs keys.
-- ARGV: [1] mode (tenant | user | connection), [2] conn stem, [3] target id
-- (user or connection), [4] limit ('' = none), [5] record ('' = resolve
-- only, 'once' = a queued job's event, recorded once, else 'yes'),
-- [6..10] history size, ttl_ms, max event bytes, fresh epoch, index stem,
-- [11] the envelope without its position, [12] its event type, [13] its id.
-- Returns `resolve`'s answer, then offset and epoch when recording, or {-1}
-- when over the limit (nothing resolved or recorded).
if ARGV[4] ~= '' and not within_limit(KEYS[3], ARGV[4]) then return {-1} end
local out = resolve(ARGV[1], KEYS[1], KEYS[2], KEYS[4], {unpack(KEYS, 8)}, ARGV[2], ARGV[3])
if ARGV[5] ~= '' then
    local user = ''
    if ARGV[1] == 'user' then
        user = ARGV[3]
    elseif ARGV[1] == 'connection' then
        user = redis.call('HGET', KEYS[1], 'user_id') or ''
    end
    local once = ARGV[5] == 'once' and KEYS[7] or ''
    local conn = ARGV[1] == 'connection' and ARGV[3] or ''
    local p = history_append(KEYS[5], KEYS[6], once, {unpack(ARGV, 6, 10)},
        ARGV[11], ARGV[12], ARGV[1], ARGV[3], user, ARGV[13], conn)
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
end
return out
