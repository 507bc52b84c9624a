-- A tenant's history: its recent events, for recovery.
--
-- The stream holds entries with ids `<offset>-0` (so a range by offset is
-- a range by id) and fields t (ms recorded), k (event type), m (target
-- mode: tenant, user, connection), w (target id), u (the target's user,
-- when known), e (the envelope without its position; '' when it was too
-- large to keep), i (the event's id: what proves a position).
--
-- The meta hash holds the epoch, the top offset, the top event's id and
-- the run id of the Redis server process that started the epoch. It
-- outlives the stream (30 days), so a quiet tenant keeps its epoch and a
-- client that saw the top offset recovers with nothing to replay.
--
-- Indexes, so a recovery reads what it returns and not what the tenant
-- published: sorted sets scored by offset under `<idx stem><epoch>:`:
-- `t:<type>` the tenant-wide events of a type (members: offsets),
-- `a:<type>` the addressed ones (to a user or a connection),
-- `u:<user>` those addressed to a user or one of their connections
-- (members: `<offset> <type> <connection or ''>`). Each is trimmed to the
-- history's window when written and expires with it; the epoch in their
-- name keeps an old epoch's offsets out of a new one.
local HISTORY_META_TTL_MS = 2592000000

-- The run id of this Redis server process: new at every start, and
-- another one after a failover. Costs an INFO (about 6 µs), so it is
-- asked only where an epoch is made or a position is judged.
local function server_run()
    return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

-- `history_epoch(stream, meta, fresh, judge)`: {epoch, top}, a new epoch
-- made from `fresh` when there is none. A lost meta (flushed, evicted)
-- starts a new history: a stream left without one holds offsets of an
-- epoch gone. With `judge` (a read that will vouch for a position), a
-- history whose epoch another server process started also starts anew:
-- Redis restarted (from a snapshot or an AOF that may have lost its
-- tail) or failed over (to a replica that may have lagged), and offsets
-- handed out since then may repeat ones handed out before. The top
-- offset carries on, so no position of the new epoch is below it.
-- `meta_ttl` (ms; default 30 days) is how long a new epoch's meta lives.
local function history_epoch(stream, meta, fresh, judge, meta_ttl)
    local m = redis.call('HMGET', meta, 'epoch', 'run', 'top')
    local epoch, top = m[1], tonumber(m[3] or '0')
    if epoch and not judge then return {epoch, top} end
    local run = server_run()
    if epoch and m[2] == run then return {epoch, top} end
    redis.call('DEL', stream)
    redis.call('HDEL', meta, 'top_id')
    redis.call('HSET', meta, 'epoch', fresh, 'run', run, 'top', top)
    redis.call('PEXPIRE', meta, meta_ttl or HISTORY_META_TTL_MS)
    return {fresh, top}
end

-- Adds `member` at `offset` to one index and drops what left the window.
local function history_index(key, offset, member, size, ttl_ms)
    redis.call('ZADD', key, offset, member)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', offset - size)
    redis.call('PEXPIRE', key, ttl_ms)
end

-- `history_once(once, meta)`: the {offset, epoch} a queued event got when
-- its job recorded it before (in this epoch), or nil.
local function history_once(once, meta)
    if once == '' then return nil end
    local seen = redis.call('GET', once)
    if not seen then return nil end
    local offset, epoch = string.match(seen, '^(%d+) (%w+)$')
    if epoch and epoch == redis.call('HGET', meta, 'epoch') then return {tonumber(offset), epoch} end
end

-- `history_append(stream, meta, once, h, text, etype, mode, target, user, id, conn)`
-- with h = {size, ttl_ms, max_bytes, fresh epoch, index stem}: records one
-- event and returns {offset, epoch}; {0, ''} when history is off (size 0).
-- `once` (a key, or '') records the event only the first time (a retried
-- job): later calls return the place it got. `conn`: the target connection
-- of a connection target ('' otherwise).
local function history_append(stream, meta, once, h, text, etype, mode, target, user, id, conn)
    local size = tonumber(h[1])
    if size == 0 then return {0, ''} end
    local before = history_once(once, meta)
    if before then return before end
    local e = history_epoch(stream, meta, h[4], false)
    local epoch, offset = e[1], e[2] + 1
    redis.call('HSET', meta, 'top', offset, 'top_id', id)
    redis.call('PEXPIRE', meta, HISTORY_META_TTL_MS)
    if #text > tonumber(h[3]) then text = '' end
    redis.call('XADD', stream, 'MAXLEN', size, string.format('%d-0', offset),
        't', now_ms(), 'k', etype, 'm', mode, 'w', target, 'u', user, 'e', text, 'i', id)
    redis.call('PEXPIRE', stream, h[2])
    local stem = h[5] .. epoch .. ':'
    if mode == 'tenant' then
        history_index(stem .. 't:' .. etype, offset, offset, size, h[2])
    else
        history_index(stem .. 'a:' .. etype, offset, offset, size, h[2])
        if user ~= '' then
            history_index(stem .. 'u:' .. user, offset, offset .. ' ' .. etype .. ' ' .. conn, size, h[2])
        end
    end
    if once ~= '' then redis.call('SET', once, string.format('%d %s', offset, epoch), 'PX', h[2]) end
    return {offset, epoch}
end

-- The one entry at `offset` (its fields), or nil.
local function history_entry(stream, offset)
    local at = string.format('%d-0', offset)
    local e = redis.call('XRANGE', stream, at, at)[1]
    if e then return e[2] end
end

-- The field `name` of an entry's flat field list.
local function history_field(f, name)
    for j = 1, #f, 2 do
        if f[j] == name then return f[j + 1] end
    end
end

-- Does `topic` (`*`, `call.*` or a type) match event type `etype`?
local function topic_matches(topic, etype)
    if topic == '*' then return true end
    if string.sub(topic, -1) == '*' then
        return string.sub(etype, 1, #topic - 1) == string.sub(topic, 1, -2)
    end
    return topic == etype
end

-- `history_judge(stream, meta, q)`: where a reader at q's position (see
-- `history_read`) stands. Returns the answer's head {status, epoch, top,
-- top id, 0}, and, when events after the position are to be read, the
-- position's offset (nil when the head is the whole answer: 'lost', or
-- nothing missed). q[12], when given, is the meta's TTL for an epoch the
-- judging starts (a channel's); the tenant's is 30 days.
local function history_judge(stream, meta, q)
    local e = history_epoch(stream, meta, q[1], true, tonumber(q[12] or ''))
    local epoch, top = e[1], e[2]
    local top_id = redis.call('HGET', meta, 'top_id') or ''
    local out = {'complete', epoch, top, top_id, 0}
    if q[2] == '' then return out end
    local since, since_id = tonumber(q[3]), q[4]
    local lost = {'lost', epoch, top, top_id, 0}
    if q[2] ~= epoch or since > top then return lost end
    -- The event at the position must be the one the reader saw.
    if since_id ~= '' and since > 0 then
        local id
        if since == top then
            id = top_id
        else
            local f = history_entry(stream, since)
            id = f and history_field(f, 'i')
        end
        if id ~= since_id then return lost end
    end
    if since == top then return out end
    -- The history only loses its oldest: with the next event retained
    -- and not expired, every later one is.
    local first = history_entry(stream, since + 1)
    if not first or tonumber(first[2]) < now_ms() - tonumber(q[10]) then return lost end
    return out, since
end

-- `history_read(stream, meta, q, topics, types)`: what a reader standing at
-- a position missed. q = {fresh epoch, since epoch ('' = no position:
-- only where the history stands), since offset, since id ('' = not
-- proven by id), audience (everyone | user | connection), user,
-- connection, max events, max bytes, ttl_ms, index stem}; `topics` the
-- reader's; `types` every event type there is.
--
-- Returns {status, epoch, top, top id, bytes, then offset and text of
-- each event}, status one of
--   'complete'  every event after the position the reader would have had;
--   'truncated' the first of them, up to max events and max bytes: there is more;
--   'lost'      the history cannot prove it holds them all (another
--               epoch, a position it never gave or no longer holds, an
--               event at the position that is not the reader's, one
--               too large to have been kept): nothing.
-- Reads nothing but the meta and the few entries it proves with when
-- the position is lost, and only the returned events' texts otherwise.
local function history_read(stream, meta, q, topics, types)
    local out, since = history_judge(stream, meta, q)
    if not since then return out end
    local epoch = out[2]
    local lost = {'lost', out[2], out[3], out[4], 0}
    local max_events, max_bytes = tonumber(q[8]), tonumber(q[9])
    local wanted = {}
    for _, t in ipairs(types) do
        for _, topic in ipairs(topics) do
            if topic_matches(topic, t) then
                wanted[#wanted + 1] = t
                wanted[t] = true
                break
            end
        end
    end
    -- Candidates from the indexes, at most max + 1 from each.
    local stem, low = q[11] .. epoch .. ':', '(' .. since
    local offsets = {}
    local function take(key, keep)
        for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, low, '+inf', 'LIMIT', 0, max_events + 1)) do
            local offset = keep(m)
            if offset then offsets[#offsets + 1] = offset end
        end
    end
    local plain = function(m) return tonumber(m) end
    for _, t in ipairs(wanted) do
        take(stem .. 't:' .. t, plain)
        if q[5] == 'everyone' then take(stem .. 'a:' .. t, plain) end
    end
    if q[5] ~= 'everyone' then
        take(stem .. 'u:' .. q[6], function(m)
            local offset, etype, conn = string.match(m, '^(%d+) (%S+) (%S*)$')
            if not offset or not wanted[etype] then return nil end
            if q[5] == 'connection' and conn ~= '' and conn ~= q[7] then return nil end
            return tonumber(offset)
        end)
    end
    table.sort(offsets)
    local bytes = 0
    for n, offset in ipairs(offsets) do
        if n > max_events then
            out[1] = 'truncated'
            break
        end
        local f = history_entry(stream, offset)
        local text = f and f[12]
        if not text or text == '' then return lost end
        if bytes + #text > max_bytes then
            out[1] = 'truncated'
            break
        end
        bytes = bytes + #text
        out[#out + 1] = offset
        out[#out + 1] = text
    end
    out[5] = bytes
    return out
end
