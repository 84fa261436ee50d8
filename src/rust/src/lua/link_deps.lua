-- Link new DEFERRED tasks to the tasks they depend on: ARGV[3] = k, the
-- number of distinct dependency ids in ARGV[4 .. 3 + k], then the ids of
-- the new tasks (which all share those dependencies). Sent once per
-- submission, inside its MULTI/EXEC, so no dependency can end between the
-- check and the link: the tasks are queued at once if every dependency has
-- completed, become IMPOSSIBLE if one ended otherwise (or does not exist),
-- and otherwise wait, counted in deps_left, in each unfinished dependency's
-- set. Returns the status each new task has.
local k = tonumber(ARGV[3])
local waiting = {}
local failed = false
for i = 4, 3 + k do
  local st = redis.call('HGET', K.task(ARGV[i]), 'status')
  if st ~= COMPLETE then
    if not st or TERMINAL[st] then
      failed = true
    else
      waiting[#waiting + 1] = ARGV[i]
    end
  end
end
local out = {}
for i = 4 + k, #ARGV do
  local id = ARGV[i]
  local tk = K.task(id)
  local t = fields(tk)
  if t.status ~= DEFERRED then
    out[#out + 1] = t.status or MISSING
  elseif failed then
    finish(tk, id, t, IMPOSSIBLE)
    out[#out + 1] = IMPOSSIBLE
  elseif #waiting == 0 then
    redis.call('HSET', tk, 'status', PENDING)
    redis.call('LPUSH', K.queue(t.queue), id)
    out[#out + 1] = PENDING
  else
    for _, dep in ipairs(waiting) do
      redis.call('SADD', K.task_dependents(dep), id)
      redis.call('HSET', K.task(dep), 'dependents', 1)
    end
    redis.call('HSET', tk, 'deps_left', #waiting)
    out[#out + 1] = DEFERRED
  end
end
return out
