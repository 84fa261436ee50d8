-- A worker leaves: give back what it holds (tasks it claimed in a batch
-- but never started; on KILL also the one it was running), unregister it,
-- and keep its record for a while; what was addressed to it alone ends
-- DIED. ARGV[3] wid, ARGV[4] how it ended, ARGV[5..7] its totals (see
-- beat.lua).
local wid = ARGV[3]
local r = release_worker(wid, ARGV[4])
local dropped = drop_private(wid)
r[2] = r[2] + dropped
local wk = K.worker(wid)
redis.call('HSET', wk, 'status', WORKER_EXITED, 'ended', NOW, 'task', '', 'how', ARGV[4])
add_totals(wid, ARGV[5], ARGV[6], ARGV[7])
redis.call('EXPIRE', wk, WORKER_TTL_S)
worker_event(wid, 'stopped ' .. ARGV[4], WORKER_TTL_S)
redis.call('SREM', K.workers(), wid)
redis.call('DEL', K.worker_alive(wid), K.worker_control(wid))
return r
