-- Link a new DEFERRED task to the tasks it depends on (ARGV[3] id,
-- ARGV[4..] distinct dependency ids). Sent inside the submission's
-- MULTI/EXEC, so no dependency can end between the check and the link:
-- the task is queued at once if every dependency has completed, becomes
-- IMPOSSIBLE if one ended otherwise (or does not exist), and otherwise
-- waits, counted in deps_left, in each unfinished dependency's set.
local id = ARGV[3]
local tk = key('task', id)
local t = fields(tk)
if t.status ~= DEFERRED then
  return t.status
end
local waiting = {}
local failed = false
for i = 4, #ARGV do
  local st = redis.call('HGET', key('task', ARGV[i]), 'status')
  if st ~= COMPLETE then
    if not st or TERMINAL[st] then
      failed = true
    else
      waiting[#waiting + 1] = ARGV[i]
    end
  end
end
if failed then
  finish(tk, id, t, IMPOSSIBLE)
  return IMPOSSIBLE
end
if #waiting == 0 then
  redis.call('HSET', tk, 'status', PENDING)
  redis.call('LPUSH', key('queue', t.queue), id)
  return PENDING
end
for _, dep in ipairs(waiting) do
  redis.call('SADD', key('task', dep, 'dependents'), id)
end
redis.call('HSET', tk, 'deps_left', #waiting)
return DEFERRED
