-- Whether the workers running some tasks are still alive, for front ends
-- that must tell "still running" from "its worker is gone" (a future's
-- resolved(), a cluster node). ARGV[3..] ids.
-- Returns {status, worker, alive (0/1), worker status, host, ...} per id.
local out = {}
for i = 3, #ARGV do
  local t = redis.call('HMGET', K.task(ARGV[i]), 'status', 'worker')
  local wid = t[2] or ''
  local alive, wstatus, host = 0, '', ''
  if wid ~= '' then
    alive = redis.call('EXISTS', K.worker_alive(wid))
    local w = redis.call('HMGET', K.worker(wid), 'status', 'host')
    wstatus, host = w[1] or '', w[2] or ''
  end
  out[#out + 1] = t[1] or MISSING
  out[#out + 1] = wid
  out[#out + 1] = alive
  out[#out + 1] = wstatus
  out[#out + 1] = host
end
return out
