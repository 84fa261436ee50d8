-- Test only: the keys and words the preamble builds, for comparison with
-- keys.rs and status.rs.
return {key('queue', 'q'), key('worker', 'w', 'running'), key('task', 't'),
        key('workers'), PENDING, RUNNING, COMPLETE, ERROR, CANCELLED, TIMEOUT, DIED}
