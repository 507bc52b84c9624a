-- KEYS: offline list, seen, offline index, offline bytes, offline total.
-- ARGV: user, message, cap, ttl_ms, max queues, max bytes.
-- Returns `offline_push`'s answer.
return offline_push({unpack(KEYS, 1, 5)}, unpack(ARGV, 1, 6))
