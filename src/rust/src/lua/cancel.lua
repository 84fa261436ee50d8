-- Cancel tasks. A PENDING task leaves its queue; a RUNNING one is marked
-- CANCELLED first (so its worker's result is dropped whatever happens) and
-- its worker is told to interrupt it. Atomic so a task cannot be claimed
-- between the status check and the removal.
-- ARGV[3..] ids. Returns the status each task had.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local tk = key('task', id)
  local t = redis.call('HMGET', tk, 'status', 'queue', 'worker', 'notify', 'started')
  out[#out + 1] = t[1] or 'MISSING'
  if t[1] == PENDING or t[1] == RUNNING then
    if t[1] == PENDING then
      redis.call('LREM', key('queue', t[2]), 1, id)
    else
      redis.call('RPUSH', key('worker', t[3], 'control'), 'CANCEL ' .. id)
      log_attempt(tk, t[3], t[5], CANCELLED)
    end
    redis.call('HSET', tk, 'status', CANCELLED, 'finished', NOW)
    notify(t[4], id)
  end
end
return out
