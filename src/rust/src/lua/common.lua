-- Shared functions of every script. The preamble before this file (made by
-- scripts.rs) defines PREFIX, NOW, the status words, TTLs and defaults, and
-- the key builders K.<name>(...) of keys.rs.

-- Payloads of tasks that may still run live in one namespace hash rather
-- than in each task's hash: a value over 64 bytes would push the task hash
-- out of Redis' compact encoding and triple the memory of a queued task.
local PAYLOADS = K.payloads()

-- A value over the inline limit is stored in chunks and its place holds a
-- reference (see big.rs): NUL, BIG_TAG, then len:chunks:sha:owner:part.
local BIG_MARK = string.char(0) .. BIG_TAG

-- A reference to a shared object (see big.rs): NUL, OBJECT_TAG, its address.
local OBJECT_MARK = string.char(0) .. OBJECT_TAG

-- Where a reference would start in stored value `v`: at its first byte,
-- or right after the header of a seal (a value sealed with the secret
-- carries its reference there, see signature.rs). References start with
-- a NUL, which no R serialization does.
local function ref_start(v)
  if not v then
    return nil
  end
  local at = 1
  if #v > SEAL_HEADER and string.sub(v, 1, #SEAL_MAGIC) == SEAL_MAGIC then
    at = SEAL_HEADER + 1
  end
  if string.byte(v, at) == 0 then
    return at
  end
  return nil
end

