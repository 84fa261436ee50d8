-- Find registered workers whose heartbeat lease is gone and give their
-- tasks back (release_worker in common.lua). Idempotent and safe to run
-- from many processes at once: a reaped worker leaves the `workers` set in
-- the same atomic step, so a second run finds nothing to do.
-- Each reaped worker is also added to the namespace's event stream.
-- Returns {wid, host, requeued, died, ...} for each worker reaped.
-- ARGV[3]: reap at most once in this many ms, whoever asks (0: now). Every
-- worker runs the reaper, and a run reads every worker's lease: without
-- the bound, N workers would cost the server N x N reads per period.
local every = tonumber(ARGV[3] or '0')
if every > 0 and not redis.call('SET', K.reaped(), '1', 'NX', 'PX', every) then
  return {}
end
local out = {}
for _, wid in ipairs(redis.call('SMEMBERS', K.workers())) do
  if redis.call('EXISTS', K.worker_alive(wid)) == 0 then
    local host, requeued, died = lose_worker(wid, LEASE_RAN_OUT)
    out[#out + 1] = wid
    out[#out + 1] = host
    out[#out + 1] = requeued
    out[#out + 1] = died
  end
end
return out
