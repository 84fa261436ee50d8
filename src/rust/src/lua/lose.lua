-- Processes that a session started as workers ended (the session saw the
-- process exit): declare each still registered worker lost at once, with
-- the reason (its exit status or signal), rather than when its lease runs
-- out; the task it was running counts the attempt (see lose_worker). A
-- worker the reaper already declared lost gets the reason on its record.
-- ARGV[3..]: pairs of worker id and reason. Returns, per worker, 1 if it
-- was lost (the session replaces it), 0 if it had left on its own (it
-- stopped, finished its tasks or its idle time) or never registered.
local out = {}
for i = 3, #ARGV, 2 do
  local wid, why = ARGV[i], ARGV[i + 1]
  local wk = K.worker(wid)
  if redis.call('SISMEMBER', K.workers(), wid) == 1 then
    lose_worker(wid, why)
    out[#out + 1] = 1
  elseif redis.call('HGET', wk, 'status') == WORKER_LOST then
    redis.call('HSET', wk, 'lost', why)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
