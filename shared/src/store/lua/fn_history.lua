-- A tenant's history: its recent events, for recovery. The stream holds
-- entries with ids `<offset>-0` (so a range by offset is a range by id)
-- and fields t (ms recorded), k (event type), m (target mode: tenant,
-- user, connection), w (target id), u (the target's user, when known),
-- e (the envelope without its position; '' when it was too large to keep).
-- The meta hash holds the epoch and the top offset; it outlives the stream
-- (30 days), so a quiet tenant keeps its epoch and a client that saw the
-- top offset recovers with nothing to replay.
local HISTORY_META_TTL_MS = 2592000000

-- `history_epoch(stream, meta, fresh)`: the history's epoch, made from
-- `fresh` when there is none. A lost meta (flushed, evicted) starts a new
-- history: a stream left without one holds offsets of an epoch gone.
local function history_epoch(stream, meta, fresh)
    local epoch = redis.call('HGET', meta, 'epoch')
    if not epoch then
        epoch = fresh
        redis.call('DEL', stream)
        redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
        redis.call('PEXPIRE', meta, HISTORY_META_TTL_MS)
    end
    return epoch
end

-- `history_append(stream, meta, once, h, text, etype, mode, target, user)`
-- with h = {size, ttl_ms, max_bytes, fresh epoch}: records one event and
-- returns {offset, epoch}; {0, ''} when history is off (size 0). `once`
-- (a key, or '') records the event only the first time (a retried job):
-- later calls return the place it got.
local function history_append(stream, meta, once, h, text, etype, mode, target, user)
    if tonumber(h[1]) == 0 then return {0, ''} end
    if once ~= '' then
        local seen = redis.call('GET', once)
        if seen then
            local offset, epoch = string.match(seen, '^(%d+) (%w+)$')
            if epoch and epoch == redis.call('HGET', meta, 'epoch') then return {tonumber(offset), epoch} end
        end
    end
    local epoch = history_epoch(stream, meta, h[4])
    local offset = redis.call('HINCRBY', meta, 'top', 1)
    redis.call('PEXPIRE', meta, HISTORY_META_TTL_MS)
    if #text > tonumber(h[3]) then text = '' end
    redis.call('XADD', stream, 'MAXLEN', h[1], string.format('%d-0', offset),
        't', now_ms(), 'k', etype, 'm', mode, 'w', target, 'u', user, 'e', text)
    redis.call('PEXPIRE', stream, h[2])
    if once ~= '' then redis.call('SET', once, string.format('%d %s', offset, epoch), 'PX', h[2]) end
    return {offset, epoch}
end

-- `history_after(stream, meta, fresh, after, max, ttl_ms)`: {epoch, top,
-- then offset, type, mode, target, user, text for each of up to `max`
-- retained entries after `after` that have not expired}, oldest first.
local function history_after(stream, meta, fresh, after, max, ttl_ms)
    local epoch = history_epoch(stream, meta, fresh)
    local top = tonumber(redis.call('HGET', meta, 'top') or '0')
    local out = {epoch, top}
    if tonumber(max) == 0 or after >= top then return out end
    local oldest = now_ms() - tonumber(ttl_ms)
    for _, e in ipairs(redis.call('XRANGE', stream, string.format('%d-0', after + 1), '+', 'COUNT', max)) do
        local f = e[2]
        if tonumber(f[2]) >= oldest then
            out[#out + 1] = string.match(e[1], '^(%d+)')
            out[#out + 1] = f[4]
            out[#out + 1] = f[6]
            out[#out + 1] = f[8]
            out[#out + 1] = f[10]
            out[#out + 1] = f[12]
        end
    end
    return out
end
