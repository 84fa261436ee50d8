-- Test only: the keys, words and defaults the preamble uses, for
-- comparison with keys.rs, status.rs and task.rs.
return {key('queue', 'q'), key('worker', 'w', 'running'), key('task', 't'),
        key('workers'), PAYLOADS, key('tasks'), key('job', 'j', 'done'),
        key('controller', 'c', 'done'),
        PENDING, RUNNING, COMPLETE, ERROR, CANCELLED, TIMEOUT, DIED, DEFERRED, IMPOSSIBLE,
        WORKER_IDLE, WORKER_BUSY, WORKER_LOST, WORKER_EXITED,
        tostring(DEFAULT_MAX_ATTEMPTS)}
