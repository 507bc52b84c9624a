-- A publish to a channel: rate limit, the channel's subscribers whose
-- filter matches, the tenant's webhooks and the channel's history, in one
-- round trip.
-- KEYS: [1] the channel's subscribers hash, [2] webhooks hash, [3] the
-- tenant's rate-limit counter for this second, [4] the connection index,
-- [5] the channel's stream, [6] its meta, [7] the event's `recorded` key,
-- [8] the tenant's channel bytes hash, [9] its channel expiry set.
-- ARGV: [1] conn stem, [2] limit ('' = none), [3] record ('' = resolve
-- only, 'once' = a queued job's event, else 'yes'), [4..9] size, ttl_ms,
-- meta ttl_ms, max event bytes, the tenant's channel history bytes, fresh
-- epoch, [10] the envelope without its position, [11] its event type,
-- [12] its id, [13] the channel, [14..] the event's topics.
-- Returns `resolve`'s answer, then offset and epoch when recording; {-1}
-- when over the limit (nothing resolved or recorded).
if ARGV[2] ~= '' and not within_limit(KEYS[3], ARGV[2]) then return {-1} end
local out = resolve('channel', KEYS[1], KEYS[2], KEYS[4], {unpack(ARGV, 14)}, ARGV[1], '')
if ARGV[3] ~= '' then
    local once = ARGV[3] == 'once' and KEYS[7] or ''
    local p = channel_append(KEYS[5], KEYS[6], once, {unpack(ARGV, 4, 9)}, ARGV[10], ARGV[11], ARGV[12],
        KEYS[8], KEYS[9], ARGV[13])
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
end
return out
