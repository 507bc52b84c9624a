-- `within_limit(counter_key, limit)`: counts one call in this second's
-- counter (which expires after two); false once over `limit`.
local function within_limit(key, limit)
    local n = redis.call('INCR', key)
    if n == 1 then redis.call('PEXPIRE', key, 2000) end
    return n <= tonumber(limit)
end

-- `charge(counter_key, read)`: a history read that `within_limit` let in
-- also costs what it returned (`history_read`'s answer): one request more
-- per 100 events and per 64 KiB, so the tenant's next requests wait.
local function charge(key, read)
    local cost = math.floor((#read - 5) / 200) + math.floor(read[5] / 65536)
    if cost > 0 then redis.call('INCRBY', key, cost) end
end
