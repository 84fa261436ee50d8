-- Worker step: record the tasks the worker finished, then start the next
-- ones, in one round trip. Atomic so that at every instant each id is in
-- exactly one place (a queue, this worker's running list, or a terminal
-- status).
-- ARGV[3] wid, [4] n finished, then n quadruples (id, status, result,
-- began ms), then: the id BLMOVE already moved into the running list
-- ('' = none; MOVED_HEAD = sent right behind the BLMOVE, so whatever it
-- moved is the head of the list), how many tasks to start at most, the
-- queues in priority order.
-- Returns {n, accepted flags..., then id, payload, timeout, seed, job for
-- each task started}.
local wid = ARGV[3]
local n = tonumber(ARGV[4])
local out = {n}
local i = 5
for _ = 1, n do
  out[#out + 1] = complete(wid, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  i = i + 4
end
local moved, want, first_queue = ARGV[i], tonumber(ARGV[i + 1]), i + 2
local started = 0
if moved == MOVED_HEAD then
  -- The move puts what it took at the head of the running list, which
  -- holds nothing else not yet started, unless an earlier move's step was
  -- refused (a server turning replica) and the pipeline was sent again:
  -- what that move took goes back to the front of its queue.
  moved = ''
  local running = K.worker_running(wid)
  for _, id in ipairs(redis.call('LRANGE', running, 0, -1)) do
    local st = redis.call('HGET', K.task(id), 'status')
    if st ~= RUNNING then
      if moved == '' then
        moved = id
      else
        unclaim(wid, id, st)
        if st == PENDING then
          requeue(redis.call('HGET', K.task(id), 'queue'), id, '')
        end
      end
    end
  end
end

local function take(t)
  for _, v in ipairs(t) do out[#out + 1] = v end
  started = started + 1
end

if moved ~= '' then
  local t, solo = start(wid, moved, true)
  if t then
    take(t)
    if solo then want = started end
  end
end

-- Start several when the backlog is long: at most `want` (the worker sizes
-- it to a few milliseconds of its recent tasks), and never more than half
-- a fair share, so that idle workers still find work. A task marked to run
-- alone is started only as the first of a claim.
local running = K.worker_running(wid)
local nworkers = math.max(1, redis.call('SCARD', K.workers()))
local q = first_queue
while started < want and q <= #ARGV do
  local qk = K.queue(ARGV[q])
  local len = redis.call('LLEN', qk)
  if len == 0 then
    q = q + 1
  else
    local share = math.floor(len / (2 * nworkers))
    local room = math.max(1, math.min(want - started, share))
    if started > 0 and share == 0 then
      break
    end
    for _ = 1, room do
      local id = redis.call('LMOVE', qk, running, 'RIGHT', 'LEFT')
      if not id then break end
      local t, solo = start(wid, id, started == 0)
      if t and solo and started > 0 then
        -- back where it was, next in line: it runs first in a claim of its own
        redis.call('LMOVE', running, qk, 'LEFT', 'RIGHT')
        redis.call('HSET', K.task(id), 'status', PENDING, 'worker', '')
        want = started
        break
      end
      if t then
        take(t)
        if solo then
          -- it runs alone: nothing else in this claim
          want = started
          break
        end
      end
    end
    if started == 0 then
      -- everything taken off this queue had ended meanwhile: look again
      len = redis.call('LLEN', qk)
      if len == 0 then q = q + 1 end
    else
      break
    end
  end
end
if started == 0 then
  redis.call('HSET', K.worker(wid), 'status', WORKER_IDLE, 'task', '')
end
return out
