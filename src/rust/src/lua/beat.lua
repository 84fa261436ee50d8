-- Heartbeat: renew the lease only while the worker is still registered.
-- If it was reaped (lease ran out during a long pause) or the data was lost
-- (server restart, FLUSHALL), return 0 so the worker registers again,
-- rather than keep a lease nobody will ever reap. An error the side thread
-- met since the last beat (ARGV[5], '' for none) goes on the worker's record.
-- The worker's totals ride along, off the task path: ARGV[6] tasks it ran
-- (its record's `done`), ARGV[7] ms spent on tasks and ARGV[8] tasks since
-- the last beat that got through (added to the namespace's totals).
-- ARGV[3] wid, ARGV[4] lease (ms).
local wid = ARGV[3]
if redis.call('SISMEMBER', K.workers(), wid) == 0 then
  return 0
end
redis.call('SET', K.worker_alive(wid), NOW, 'PX', ARGV[4])
if ARGV[5] and ARGV[5] ~= '' then
  redis.call('HSET', K.worker(wid), 'last_error', ARGV[5])
end
add_totals(wid, ARGV[6], ARGV[7], ARGV[8])
return 1
