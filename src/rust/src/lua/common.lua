-- Shared preamble, prepended to every script by scripts.rs.
-- Mirrors keys.rs (key names), status.rs (task and worker status words) and
-- task::DEFAULT_MAX_ATTEMPTS; a cargo test checks that both sides agree.
-- Every script is called with
--   KEYS[1] = the namespace's version key (routes the call to the
--             namespace's cluster slot; all keys share the {ns} hash tag)
--   ARGV[1] = key prefix "redq:{ns}:",  ARGV[2] = now (ms since epoch)
local PREFIX = ARGV[1]
local NOW = ARGV[2]

local function key(...)
  return PREFIX .. table.concat({...}, ':')
end

local PENDING, RUNNING, COMPLETE, ERROR = 'PENDING', 'RUNNING', 'COMPLETE', 'ERROR'
local CANCELLED, TIMEOUT, DIED = 'CANCELLED', 'TIMEOUT', 'DIED'
local DEFERRED, IMPOSSIBLE = 'DEFERRED', 'IMPOSSIBLE'
local TERMINAL = {COMPLETE = true, ERROR = true, CANCELLED = true, TIMEOUT = true, DIED = true,
                  IMPOSSIBLE = true}
local WORKER_IDLE, WORKER_BUSY, WORKER_LOST, WORKER_EXITED = 'IDLE', 'BUSY', 'LOST', 'EXITED'
local DEFAULT_MAX_ATTEMPTS = 3

-- Completion notices and records of gone workers expire instead of piling up.
local NOTIFY_TTL_MS = 86400000
local WORKER_TTL_S = 86400

-- Payloads of unfinished tasks live in one namespace hash rather than in
-- each task's hash: a value over 64 bytes would push the task hash out of
-- Redis' compact encoding and triple the memory of a queued task.
local PAYLOADS = key('payloads')

