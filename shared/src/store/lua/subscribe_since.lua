-- A subscribe that reads the history in the same round trip (a recovery):
-- what it returns is exactly what was published before the subscription
-- took effect; everything after reaches the connection live. It counts
-- against the tenant's requests per second (a recovery reads up to
-- HISTORY_SIZE events), in the same round trip.
-- KEYS: conn, connsubs, active, history stream, history meta, the tenant's
-- rate-limit counter for this second, subs key per topic.
-- ARGV: conn_id, limit, after, max, ttl_ms, fresh epoch, rate limit, topics.
-- Returns -1 / -2 as `subscribe`, -3 over the rate limit (nothing done),
-- else {topics, endpoint, history_after's answer}.
if not within_limit(KEYS[6], ARGV[7]) then return -3 end
local topics = subscribe(7, 8)
if type(topics) == 'number' then return topics end
local endpoint = redis.call('HGET', KEYS[1], 'endpoint')
return {topics, endpoint, history_after(KEYS[4], KEYS[5], ARGV[6], tonumber(ARGV[3]), ARGV[4], ARGV[5])}
