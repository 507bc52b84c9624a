-- KEYS: history stream, history meta. ARGV: fresh epoch, after, max, ttl_ms.
-- Returns history_after's answer.
return history_after(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4])
