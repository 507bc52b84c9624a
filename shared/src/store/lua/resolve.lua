-- KEYS: [1] target (conns set, user set or conn hash), [2] webhooks hash,
-- [3] the tenant's rate-limit counter for this second, [4] the connection
-- index, [5] history stream, [6] history meta, [7] the event's `recorded`
-- key, [8..] the event's subs keys.
-- ARGV: [1] mode (tenant | user | connection), [2] conn stem, [3] target id
-- (user or connection), [4] limit ('' = none), [5] record ('' = resolve
-- only, 'once' = a queued job's event, recorded once, else 'yes'),
-- [6..10] history size, ttl_ms, max event bytes, fresh epoch, index stem,
-- [11] the envelope without its position, [12] its event type, [13] its id;
-- for a synchronous publish to a user ('yes', mode user), [14..18] the
-- user's offline list, seen, offline index, offline bytes and offline
-- total keys, [19..22] offline cap, ttl_ms, max queues, max bytes.
-- Returns `resolve`'s answer, then offset and epoch when recording, then
-- (given the offline keys) the offline queue's answer (0: the user is
-- connected, not queued); {-1} when over the limit (nothing resolved or
-- recorded); {-2, refusal} when the user has no connection and their
-- queue refused the event for the publisher's doing (-2 to -4 of
-- `offline_push`): nothing queued, recorded or resolved.
if ARGV[4] ~= '' and not within_limit(KEYS[3], ARGV[4]) then return {-1} end
local out = resolve(ARGV[1], KEYS[1], KEYS[2], KEYS[4], {unpack(KEYS, 8)}, ARGV[2], ARGV[3])
-- A user nobody of whom is connected: queued before it is recorded (with
-- the position it is about to get), so a refusal leaves no trace.
local queued = 0
if ARGV[14] and out[1] == 0 then
    local e = history_epoch(KEYS[5], KEYS[6], ARGV[9], false)
    local text = string.sub(ARGV[11], 1, -2) .. string.format(',"offset":%d,"epoch":"%s"}', e[2] + 1, e[1])
    queued = offline_push({unpack(ARGV, 14, 18)}, ARGV[3], text, unpack(ARGV, 19, 22))
    if queued < -1 then return {-2, queued} end
end
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
if ARGV[14] then out[#out + 1] = queued end
return out
