-- Heartbeat: renew the lease only while the worker is still registered.
-- If it was reaped (lease ran out during a long pause) or the data was lost
-- (server restart, FLUSHALL), return 0 so the worker registers again,
-- rather than keep a lease nobody will ever reap.
-- ARGV[3] wid, ARGV[4] lease (ms).
local wid = ARGV[3]
if redis.call('SISMEMBER', key('workers'), wid) == 0 then
  return 0
end
redis.call('SET', key('worker', wid, 'alive'), NOW, 'PX', ARGV[4])
return 1
