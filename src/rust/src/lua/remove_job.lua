-- Remove a job in one step: cancel its unfinished tasks (their workers are
-- told to interrupt running ones), delete every task's record and payload,
-- the job's environment, completion list and listing. Atomic, so a worker
-- can never claim one of its tasks half-removed.
-- ARGV[3] job id, ARGV[4..] ids of the job's tasks that still have data.
local job = ARGV[3]
cancel_tasks(args_from(4), true, false)
local ek = K.job_env(job)
drop_value(key_ref(ek))
-- an environment stored as a shared object: one owner fewer
if redis.call('STRLEN', ek) <= 512 then
  local sha = object_of(redis.call('GET', ek))
  if sha then
    release_object(sha)
  end
end
redis.call('DEL', ek, K.job_done(job))
redis.call('HDEL', K.jobs(), job)
return 1
