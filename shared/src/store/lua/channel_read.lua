-- KEYS: the channel's stream, its meta, the tenant's rate-limit counter for this second.
-- ARGV: [1] rate limit ('' = none), [2..13] history_read's q (with the
-- meta TTL of an epoch the read starts), [14..] the topics.
-- Returns -3 over the rate limit (nothing read), else channel_read's answer.
if ARGV[1] ~= '' and not within_limit(KEYS[3], ARGV[1]) then return -3 end
local read = channel_read(KEYS[1], KEYS[2], {unpack(ARGV, 2, 13)}, {unpack(ARGV, 14)})
if ARGV[1] ~= '' then charge(KEYS[3], read) end
return read
