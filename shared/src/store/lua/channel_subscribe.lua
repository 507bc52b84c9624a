-- KEYS: conn, connch, active, the channel's subscribers hash.
-- ARGV: conn id, channels per connection, subscribers per channel, channel, filter.
-- Returns `channel_subscribe`'s answer.
return channel_subscribe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
