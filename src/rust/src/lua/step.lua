-- Worker step: complete the previous task, then start the next one, in one
-- round trip. Atomic so that at every instant each id is in exactly one
-- place (a queue, this worker's running list, or a terminal status).
-- ARGV[3] wid, [4] done id ('' = none), [5] done status, [6] done result,
-- [7] next id already in the running list ('' = none), [8] max batch,
-- [9..] queues in priority order.
-- Returns {accepted, id, payload, timeout, seed, extra claimed ids...};
-- {accepted} alone when there is nothing to run.
local wid = ARGV[3]
local accepted = 0
if ARGV[4] ~= '' then
  accepted = complete(wid, ARGV[4], ARGV[5], ARGV[6])
end

local function reply(task, extra)
  local out = {accepted, task[1], task[2], task[3], task[4]}
  for _, id in ipairs(extra) do out[#out + 1] = id end
  return out
end

if ARGV[7] ~= '' then
  local t = start(wid, ARGV[7])
  if t then return reply(t, {}) end
end

-- Claim a batch when the backlog is long: at most max_batch, and never more
-- than half a fair share, so that idle workers still find work.
local running = K.worker_running(wid)
local max_batch = tonumber(ARGV[8])
local nworkers = math.max(1, redis.call('SCARD', K.workers()))
for i = 9, #ARGV do
  local qk = K.queue(ARGV[i])
  local len = redis.call('LLEN', qk)
  while len > 0 do
    local n = math.max(1, math.min(max_batch, math.floor(len / (2 * nworkers))))
    local ids = {}
    for j = 1, n do
      ids[j] = redis.call('LMOVE', qk, running, 'RIGHT', 'LEFT')
    end
    len = len - n
    for j = 1, n do
      local t = start(wid, ids[j])
      if t then
        local extra = {}
        for k = j + 1, n do extra[#extra + 1] = ids[k] end
        return reply(t, extra)
      end
    end
  end
end
redis.call('HSET', K.worker(wid), 'status', WORKER_IDLE, 'task', '')
return {accepted}
