-- `release(index, bytes, total, user)`: a queue that is gone (expired or
-- emptied) leaves the tenant's budget with its bytes.
local function release(index, bytes, total, user)
    local held = tonumber(redis.call('HGET', bytes, user) or '0')
    redis.call('HDEL', bytes, user)
    redis.call('ZREM', index, user)
    if held ~= 0 then redis.call('DECRBY', total, held) end
end
