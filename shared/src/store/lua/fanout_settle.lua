-- Settles a queued fan-out job's claims after its posts.
-- KEYS: the job's claims HASH, its done marker, the tenant's live claim hashes ZSET.
-- ARGV: ttl_ms, finished (1/0), how many sent members follow, sent members..., released members...
-- finished: the job is done; its claims go, and a marker answers any late
-- duplicate of it "sent already" until the queue's retries are over.
-- Otherwise the sent ones are marked sent (0) and the released ones freed.
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
local sent = tonumber(ARGV[3])
for i = 4, 3 + sent do redis.call('HSET', KEYS[1], ARGV[i], 0) end
for i = 4 + sent, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return 0
