# System cases: worker start-up, recovery from a killed worker, and the
# memory of an idle worker.

# worker_spawn(2) returns once both workers have registered, i.e. are
# ready to claim tasks.
case_startup <- function(ctl) {
  t <- vapply(seq_len(reps(5, 2)), function(i) {
    dt <- elapsed(ids <- worker_spawn(2, controller = ctl))
    on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl))
    dt
  }, 0)
  record("start-up: 2 workers", "redq", t, "s", group = "startup",
         target = target_at_most(0.3, "s"))
}

# Kill (SIGKILL) the worker running a 1 s task and time until the task's
# result is in; it must be detected through the lapsed lease and rerun on
# the other worker.
case_recovery <- function(ctl, heartbeat = 0.2, lease = 1, task_s = 1) {
  to_result <- to_restart <- numeric()
  for (i in seq_len(reps(3, 1))) {
    # recovery by the other worker, not by a replacement of the killed one
    ids <- worker_spawn(2, heartbeat = heartbeat, lease = lease, controller = ctl, replace = FALSE)$id
    on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl))
    id <- task_create_expr({Sys.sleep(task_s); 1}, controller = ctl)
    busy <- wait_busy(ctl, ids, id)
    pid <- as.integer(worker_info(busy, ctl)[[1]]$pid)
    t_kill <- now()
    tools::pskill(pid, tools::SIGKILL)
    # task_wait warns about the lost worker: that is the point here
    suppressWarnings(task_wait(id, timeout = 30, progress = FALSE, controller = ctl))
    to_result <- c(to_result, now() - t_kill)
    stopifnot(identical(task_result(id, controller = ctl), 1))
    info <- task_info(id, ctl)
    stopifnot(info$attempt >= 2L)
    to_restart <- c(to_restart, as.numeric(info$started) - t_kill)
    task_delete(id, controller = ctl)
    worker_stop(ids, type = "kill", wait = 5, controller = ctl)
    on.exit()
  }
  record(sprintf("recovery: kill -> rerun starts (lease %gs)", lease), "redq", to_restart, "s",
         target = target_at_most(lease + 1, "s"))
  record(sprintf("recovery: kill -> result (lease %gs)", lease), "redq", to_result, "s",
         target = target_at_most(lease + 1 + task_s, "s"))
  note(sprintf(paste("recovery: heartbeat %gs, lease %gs, task sleeps %gs; target 'lease + 1 s'",
                     "applies to the rerun starting, the result target adds the task's own %gs"),
               heartbeat, lease, task_s, task_s))
}

wait_busy <- function(ctl, ids, task, timeout = 10) {
  deadline <- now() + timeout
  repeat {
    info <- worker_info(ids, ctl)
    busy <- names(info)[vapply(info, function(w) {
      identical(w$status, "BUSY") && identical(w$task, task)
    }, logical(1))]
    if (length(busy)) return(busy[[1]])
    if (now() > deadline) stop("no worker took task ", task, " within ", timeout, " s")
    Sys.sleep(0.01)
  }
}

# Resident memory of a freshly started worker that has not run anything
# (one that has run tasks is measured in the throughput case).
case_worker_memory <- function(ctl) {
  ids <- worker_spawn(2, controller = ctl)$id
  on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl), add = TRUE)
  Sys.sleep(1) # past start-up
  rss <- vapply(worker_info(ids, ctl), function(w) proc_status_mb(w$pid), 0)
  record("memory: idle worker RSS", "redq", rss, "MB", group = "worker-rss",
         target = target_at_most(80, "MB"))
}
