-- Cancel tasks (see cancel_tasks in common.lua). Atomic so a task cannot be
-- claimed between the status check and its removal from the queue.
-- ARGV[3..] ids. Returns the status each task had.
return cancel_tasks(args_from(3), false, false)
