-- A worker leaves: give back what it holds (tasks it claimed in a batch
-- but never started; on KILL also the one it was running), unregister it,
-- and keep its record for a day. ARGV[3] wid, ARGV[4] how it ended.
local wid = ARGV[3]
local r = release_worker(wid, ARGV[4])
local wk = key('worker', wid)
redis.call('HSET', wk, 'status', WORKER_EXITED, 'ended', NOW, 'task', '', 'how', ARGV[4])
redis.call('EXPIRE', wk, WORKER_TTL_S)
redis.call('SREM', key('workers'), wid)
redis.call('DEL', key('worker', wid, 'alive'), key('worker', wid, 'control'))
return r
