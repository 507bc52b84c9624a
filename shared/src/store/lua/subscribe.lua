-- KEYS: conn, connsubs, active, subs key per topic. ARGV: conn_id, limit, topics.
-- Returns -1 for an unknown connection, -2 over the limit, else the topics.
return subscribe(4, 3)
