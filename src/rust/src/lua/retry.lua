-- Run ended tasks again (task_retry): each must have ended without
-- completing (ERROR, TIMEOUT, CANCELLED, DIED, IMPOSSIBLE) and still hold
-- its payload. All or nothing: if any id is not retryable, nothing
-- changes. A retried task is PENDING again with a fresh attempt count, at
-- the back of its queue, and reports to the job (controller) that retried it.
-- ARGV[3] job id of the retrying controller, ARGV[4..] ids.
-- Returns {ok (0/1), status of each}.
local RETRYABLE = {[ERROR] = true, [TIMEOUT] = true, [CANCELLED] = true, [DIED] = true,
                   [IMPOSSIBLE] = true}
local before, ok = {}, 1
for i = 4, #ARGV do
  local st = redis.call('HGET', K.task(ARGV[i]), 'status') or MISSING
  if not RETRYABLE[st] or redis.call('HEXISTS', PAYLOADS, ARGV[i]) == 0 then
    ok = 0
  end
  before[#before + 1] = st
end
if ok == 1 then
  for i = 4, #ARGV do
    local id = ARGV[i]
    local tk = K.task(id)
    local t = fields(tk)
    -- the notice of the end it leaves must not pass for the next one's
    if t.job then
      redis.call('LREM', K.job_done(t.job), 0, notice(id, before[i - 3]))
    end
    -- the attempt that ended it was described by the fields cleared below
    if t.worker and t.worker ~= '' and t.started then
      log_attempt(tk, t.worker, t.started, before[i - 3], redis.call('HGET', tk, 'finished'))
    end
    log_attempt(tk, '', '', OUTCOME_RETRY)
    drop_big(tk, 'result')
    redis.call('HDEL', tk, 'result', 'rbig', 'finished', 'started', 'worker', 'deps_left')
    redis.call('HSET', tk, 'status', PENDING, 'attempt', 0, 'job', ARGV[3])
    redis.call('LPUSH', K.queue(t.queue), id)
  end
end
table.insert(before, 1, ok)
return before
