-- Cancel tasks. A PENDING task leaves its queue; a RUNNING one is marked
-- CANCELLED first (so its worker's result is dropped whatever happens) and
-- its worker is told to interrupt it. Atomic so a task cannot be claimed
-- between the status check and the removal.
-- Removing many ids from a long queue one LREM at a time would be
-- quadratic (and block the server): past a few ids the queue is rebuilt
-- once, in order, without them.
-- ARGV[3..] ids. Returns the status each task had.
local out = {}
local drop, ndrop = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local tk = key('task', id)
  local t = redis.call('HMGET', tk, 'status', 'queue', 'worker', 'notify', 'started')
  out[#out + 1] = t[1] or 'MISSING'
  if t[1] == PENDING or t[1] == RUNNING then
    if t[1] == PENDING then
      local qk = key('queue', t[2])
      drop[qk] = drop[qk] or {}
      drop[qk][id] = true
      ndrop[qk] = (ndrop[qk] or 0) + 1
    else
      redis.call('RPUSH', key('worker', t[3], 'control'), 'CANCEL ' .. id)
      log_attempt(tk, t[3], t[5], CANCELLED)
    end
    redis.call('HSET', tk, 'status', CANCELLED, 'finished', NOW)
    notify(t[4], id)
  end
end
for qk, ids in pairs(drop) do
  if ndrop[qk] <= 16 then
    for id in pairs(ids) do
      redis.call('LREM', qk, 1, id)
    end
  else
    local all = redis.call('LRANGE', qk, 0, -1)
    redis.call('DEL', qk)
    local keep = {}
    for _, id in ipairs(all) do
      if not ids[id] then
        keep[#keep + 1] = id
        if #keep == 5000 then
          redis.call('RPUSH', qk, unpack(keep))
          keep = {}
        end
      end
    end
    if #keep > 0 then
      redis.call('RPUSH', qk, unpack(keep))
    end
  end
end
return out
