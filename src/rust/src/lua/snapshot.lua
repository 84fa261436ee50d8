-- A picture of the namespace for the dashboard and /metrics, in one
-- read-only call that touches only what it lists (no scan of the
-- keyspace): queues and their lengths, live workers (their record, the
-- time of their last heartbeat, how many tasks they hold), the running
-- totals, the latest failures (and whether task_retry() can run them
-- again), the latest task API tasks (with their earlier attempts), and
-- the latest workers found lost.
-- ARGV[3]: how many of the latest tasks; ARGV[4]: how many failures.
local function fill(t, n)
  for i = 1, n do
    if not t[i] then t[i] = '' end
  end
  return t
end

local queues = {}
for _, q in ipairs(redis.call('SMEMBERS', K.queues())) do
  queues[#queues + 1] = {q, redis.call('LLEN', K.queue(q))}
end
local workers = {}
for _, wid in ipairs(redis.call('SMEMBERS', K.workers())) do
  workers[#workers + 1] = {wid, redis.call('HGETALL', K.worker(wid)),
                           redis.call('GET', K.worker_alive(wid)) or '',
                           redis.call('LLEN', K.worker_running(wid))}
end
-- a task run again is listed once, and only while it stays failed
local failures, seen = {}, {}
for _, id in ipairs(redis.call('LRANGE', K.failures(), 0, tonumber(ARGV[4]) - 1)) do
  local t = redis.call('HMGET', K.task(id), 'status', 'queue', 'worker', 'finished', 'result', 'log')
  if t[1] and TERMINAL[t[1]] and t[1] ~= COMPLETE and not seen[id] then
    seen[id] = true
    local row = fill(t, 6)
    table.insert(row, 1, id)
    -- a task that expires belongs to a job (a loop), which retries its
    -- own tasks; the others task_retry() can run again
    row[#row + 1] = redis.call('TTL', K.task(id)) < 0 and 1 or 0
    failures[#failures + 1] = row
  end
end
local recent = {}
local n = tonumber(ARGV[3])
if n > 0 then
  for _, id in ipairs(redis.call('LRANGE', K.tasks(), -n, -1)) do
    local t = redis.call('HMGET', K.task(id), 'status', 'queue', 'worker', 'created', 'started',
                         'finished', 'history')
    if t[1] then
      local row = fill(t, 7)
      table.insert(row, 1, id)
      recent[#recent + 1] = row
    end
  end
end
return {NOW, queues, workers, redis.call('HGETALL', K.counts()), failures, recent,
        redis.call('XREVRANGE', K.events(), '+', '-', 'COUNT', 10)}
