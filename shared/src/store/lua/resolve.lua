-- KEYS: [1] target (conns set, user set or conn hash), [2] webhooks hash,
-- [3] the tenant's rate-limit counter for this second, [4] the connection
-- index, [5..] the event's subs keys.
-- ARGV: mode (tenant | user | connection), conn stem, connection id, limit ('' = none).
-- Returns `resolve`'s answer, or {-1} when over the limit (nothing resolved).
if ARGV[4] ~= '' and not within_limit(KEYS[3], ARGV[4]) then return {-1} end
return resolve(ARGV[1], KEYS[1], KEYS[2], KEYS[4], {unpack(KEYS, 5)}, ARGV[2], ARGV[3])
