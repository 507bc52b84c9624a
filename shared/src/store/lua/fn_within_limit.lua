-- `within_limit(counter_key, limit)`: counts one call in this second's
-- counter (which expires after two); false once over `limit`.
local function within_limit(key, limit)
    local n = redis.call('INCR', key)
    if n == 1 then redis.call('PEXPIRE', key, 2000) end
    return n <= tonumber(limit)
end
