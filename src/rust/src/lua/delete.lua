-- Delete task API tasks: cancel what has not ended, then remove their
-- records, payloads and task-list entries, in one atomic step.
-- ARGV[3..] ids. Returns the status each task had.
return cancel_tasks(args_from(3), true, true)
