-- Channels: their subscribers and their own histories. Needs `now_ms`
-- and the history functions (`history_epoch`, `history_once`,
-- `history_field`, `history_judge`, `topic_matches`).
--
-- A channel's subscribers: a hash connection id -> its filter (topics
-- separated by spaces); each connection's channels: a hash channel ->
-- filter. Redis removes a hash when its last field goes, so a channel
-- per call leaves nothing once its subscribers are gone.
--
-- A channel's history: a stream of its own (ids `<offset>-0`, fields t
-- (ms recorded), k (event type), e (envelope without position, '' when
-- not kept), i (event id)) and a meta hash like the tenant's (epoch,
-- run, top, top_id). Its bytes count against the tenant's budget for all
-- its channels: a hash channel -> bytes kept (field `total`: all of
-- them; a channel's name always holds ':', so no channel is `total`) and
-- a sorted set channel -> when its stream expires, so the bytes of
-- streams that expired are given back.

-- `channel_subscribe(conn_key, connch, active, subs, conn, limit, max_subs, channel, filter)`:
-- adds (or re-filters) one channel subscription. Returns -1 for an
-- unknown connection, -2 when a new channel is beyond `limit` channels
-- per connection, -3 when the channel has `max_subs` subscribers, else 0.
-- The connection counts as active (a frame from its client).
local function channel_subscribe(conn_key, connch, active, subs, conn, limit, max_subs, channel, filter)
    if redis.call('EXISTS', conn_key) == 0 then return -1 end
    redis.call('ZADD', active, 'XX', now_ms(), conn)
    if redis.call('HEXISTS', connch, channel) == 0 then
        if redis.call('HLEN', connch) >= tonumber(limit) then return -2 end
        if redis.call('HEXISTS', subs, conn) == 0 and redis.call('HLEN', subs) >= tonumber(max_subs) then
            return -3
        end
    end
    redis.call('HSET', connch, channel, filter)
    redis.call('HSET', subs, conn, filter)
    return 0
end

-- Drops a channel's oldest event; returns its text's bytes, or nil when
-- the stream is empty.
local function channel_pop(stream)
    local old = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    if not old then return nil end
    redis.call('XDEL', stream, old[1])
    return #(history_field(old[2], 'e') or '')
end

-- `channel_append(stream, meta, once, c, text, etype, id, bytes_key, exp_key, channel)`
-- with c = {size, ttl_ms, meta_ttl_ms, max event bytes, the tenant's
-- channel history bytes, fresh epoch}: records one event of a channel and
-- returns {offset, epoch}; {0, ''} when the channel keeps no history.
-- Over the tenant's bytes, the channel gives up its oldest events first
-- (a busy channel, not the quiet ones, pays); an event that still does
-- not fit keeps its place only (a recovery across it answers lost).
local function channel_append(stream, meta, once, c, text, etype, id, bytes_key, exp_key, channel)
    local size = tonumber(c[1])
    if size == 0 then return {0, ''} end
    local before = history_once(once, meta)
    if before then return before end
    local now = now_ms()
    -- Give back the bytes of streams that expired (a few per write).
    for _, gone in ipairs(redis.call('ZRANGEBYSCORE', exp_key, '-inf', now, 'LIMIT', 0, 10)) do
        local held = tonumber(redis.call('HGET', bytes_key, gone) or '0')
        redis.call('HINCRBY', bytes_key, 'total', -held)
        redis.call('HDEL', bytes_key, gone)
        redis.call('ZREM', exp_key, gone)
    end
    local e = history_epoch(stream, meta, c[6], false, tonumber(c[3]))
    -- A stream that is gone (expired, or dropped with its epoch) holds nothing.
    if redis.call('EXISTS', stream) == 0 then
        local held = tonumber(redis.call('HGET', bytes_key, channel) or '0')
        if held ~= 0 then
            redis.call('HINCRBY', bytes_key, 'total', -held)
            redis.call('HDEL', bytes_key, channel)
        end
    end
    local epoch, offset = e[1], e[2] + 1
    redis.call('HSET', meta, 'top', offset, 'top_id', id)
    redis.call('PEXPIRE', meta, c[3])
    if #text > tonumber(c[4]) then text = '' end
    local max = tonumber(c[5])
    local total = tonumber(redis.call('HGET', bytes_key, 'total') or '0')
    local held = tonumber(redis.call('HGET', bytes_key, channel) or '0')
    local popped = 0
    while total + #text > max and popped < 100 do
        local n = channel_pop(stream)
        if not n then break end
        total, held, popped = total - n, held - n, popped + 1
    end
    if total + #text > max then text = '' end
    redis.call('XADD', stream, string.format('%d-0', offset), 't', now, 'k', etype, 'e', text, 'i', id)
    total, held = total + #text, held + #text
    while redis.call('XLEN', stream) > size do
        local n = channel_pop(stream)
        total, held = total - n, held - n
    end
    redis.call('HSET', bytes_key, 'total', total, channel, held)
    redis.call('PEXPIRE', stream, c[2])
    redis.call('ZADD', exp_key, now + tonumber(c[2]), channel)
    if once ~= '' then redis.call('SET', once, string.format('%d %s', offset, epoch), 'PX', c[2]) end
    return {offset, epoch}
end

-- `channel_read(stream, meta, q, topics)`: what a reader of a channel at
-- q's position missed (q as `history_read`'s; its audience, user,
-- connection and index stem unused), its events matching `topics`, in
-- the same answer as `history_read`'s. The channel's stream holds only
-- its own events, so the read walks it from the position.
local function channel_read(stream, meta, q, topics)
    local out, since = history_judge(stream, meta, q)
    if not since then return out end
    local max_events, max_bytes = tonumber(q[8]), tonumber(q[9])
    local bytes, n = 0, 0
    local from = string.format('%d-0', since + 1)
    while true do
        local batch = redis.call('XRANGE', stream, from, '+', 'COUNT', 100)
        if #batch == 0 then break end
        for _, entry in ipairs(batch) do
            local f = entry[2]
            local etype = history_field(f, 'k')
            local wanted = false
            for _, topic in ipairs(topics) do
                if topic_matches(topic, etype) then
                    wanted = true
                    break
                end
            end
            if wanted then
                n = n + 1
                local text = history_field(f, 'e')
                if n > max_events or (text and text ~= '' and bytes + #text > max_bytes) then
                    out[1] = 'truncated'
                    out[5] = bytes
                    return out
                end
                if not text or text == '' then return {'lost', out[2], out[3], out[4], 0} end
                bytes = bytes + #text
                out[#out + 1] = tonumber(string.match(entry[1], '^(%d+)'))
                out[#out + 1] = text
            end
        end
        from = '(' .. batch[#batch][1]
    end
    out[5] = bytes
    return out
end
