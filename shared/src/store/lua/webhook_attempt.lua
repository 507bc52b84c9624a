-- KEYS: log stream, health hash, stats bucket.
-- ARGV: webhook_id, delivery_id, entry, success (1/0), now_ms, threshold, cooldown_ms, log maxlen, health ttl_ms,
-- oldest entry id (ms) to keep, first attempt (1/0), dead (1/0), duration_ms, stats ttl_ms.
-- Returns {failures, failing_since or '', paused_until or ''}.
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[8], '*', 'w', ARGV[1], 'd', ARGV[2], 'e', ARGV[3])
-- By age too (entry ids are the time they were written): a quiet
-- tenant's log does not keep last year's attempts.
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[10])
-- The stats: counters of this 5-minute bucket, never a scan of the log.
redis.call('HINCRBY', KEYS[3], 'a', 1)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[3], 's', 1) end
if ARGV[11] == '1' then redis.call('HINCRBY', KEYS[3], 'n', 1) end
if ARGV[12] == '1' then redis.call('HINCRBY', KEYS[3], 'd', 1) end
redis.call('HINCRBY', KEYS[3], 'l', ARGV[13])
redis.call('PEXPIRE', KEYS[3], ARGV[14])
if ARGV[4] == '1' then
    redis.call('DEL', KEYS[2])
    return {0, '', ''}
end
local n = redis.call('HINCRBY', KEYS[2], 'failures', 1)
redis.call('HSETNX', KEYS[2], 'since', ARGV[5])
local threshold = tonumber(ARGV[6])
if threshold > 0 and n >= threshold then
    redis.call('HSET', KEYS[2], 'paused_until', tonumber(ARGV[5]) + tonumber(ARGV[7]))
end
redis.call('PEXPIRE', KEYS[2], ARGV[9])
local h = redis.call('HMGET', KEYS[2], 'since', 'paused_until')
return {n, h[1] or '', h[2] or ''}