-- The fields every transition reads: status, queue, worker, started, job,
-- notify (the submitting controller's id), attempt, max_attempts.
local function fields(tk)
  local t = redis.call('HMGET', tk, 'status', 'queue', 'worker', 'started', 'job', 'notify',
                       'attempt', 'max_attempts')
  return {status = t[1], queue = t[2], worker = t[3], started = t[4], job = t[5], notify = t[6],
          attempt = tonumber(t[7] or '0'), max_attempts = tonumber(t[8] or DEFAULT_MAX_ATTEMPTS)}
end

-- One line per ended attempt: worker|started|ended|outcome
local function log_attempt(tk, wid, started, outcome)
  local h = redis.call('HGET', tk, 'history') or ''
  redis.call('HSET', tk, 'history',
    h .. (wid or '') .. '|' .. (started or '') .. '|' .. NOW .. '|' .. outcome .. '\n')
end

-- Tell whoever waits on the task that it ended: a foreach job's list, or
-- the list of the controller that created it.
local function notify(t, id)
  local list
  if t.job then
    list = key('job', t.job, 'done')
  elseif t.notify then
    list = key('controller', t.notify, 'done')
  end
  if list then
    redis.call('RPUSH', list, id)
    redis.call('PEXPIRE', list, NOTIFY_TTL_MS)
  end
end

-- A task ended: its DEFERRED dependents lose one dependency when it
-- completed (and are queued when none is left), or become IMPOSSIBLE, and
-- so on down the graph, when it did not.
local function settle_dependents(id, completed)
  local todo = {{id, completed}}
  while #todo > 0 do
    local item = table.remove(todo)
    local dk = key('task', item[1], 'dependents')
    local children = redis.call('SMEMBERS', dk)
    if #children > 0 then
      redis.call('DEL', dk)
    end
    for _, child in ipairs(children) do
      local ck = key('task', child)
      local c = fields(ck)
      if c.status == DEFERRED then
        if item[2] then
          if redis.call('HINCRBY', ck, 'deps_left', -1) <= 0 then
            redis.call('HSET', ck, 'status', PENDING)
            redis.call('LPUSH', key('queue', c.queue), child)
          end
        else
          redis.call('HSET', ck, 'status', IMPOSSIBLE, 'finished', NOW)
          notify(c, child)
          todo[#todo + 1] = {child, false}
        end
      end
    end
  end
end

-- Enter a terminal status: whoever waits is told, and dependents move on.
-- A foreach task's payload is no longer needed; a task API task keeps it
-- until it is deleted, so that task_retry() can run it again.
local function finish(tk, id, t, status, extra)
  redis.call('HSET', tk, 'status', status, 'finished', NOW, unpack(extra or {}))
  if t.job then
    redis.call('HDEL', PAYLOADS, id)
  end
  notify(t, id)
  settle_dependents(id, status == COMPLETE)
end

-- Remove the ids of `set` (count of them: n) from a list. One LREM each
-- would be quadratic and block the server for long lists: past a few ids
-- the list is rebuilt once, in order, without them.
local function remove_ids(list, set, n)
  if n <= 16 then
    for id in pairs(set) do
      redis.call('LREM', list, 1, id)
    end
    return
  end
  local all = redis.call('LRANGE', list, 0, -1)
  redis.call('DEL', list)
  local keep = {}
  for _, id in ipairs(all) do
    if not set[id] then
      keep[#keep + 1] = id
      if #keep == 5000 then
        redis.call('RPUSH', list, unpack(keep))
        keep = {}
      end
    end
  end
  if #keep > 0 then
    redis.call('RPUSH', list, unpack(keep))
  end
end

-- First result wins: a task takes a terminal status once; later results
-- (a duplicate, or the late answer of a worker declared lost after the
-- task was requeued) are dropped. Returns 1 if this result was recorded.
local function complete(wid, id, status, result)
  redis.call('LREM', key('worker', wid, 'running'), 1, id)
  local tk = key('task', id)
  local t = fields(tk)
  if not t.status or TERMINAL[t.status] then
    return 0
  end
  if t.status == PENDING then
    -- requeued after its worker was declared lost: take it off the queue
    redis.call('LREM', key('queue', t.queue), 1, id)
  end
  log_attempt(tk, wid, t.worker == wid and t.started or '', status)
  finish(tk, id, t, status, {'result', result, 'worker', wid})
  return 1
end

-- Mark a claimed id RUNNING. Returns {id, payload, job, timeout}, or nil if
-- the task ended (cancelled) or vanished while it waited in the queue.
local function start(wid, id)
  local tk = key('task', id)
  local t = redis.call('HMGET', tk, 'status', 'job', 'timeout')
  if not t[1] or TERMINAL[t[1]] then
    redis.call('LREM', key('worker', wid, 'running'), 1, id)
    return nil
  end
  redis.call('HSET', tk, 'status', RUNNING, 'worker', wid, 'started', NOW)
  redis.call('HINCRBY', tk, 'attempt', 1)
  redis.call('HSET', key('worker', wid), 'status', WORKER_BUSY, 'task', id)
  return {id, redis.call('HGET', PAYLOADS, id), t[2] or '', t[3] or ''}
end

-- Give every task a worker holds back to its queue (front, so it runs next).
-- A task that was RUNNING counts an attempt: it ends DIED once it used up
-- max_attempts, else it is PENDING again. A task only claimed (still
-- PENDING) goes back as it was. Returns {requeued, died}.
local function release_worker(wid, outcome)
  local running = key('worker', wid, 'running')
  local ids = redis.call('LRANGE', running, 0, -1)
  local requeued, died = 0, 0
  -- the list holds the newest claim first: walk from the oldest so that
  -- the queue gets them back in their original order
  for i = #ids, 1, -1 do
    local id = ids[i]
    local tk = key('task', id)
    local t = fields(tk)
    if t.status == RUNNING then
      log_attempt(tk, wid, t.started, outcome)
      if t.attempt >= t.max_attempts then
        finish(tk, id, t, DIED)
        died = died + 1
      else
        redis.call('HSET', tk, 'status', PENDING, 'worker', '')
        redis.call('RPUSH', key('queue', t.queue), id)
        requeued = requeued + 1
      end
    elseif t.status == PENDING then
      redis.call('RPUSH', key('queue', t.queue), id)
      requeued = requeued + 1
    end
  end
  redis.call('DEL', running)
  return {requeued, died}
end

-- Cancel (or, with delete, remove) tasks: PENDING ones leave their queue,
-- RUNNING ones are marked first (so their worker's result is dropped
-- whatever happens) and their worker is told to interrupt them.
-- Returns the status each task had.
local function cancel_tasks(first, delete)
  local out = {}
  local drop, ndrop = {}, {}
  local gone, ngone = {}, 0
  for i = first, #ARGV do
    local id = ARGV[i]
    local tk = key('task', id)
    local t = fields(tk)
    out[#out + 1] = t.status or 'MISSING'
    if t.status == PENDING then
      local qk = key('queue', t.queue)
      drop[qk] = drop[qk] or {}
      drop[qk][id] = true
      ndrop[qk] = (ndrop[qk] or 0) + 1
    elseif t.status == RUNNING then
      redis.call('RPUSH', key('worker', t.worker, 'control'), 'CANCEL ' .. id)
      log_attempt(tk, t.worker, t.started, CANCELLED)
    end
    if delete then
      if t.status then
        redis.call('DEL', tk)
        redis.call('HDEL', PAYLOADS, id)
        if not TERMINAL[t.status] then
          settle_dependents(id, false)
        end
        gone[id] = true
        ngone = ngone + 1
      end
    elseif t.status == PENDING or t.status == RUNNING or t.status == DEFERRED then
      finish(tk, id, t, CANCELLED)
    end
  end
  for qk, ids in pairs(drop) do
    remove_ids(qk, ids, ndrop[qk])
  end
  if ngone > 0 then
    remove_ids(key('tasks'), gone, ngone)
  end
  return out
end
