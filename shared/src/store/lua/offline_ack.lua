-- KEYS: offline list, offline index, offline bytes, offline total.
-- ARGV: user, then the delivered messages, oldest first. Pops each one
-- that is at the head (one trimmed away by the cap meanwhile is skipped)
-- and gives its bytes back to the tenant's budget.
local removed, freed = 0, 0
for i = 2, #ARGV do
    if redis.call('LINDEX', KEYS[1], 0) == ARGV[i] then
        redis.call('LPOP', KEYS[1])
        removed = removed + 1
        freed = freed + #ARGV[i]
    end
end
if redis.call('LLEN', KEYS[1]) == 0 then
    release(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
elseif freed > 0 and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[1], -freed)
    redis.call('DECRBY', KEYS[4], freed)
end
return removed
