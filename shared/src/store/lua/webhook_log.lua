-- KEYS: log stream. ARGV: webhook_id, delivery_id ('' = any), before ('' = newest), since_ms ('' = oldest), limit.
-- Returns {id, entry, id, entry, ...}, newest first.
local wh, did, limit = ARGV[1], ARGV[2], tonumber(ARGV[5])
local upper = '+'
if ARGV[3] ~= '' then upper = '(' .. ARGV[3] end
local lower = '-'
if ARGV[4] ~= '' then lower = ARGV[4] end
local out = {}
while #out < limit * 2 do
    local page = redis.call('XREVRANGE', KEYS[1], upper, lower, 'COUNT', 500)
    if #page == 0 then break end
    for _, e in ipairs(page) do
        local f, w, d, entry = e[2], nil, nil, nil
        for i = 1, #f, 2 do
            if f[i] == 'w' then w = f[i + 1] elseif f[i] == 'd' then d = f[i + 1] elseif f[i] == 'e' then entry = f[i + 1] end
        end
        if w == wh and (did == '' or d == did) then
            out[#out + 1] = e[1]
            out[#out + 1] = entry
            if #out >= limit * 2 then break end
        end
    end
    upper = '(' .. page[#page][1]
end
return out
