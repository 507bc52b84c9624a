-- The recipients of an event, shared by the scripts that fan out:
-- `resolve(mode, target_key, hooks_key, index_key, subs_keys, conn_stem, conn_id)`
-- with mode `tenant` (target = the conns set), `user` (the user's set),
-- `connection` (the conn hash) or `channel` (the channel's subscribers
-- hash; `subs` is then the event's topics, not their keys). Each candidate's user and endpoint come
-- from the tenant's connection index, one HMGET per thousand candidates
-- (a `redis.call` per candidate made a 1,000-recipient resolve 8 ms);
-- a candidate missing from the index is looked up in its conn hash.
-- Returns {target_connections, #webhooks, webhook..., id, 'user endpoint', ...}.
local function resolve(mode, target_key, hooks_key, index_key, subs, conn_stem, conn_id)
    local candidates, targeted, filter
    if mode == 'tenant' then
        -- Every member of a subs set is subscribed; the union is the answer.
        candidates = redis.call('SUNION', unpack(subs))
        targeted = redis.call('SCARD', target_key)
        filter = false
    elseif mode == 'channel' then
        -- The channel's subscribers whose filter holds one of the event's
        -- topics (`subs` are the topics here, not keys).
        local wanted = {}
        for _, topic in ipairs(subs) do wanted[topic] = true end
        local all = redis.call('HGETALL', target_key)
        targeted = #all / 2
        candidates = {}
        for i = 1, #all, 2 do
            for topic in string.gmatch(all[i + 1], '%S+') do
                if wanted[topic] then
                    candidates[#candidates + 1] = all[i]
                    break
                end
            end
        end
        filter = false
    elseif mode == 'user' then
        candidates = redis.call('SMEMBERS', target_key)
        filter = true
    else
        candidates = {}
        if redis.call('EXISTS', target_key) == 1 then candidates = {conn_id} end
        filter = true
    end
    local hooks = redis.call('HVALS', hooks_key)
    local out = {0, #hooks}
    for _, h in ipairs(hooks) do out[#out + 1] = h end
    local live, n = 0, #candidates
    for first = 1, n, 1000 do
        local last = math.min(first + 999, n)
        local recs = redis.call('HMGET', index_key, unpack(candidates, first, last))
        for j = first, last do
            local id, rec = candidates[j], recs[j - first + 1]
            if not rec then
                local h = redis.call('HMGET', conn_stem .. id, 'user_id', 'endpoint')
                if h[1] then rec = h[1] .. ' ' .. h[2] end
            end
            if rec then
                live = live + 1
                local wanted = not filter
                if filter then
                    for _, key in ipairs(subs) do
                        if redis.call('SISMEMBER', key, id) == 1 then wanted = true break end
                    end
                end
                if wanted then
                    out[#out + 1] = id
                    out[#out + 1] = rec
                end
            end
        end
    end
    out[1] = targeted or live
    return out
end
