-- KEYS: sent set. ARGV: ttl_ms, connection ids. Returns 1/0 per id (claimed now / before).
local out = {}
for i = 2, #ARGV do out[#out + 1] = redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return out
