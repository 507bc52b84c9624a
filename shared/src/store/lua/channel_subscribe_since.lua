-- A channel subscribe that reads the channel's history in the same round
-- trip (a recovery): what it returns was published before the
-- subscription took effect; everything after reaches the connection live.
-- Counted against the tenant's requests per second, then charged by what
-- it returned.
-- KEYS: conn, connch, active, the channel's subscribers hash, its stream,
-- its meta, the tenant's rate-limit counter for this second.
-- ARGV: [1] conn id, [2] channels per connection, [3] subscribers per
-- channel, [4] channel, [5] filter, [6] rate limit, [7..18] history_read's
-- q (with the meta TTL of an epoch the read starts), [19..] the filter's topics.
-- Returns -1 / -2 / -3 as `channel_subscribe`, -4 over the rate limit
-- (nothing done), else {endpoint, channel_read's answer}.
if not within_limit(KEYS[7], ARGV[6]) then return -4 end
local done = channel_subscribe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if done ~= 0 then return done end
local endpoint = redis.call('HGET', KEYS[1], 'endpoint')
local read = channel_read(KEYS[5], KEYS[6], {unpack(ARGV, 7, 18)}, {unpack(ARGV, 19)})
charge(KEYS[7], read)
return {endpoint, read}
