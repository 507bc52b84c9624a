-- KEYS: online. ARGV: presence stem. Members whose heartbeat is alive.
local out = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', ARGV[1] .. user) == 1 then out[#out + 1] = user end
end
return out
