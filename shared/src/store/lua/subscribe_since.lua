-- A subscribe that reads the history in the same round trip (a recovery):
-- what it returns is exactly what was published before the subscription
-- took effect; everything after reaches the connection live.
-- KEYS: conn, connsubs, active, history stream, history meta, subs key per topic.
-- ARGV: conn_id, limit, after, max, ttl_ms, fresh epoch, topics.
-- Returns -1 / -2 as `subscribe`, else {topics, endpoint, history_after's answer}.
local topics = subscribe(6, 7)
if type(topics) == 'number' then return topics end
local endpoint = redis.call('HGET', KEYS[1], 'endpoint')
return {topics, endpoint, history_after(KEYS[4], KEYS[5], ARGV[6], tonumber(ARGV[3]), ARGV[4], ARGV[5])}
