# The worker processes this session started, as the engine watches them
# while it waits (src/rust/src/engine/workers.rs).

# The worker processes this session started on ctl's server and namespace,
# for the engine, which watches them while it waits (see
# src/rust/src/engine/workers.rs): ended() lists those whose process ended
# since the last call, with how it ended; the engine declares those still
# registered lost at once (the task they ran counts the attempt) and calls
# replace() with them, which starts a new worker in the place of each, with
# the same settings, so that a task that kills its worker cannot empty the
# pool. A worker that left on its own (stopped, done with its tasks, idle)
# or never registered is not replaced. These run inside the engine's wait
# and must not use the waiting controller.
local_workers <- function(ctl) {
  mine <- function(s) identical(s$ctl$url, ctl$url) && identical(s$ctl$namespace, ctl$namespace)
  list(
    ended = function() {
      ids <- character()
      why <- character()
      for (id in names(redq_env$spawned)) {
        s <- redq_env$spawned[[id]]
        p <- redq_env$processes[[id]]
        if (s$reported || !mine(s) || is.null(p) || p$is_alive()) next
        redq_env$spawned[[id]]$reported <- TRUE
        ids <- c(ids, id)
        why <- c(why, exit_reason(p$get_exit_status()))
      }
      list(id = ids, why = why)
    },
    replace = function(ids) {
      for (id in ids) {
        s <- redq_env$spawned[[id]]
        if (is.null(s) || s$no_replace) next
        a <- s$again
        try(spawn_workers(1, a$queue, a$timeout, a$heartbeat, a$lease, a$log, a$max_tasks, s$ctl,
                          command = a$command, wait = FALSE, settings = a$settings))
        redq_env$spawned[[id]] <- NULL
      }
    })
}

# local_workers(ctl), made once per controller: a wait passes it each time.
watched_workers <- function(ctl) ctl$watched %||% (ctl$watched <- local_workers(ctl))

# How a worker's process ended, from its exit status (negative: the
# signal that killed it), as the reports of lost workers say it.
exit_reason <- function(status) {
  if (is.null(status) || is.na(status)) return("its R process ended")
  if (status >= 0) return(sprintf("its R process exited with status %d during its work", status))
  names <- c(`1` = "SIGHUP", `2` = "SIGINT", `4` = "SIGILL", `6` = "SIGABRT", `7` = "SIGBUS",
             `8` = "SIGFPE", `9` = "SIGKILL", `11` = "SIGSEGV", `13` = "SIGPIPE", `15` = "SIGTERM")
  sig <- names[as.character(-status)]
  sprintf("its R process was killed by signal %d%s", -status, if (is.na(sig)) "" else paste0(", ", sig))
}
