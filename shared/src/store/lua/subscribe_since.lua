-- A subscribe that reads the history in the same round trip (a recovery):
-- what it returns is exactly what was published before the subscription
-- took effect; everything after reaches the connection live. It counts
-- against the tenant's requests per second, first as one request, then
-- by what it returned (`charge`), in the same round trip.
-- KEYS: conn, connsubs, active, history stream, history meta, the tenant's
-- rate-limit counter for this second, subs key per topic.
-- ARGV: [1] conn_id, [2] limit, [3] rate limit, [4..14] history_read's q
-- (the topics it reads for are the connection's after the change),
-- [15] the number of event types m, every event type, then the topics.
-- Returns -1 / -2 as `subscribe`, -3 over the rate limit (nothing done),
-- else {topics, endpoint, history_read's answer}.
if not within_limit(KEYS[6], ARGV[3]) then return -3 end
local m = tonumber(ARGV[15])
local topics = subscribe(7, 16 + m)
if type(topics) == 'number' then return topics end
local endpoint = redis.call('HGET', KEYS[1], 'endpoint')
local read = history_read(KEYS[4], KEYS[5], {unpack(ARGV, 4, 14)}, topics, {unpack(ARGV, 16, 15 + m)})
charge(KEYS[6], read)
return {topics, endpoint, read}
