-- Claims recipients (connection ids, webhook ids) of one queued fan-out job
-- before it sends to them, so a retried or duplicated job sends to nobody twice.
-- KEYS: the job's claims HASH (member -> lease expiry ms, or 0 once sent),
--       its done marker (set when the job finished: its claims are gone),
--       the tenant's live claim hashes ZSET (by expiry), which bounds them.
-- ARGV: now_ms, lease_ms, ttl_ms, max_live_jobs, members...
-- Returns per member: 1 claimed now (send it), 0 sent already (skip it),
-- 2 held by another attempt's lease (retry later: it may yet fail).
-- An error when the tenant has max_live_jobs other jobs in flight.
local now, lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
if redis.call('EXISTS', KEYS[2]) == 1 then
  for i = 5, #ARGV do out[#out + 1] = 0 end
  return out
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
    return redis.error_reply('TOO_MANY_FANOUTS the tenant has ' .. ARGV[4] .. ' queued fan-outs in flight')
  end
end
for i = 5, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if held == -1 or (held > 0 and held <= now) then
    redis.call('HSET', KEYS[1], ARGV[i], now + lease)
    out[#out + 1] = 1
  elseif held == 0 then
    out[#out + 1] = 0
  else
    out[#out + 1] = 2
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], now + ttl, KEYS[1])
redis.call('PEXPIRE', KEYS[3], ttl)
return out
