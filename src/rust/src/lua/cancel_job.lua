-- Cancel a job from any session (doRedis' removeJob): its queued tasks and
-- those workers hold are found by their `job` field and cancelled, and the
-- job's own controller is told, through a notice naming the job itself,
-- to stop (it then removes the job and submits nothing more).
-- Walks every queue and running list of the namespace: an administrative
-- step, not a hot path. ARGV[3] job id. Returns how many were cancelled.
local job = ARGV[3]
local ids, seen = {}, {}
local function consider(id)
  if not seen[id] and redis.call('HGET', K.task(id), 'job') == job then
    seen[id] = true
    ids[#ids + 1] = id
  end
end
for _, q in ipairs(redis.call('SMEMBERS', K.queues())) do
  for _, id in ipairs(redis.call('LRANGE', K.queue(q), 0, -1)) do consider(id) end
end
for _, w in ipairs(redis.call('SMEMBERS', K.workers())) do
  for _, id in ipairs(redis.call('LRANGE', K.worker_running(w), 0, -1)) do consider(id) end
end
local before = cancel_tasks(ids, false, false)
notify({job = job}, job, CANCELLED)
redis.call('HDEL', K.jobs(), job)
local n = 0
for _, st in ipairs(before) do
  if st == PENDING or st == RUNNING then n = n + 1 end
end
return n