-- The address of the shared object `v` refers to, or nil.
local function object_of(v)
  local at = ref_start(v)
  if not at or string.sub(v, at, at + #OBJECT_MARK - 1) ~= OBJECT_MARK then
    return nil
  end
  return string.match(string.sub(v, at + #OBJECT_MARK), '^%x+$')
end

-- The chunk keys a reference names (none for a value offloaded to a
-- file) and, for a file, its SHA-256; nil if `v` is not a reference.
local function big_chunks(v)
  local at = ref_start(v)
  if not at or string.sub(v, at, at + #BIG_MARK - 1) ~= BIG_MARK then
    return nil
  end
  local n, sha, owner, part = string.match(string.sub(v, at + #BIG_MARK), '^%d+:(%d+):(%x+):(.+):(%a+)$')
  if not n then
    return nil
  end
  local ks = {}
  for i = 0, tonumber(n) - 1 do
    ks[#ks + 1] = K.chunk(owner, part .. i)
  end
  return ks, part == FILE_PART and sha or nil
end

-- UNLINK keys, a thousand at a time (unpack() has a bound).
local function unlink_all(ks)
  for i = 1, #ks, 1000 do
    redis.call('UNLINK', unpack(ks, i, math.min(i + 999, #ks)))
  end
end

-- Drop what reference `v` names, if it is one: its chunks, or its share
-- of an offloaded file (the last share lists the file for deletion by a
-- process that has the offload directory, see big.rs).
local function drop_value(v)
  local ks, file = big_chunks(v)
  if file then
    if redis.call('HINCRBY', K.offloaded(), file, -1) <= 0 then
      redis.call('HDEL', K.offloaded(), file)
      redis.call('SADD', K.offload_gone(), file)
    end
  elseif ks then
    unlink_all(ks)
  end
end

-- The value of string key `k` if it may be a reference (only short values
-- are read: a reference is short), else nil.
local function key_ref(k)
  local len = redis.call('STRLEN', k)
  if len > 0 and len <= 512 then
    return redis.call('GET', k)
  end
end

-- The chunk keys of the value in string key `k` (nil if it is not a
-- reference).
local function key_chunks(k)
  return big_chunks(key_ref(k))
end

-- Drop what the value in field `f` of hash `h` names, if it is a
-- reference (read only if short, as in key_ref).
local function drop_big(h, f)
  local len = redis.call('HSTRLEN', h, f)
  if len > 0 and len <= 512 then
    drop_value(redis.call('HGET', h, f))
  end
end

-- `n` more owners (tasks, job environments) refer to shared object `sha`,
-- which is there: counted, and its keys made permanent for owners that
-- never expire, else given a job's lifetime (renewed by each owner, unless
-- they are permanent already; `fresh`: just written).
local function hold_object(sha, n, expire, fresh)
  redis.call('HINCRBY', K.objects(), sha, n)
  local ok = K.object(sha)
  local keys = {ok}
  for _, k in ipairs(key_chunks(ok) or {}) do
    keys[#keys + 1] = k
  end
  if not expire then
    for _, k in ipairs(keys) do
      redis.call('PERSIST', k)
    end
  elseif fresh or redis.call('TTL', ok) > 0 then
    for _, k in ipairs(keys) do
      redis.call('EXPIRE', k, JOB_TTL_S)
    end
  end
end

-- `n` (default 1) owners fewer refer to shared object `sha`: the last one
-- takes it (and its chunks) away.
local function release_object(sha, n)
  if redis.call('HINCRBY', K.objects(), sha, -(n or 1)) > 0 then
    return
  end
  redis.call('HDEL', K.objects(), sha)
  local ok = K.object(sha)
  drop_value(key_ref(ok))
  redis.call('UNLINK', ok)
end

-- A task's payload is no longer needed: it goes, with its chunks and its
-- claim on a shared object (once: the payload's presence says whether
-- that claim is still held). `t` as fields() reads it.
local function drop_payload(id, t)
  if t.pbig then
    drop_big(PAYLOADS, id)
  end
  if redis.call('HDEL', PAYLOADS, id) == 1 and t.object then
    release_object(t.object)
  end
end

local TERMINAL = {[COMPLETE] = true, [ERROR] = true, [CANCELLED] = true, [TIMEOUT] = true,
                  [DIED] = true, [IMPOSSIBLE] = true}

-- The fields every transition reads: status, queue, worker, started, job
-- (whose completion list is told when the task ends), attempt,
-- max_attempts, and whether other tasks wait for it.
local function fields(tk)
  local t = redis.call('HMGET', tk, 'status', 'queue', 'worker', 'started', 'job', 'attempt',
                       'max_attempts', 'dependents', 'pbig', 'object', 'rbig')
  return {status = t[1], queue = t[2], worker = t[3], started = t[4], job = t[5],
          attempt = tonumber(t[6] or '0'), max_attempts = tonumber(t[7] or DEFAULT_MAX_ATTEMPTS),
          dependents = t[8] == '1', pbig = t[9] == '1', object = t[10], rbig = t[11] == '1'}
end

-- One line per attempt that did not end the task with a recorded result:
-- worker|started|ended|outcome (LOST, how a worker left, RETRY). The
-- attempt that ended it is described by the task's own worker, started,
-- finished and status fields (task.rs reads both), which keeps the
-- common case, one attempt, free of this string.
local function log_attempt(tk, wid, started, outcome, ended)
  local h = redis.call('HGET', tk, 'history') or ''
  redis.call('HSET', tk, 'history',
    h .. (wid or '') .. '|' .. (started or '') .. '|' .. (ended or NOW) .. '|' .. outcome .. '\n')
end

-- A completion notice: the task's id and the status it ended with, so a
-- waiter that needs only statuses need not read them again, then for a
-- task that completed with a small result (up to NOTICE_RESULT_MAX bytes,
-- stored inline) a space and the result, which spares a waiter that
-- wants it one more round trip.
local function notice(id, status, result)
  if status == COMPLETE and result and #result > 0 and #result <= NOTICE_RESULT_MAX
      and not ref_start(result) then
    return id .. ' ' .. status .. ' ' .. result
  end
  return id .. ' ' .. status
end

-- Tell whoever waits on the task that it ended: the completion list of its
-- job (a foreach loop, or the controller that created it).
local function notify(t, id, status, result)
  if t.job then
    local list = K.job_done(t.job)
    -- a list nobody drains expires; one its waiter keeps emptying is
    -- created again, and given its time to live again, with its next notice
    if redis.call('RPUSH', list, notice(id, status, result)) == 1 then
      redis.call('PEXPIRE', list, NOTIFY_TTL_MS)
    end
  end
end

-- A task ended: its DEFERRED dependents lose one dependency when it
-- completed (and are queued when none is left), or become IMPOSSIBLE, and
-- so on down the graph, when it did not.
local function settle_dependents(id, completed)
  local todo = {{id, completed}}
  while #todo > 0 do
    local item = table.remove(todo)
    local dk = K.task_dependents(item[1])
    local children = redis.call('SMEMBERS', dk)
    if #children > 0 then
      redis.call('DEL', dk)
    end
    for _, child in ipairs(children) do
      local ck = K.task(child)
      local c = fields(ck)
      if c.status == DEFERRED then
        if item[2] then
          if redis.call('HINCRBY', ck, 'deps_left', -1) <= 0 then
            redis.call('HSET', ck, 'status', PENDING)
            redis.call('LPUSH', K.queue(c.queue), child)
          end
        else
          redis.call('HSET', ck, 'status', IMPOSSIBLE, 'finished', NOW)
          notify(c, child, IMPOSSIBLE)
          if c.dependents then
            todo[#todo + 1] = {child, false}
          end
        end
      end
    end
  end
end

-- Enter a terminal status: whoever waits is told, and dependents move on.
-- A completed task's payload is no longer needed; a task API task that
-- ended otherwise keeps it until it is deleted, so that task_retry() can
-- run it again.
local function finish(tk, id, t, status, extra, result)
  redis.call('HSET', tk, 'status', status, 'finished', NOW, unpack(extra or {}))
  redis.call('HINCRBY', K.counts(), status, 1)
  if status ~= COMPLETE then
    redis.call('LPUSH', K.failures(), id)
    redis.call('LTRIM', K.failures(), 0, FAILURES_LIMIT - 1)
  end
  -- a task that expires belongs to a job that collects it and never runs
  -- it again: its payload goes whatever the end, so nothing outlives the
  -- job should its controller vanish
  if status == COMPLETE or redis.call('TTL', tk) > 0 then
    drop_payload(id, t)
  end
  notify(t, id, status, result)
  if t.dependents then
    settle_dependents(id, status == COMPLETE)
  end
end

-- A worker's totals, reported with its beats and when it leaves: how many
-- tasks it ran (`done` in its record), and the ms it spent on tasks and
-- how many since its last report (the namespace's `ms` and `timed`).
local function add_totals(wid, done, ms, n)
  if done and done ~= '' then
    redis.call('HSET', K.worker(wid), 'done', done)
  end
  if n and tonumber(n) > 0 then
    redis.call('HINCRBY', K.counts(), 'ms', ms)
    redis.call('HINCRBY', K.counts(), 'timed', n)
  end
end

-- Add an event to a worker's log, which is capped; `ttl`: the log goes
-- that many seconds from now (a worker that left).
local function worker_event(wid, text, ttl)
  local lk = K.worker_log(wid)
  redis.call('RPUSH', lk, NOW .. ' ' .. text)
  redis.call('LTRIM', lk, -WORKER_LOG_LIMIT, -1)
  if ttl then
    redis.call('EXPIRE', lk, ttl)
  end
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
-- task was requeued) are dropped. `began` is when the worker began it
-- (ms; '' if unknown): a task claimed in a batch is recorded as started,
-- and counts its attempt, only now. Returns 1 if this result was recorded.
local function complete(wid, id, status, result, began)
  redis.call('LREM', K.worker_running(wid), 1, id)
  local tk = K.task(id)
  local t = fields(tk)
  -- a result over the inline limit: its chunks were written with a time
  -- to live; they go with a result that is not recorded, and stay for
  -- good with one recorded on a task that does not expire
  local chunks = big_chunks(result)
  if not t.status or TERMINAL[t.status] then
    drop_value(result)
    return 0
  end
  if chunks then
    -- the scripts that drop the result look for its chunks
    redis.call('HSET', tk, 'rbig', 1)
    if redis.call('TTL', tk) < 0 then
      for _, k in ipairs(chunks) do
        redis.call('PERSIST', k)
      end
    end
  end
  if t.status == PENDING then
    -- requeued after its worker was declared lost: take it off the queue
    redis.call('LREM', K.queue(t.queue), 1, id)
  end
  if t.status == RUNNING and t.worker == wid and not t.started then
    redis.call('HINCRBY', tk, 'attempt', 1)
  end
  local extra = {'result', result, 'worker', wid}
  if began and began ~= '' then
    extra[#extra + 1] = 'started'
    extra[#extra + 1] = began
  end
  finish(tk, id, t, status, extra, result)
  return 1
end

-- A claimed id the worker will not start leaves its running list: its
-- task ended (`status`), is still PENDING (the caller puts it back in its
-- queue), or vanished (nil): a vanished one's record expired (its job's
-- controller vanished), and so does its payload.
local function unclaim(wid, id, status)
  redis.call('LREM', K.worker_running(wid), 1, id)
  if not status then
    drop_big(PAYLOADS, id)
    redis.call('HDEL', PAYLOADS, id)
  end
end

-- Mark a claimed id RUNNING on worker wid. The first task of a claim is
-- recorded as started now and counts an attempt; the others of a batch
-- are recorded only when they complete (`complete`), so that a worker
-- leaving or lost before it began them does not charge them an attempt.
-- Returns {id, payload, timeout, seed, job} and whether the task must run
-- on its own, or nil if it ended (cancelled) or vanished while queued.
local function start(wid, id, first)
  local tk = K.task(id)
  local t = redis.call('HMGET', tk, 'status', 'timeout', 'seed', 'solo', 'job')
  if not t[1] or TERMINAL[t[1]] then
    unclaim(wid, id, t[1])
    return nil
  end
  if first then
    redis.call('HSET', tk, 'status', RUNNING, 'worker', wid, 'started', NOW)
    redis.call('HINCRBY', tk, 'attempt', 1)
    redis.call('HSET', K.worker(wid), 'status', WORKER_BUSY, 'task', id)
  else
    redis.call('HSET', tk, 'status', RUNNING, 'worker', wid)
  end
  return {id, redis.call('HGET', PAYLOADS, id) or '', t[2] or '', t[3] or '', t[5] or ''},
         t[4] == '1'
end

-- Put a task back on its queue (the front); 1 unless that is the
-- worker's own queue `own`, 0 then.
local function requeue(queue, id, own)
  local q = K.queue(queue)
  redis.call('RPUSH', q, id)
  return q == own and 0 or 1
end

-- Give every task a worker holds back to its queue (front, so it runs next).
-- A task recorded as started counts an attempt: it ends DIED once it used
-- up max_attempts, else it is PENDING again. A task only claimed goes back
-- as it was. Returns {requeued, died}.
local function release_worker(wid, outcome)
  local running = K.worker_running(wid)
  local ids = redis.call('LRANGE', running, 0, -1)
  local requeued, died = 0, 0
  -- tasks addressed to this worker alone go back to its own queue, and
  -- count as requeued only if it stays (drop_private)
  local own = K.queue(PRIVATE_MARK .. wid)
  -- the list holds the newest claim first: walk from the oldest so that
  -- the queue gets them back in their original order
  for i = #ids, 1, -1 do
    local id = ids[i]
    local tk = K.task(id)
    local t = fields(tk)
    if t.status == RUNNING and t.started then
      log_attempt(tk, wid, t.started, outcome)
      if t.attempt >= t.max_attempts then
        finish(tk, id, t, DIED)
        died = died + 1
      else
        redis.call('HSET', tk, 'status', PENDING, 'worker', '')
        redis.call('HDEL', tk, 'started')
        requeued = requeued + requeue(t.queue, id, own)
      end
    elseif t.status == RUNNING then
      -- claimed in a batch and not known to have begun: back without an
      -- attempt, and alone next time, so that a task that kills its worker
      -- in a batch is charged from its next run on
      redis.call('HSET', tk, 'status', PENDING, 'worker', '', 'solo', 1)
      requeued = requeued + requeue(t.queue, id, own)
    elseif t.status == PENDING then
      requeued = requeued + requeue(t.queue, id, own)
    end
  end
  redis.call('DEL', running)
  return {requeued, died}
end

-- A worker left for good (exited or lost): the tasks addressed to it
-- alone (its own queue, where release_worker put back those it held) can
-- run nowhere else, so they end DIED. Returns how many.
local function drop_private(wid)
  local q = K.queue(PRIVATE_MARK .. wid)
  local ids = redis.call('LRANGE', q, 0, -1)
  redis.call('DEL', q)
  local died = 0
  for _, id in ipairs(ids) do
    local tk = K.task(id)
    local t = fields(tk)
    if t.status == PENDING then
      finish(tk, id, t, DIED)
      died = died + 1
    end
  end
  return died
end

-- Declare registered worker `wid` lost, `why` (its lease ran out, or the
-- session that started it saw its process end): give its tasks back
-- (release_worker: the task it was running is charged an attempt, and
-- ends DIED when it has none left), unregister it, and tell every waiting
-- controller through the event stream. Returns host, requeued, died.
local function lose_worker(wid, why)
  local r = release_worker(wid, WORKER_LOST)
  r[2] = r[2] + drop_private(wid)
  local wk = K.worker(wid)
  redis.call('HSET', wk, 'status', WORKER_LOST, 'ended', NOW, 'task', '', 'lost', why)
  redis.call('EXPIRE', wk, WORKER_TTL_S)
  worker_event(wid, 'lost (' .. why .. '): ' .. r[1] .. ' task(s) requeued, ' .. r[2] .. ' died',
               WORKER_TTL_S)
  redis.call('SREM', K.workers(), wid)
  redis.call('DEL', K.worker_control(wid), K.worker_alive(wid))
  local host = redis.call('HGET', wk, 'host') or ''
  -- every controller that is waiting reports it, whoever declared it
  redis.call('XADD', K.events(), 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'worker', wid,
             'host', host, 'requeued', r[1], 'died', r[2], 'why', why)
  return host, r[1], r[2]
end

-- ARGV[first..] as a table (unpack() of a long ARGV would overflow Lua's
-- stack).
local function args_from(first)
  local out = {}
  for i = first, #ARGV do
    out[#out + 1] = ARGV[i]
  end
  return out
end

-- Cancel (or, with delete, remove) tasks: PENDING ones leave their queue,
-- RUNNING ones are marked first (so their worker's result is dropped
-- whatever happens) and their worker is told to interrupt them. With
-- unlist, removed ids also leave the task API's list. Returns the status
-- each task had.
local function cancel_tasks(ids, delete, unlist)
  local out = {}
  local drop, ndrop = {}, {}
  local gone, ngone = {}, 0
  for _, id in ipairs(ids) do
    local tk = K.task(id)
    local t = fields(tk)
    out[#out + 1] = t.status or MISSING
    if t.status == PENDING then
      local qk = K.queue(t.queue)
      drop[qk] = drop[qk] or {}
      drop[qk][id] = true
      ndrop[qk] = (ndrop[qk] or 0) + 1
    elseif t.status == RUNNING then
      redis.call('RPUSH', K.worker_control(t.worker), CONTROL_CANCEL .. ' ' .. id)
    end
    if delete then
      if t.status then
        if t.rbig then
          drop_big(tk, 'result')
        end
        drop_payload(id, t)
        redis.call('DEL', tk)
        if not TERMINAL[t.status] and t.dependents then
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
  if unlist and ngone > 0 then
    remove_ids(K.tasks(), gone, ngone)
  end
  return out
end
