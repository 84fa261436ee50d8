-- Shared preamble, prepended to every script by scripts.rs.
-- Mirrors keys.rs (key names) and status.rs (status words); a cargo test
-- checks that both sides agree. Every script is called with
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
local TERMINAL = {COMPLETE = true, ERROR = true, CANCELLED = true, TIMEOUT = true, DIED = true}
local WORKER_LOST, WORKER_EXITED = 'LOST', 'EXITED'

-- Completion notices and records of gone workers expire instead of piling up.
local NOTIFY_TTL_MS = 86400000
local WORKER_TTL_S = 86400

-- One line per ended attempt: worker|started|ended|outcome
local function log_attempt(tk, wid, started, outcome)
  local h = redis.call('HGET', tk, 'history') or ''
  redis.call('HSET', tk, 'history',
    h .. (wid or '') .. '|' .. (started or '') .. '|' .. NOW .. '|' .. outcome .. '\n')
end

local function notify(list, id)
  if list then
    redis.call('RPUSH', list, id)
    redis.call('PEXPIRE', list, NOTIFY_TTL_MS)
  end
end

-- First result wins: a task takes a terminal status once; later results
-- (a duplicate, or the late answer of a worker declared lost after the
-- task was requeued) are dropped. Returns 1 if this result was recorded.
local function complete(wid, id, status, result)
  redis.call('LREM', key('worker', wid, 'running'), 1, id)
  local tk = key('task', id)
  local cur = redis.call('HMGET', tk, 'status', 'queue', 'notify', 'started', 'worker')
  if not cur[1] or TERMINAL[cur[1]] then
    return 0
  end
  if cur[1] == PENDING then
    -- requeued after its worker was declared lost: take it off the queue
    redis.call('LREM', key('queue', cur[2]), 1, id)
  end
  redis.call('HSET', tk, 'status', status, 'result', result, 'finished', NOW, 'worker', wid)
  log_attempt(tk, wid, cur[5] == wid and cur[4] or '', status)
  notify(cur[3], id)
  return 1
end

-- Mark a claimed id RUNNING. Returns {id, payload, job, timeout}, or nil if
-- the task ended (cancelled) or vanished while it waited in the queue.
local function start(wid, id)
  local tk = key('task', id)
  local st = redis.call('HGET', tk, 'status')
  if not st or TERMINAL[st] then
    redis.call('LREM', key('worker', wid, 'running'), 1, id)
    return nil
  end
  redis.call('HSET', tk, 'status', RUNNING, 'worker', wid, 'started', NOW)
  redis.call('HINCRBY', tk, 'attempt', 1)
  redis.call('HSET', key('worker', wid), 'status', 'BUSY', 'task', id)
  local t = redis.call('HMGET', tk, 'payload', 'job', 'timeout')
  return {id, t[1], t[2] or '', t[3] or ''}
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
    local t = redis.call('HMGET', tk, 'status', 'queue', 'attempt', 'max_attempts', 'notify', 'started')
    if t[1] == RUNNING then
      log_attempt(tk, wid, t[6], outcome)
      if tonumber(t[3] or '0') >= tonumber(t[4] or '1') then
        redis.call('HSET', tk, 'status', DIED, 'finished', NOW)
        notify(t[5], id)
        died = died + 1
      else
        redis.call('HSET', tk, 'status', PENDING, 'worker', '')
        redis.call('RPUSH', key('queue', t[2]), id)
        requeued = requeued + 1
      end
    elseif t[1] == PENDING then
      redis.call('RPUSH', key('queue', t[2]), id)
      requeued = requeued + 1
    end
  end
  redis.call('DEL', running)
  return {requeued, died}
end
