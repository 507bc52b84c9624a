-- KEYS: active. ARGV: connection ids: each (still recorded) is active now.
local now = now_ms()
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i]) end
return 1
