-- KEYS: history stream, history meta, the tenant's rate-limit counter for this second.
-- ARGV: [1] rate limit ('' = none), [2..12] history_read's q, [13] the
-- number of topics, the topics, then every event type.
-- Returns -3 over the rate limit (nothing read), else history_read's answer.
if ARGV[1] ~= '' and not within_limit(KEYS[3], ARGV[1]) then return -3 end
local n = tonumber(ARGV[13])
local read = history_read(KEYS[1], KEYS[2], {unpack(ARGV, 2, 12)}, {unpack(ARGV, 14, 13 + n)}, {unpack(ARGV, 14 + n)})
if ARGV[1] ~= '' then charge(KEYS[3], read) end
return read
