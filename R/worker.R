# Managing workers from a controller: spawn local ones, list, inspect, stop.

#' Start local workers
#'
#' Starts `n` worker processes on this machine (`Rscript` running
#' [worker_main()]), serving `queue` of the controller's namespace, and
#' waits until they have registered. They are supervised: they exit when
#' this R session ends, even if it crashes. The server URL (password
#' included) reaches them through their environment, never their command
#' line.
#'
#' @param n Number of workers.
#' @param queue Queues to serve, highest priority first; `NULL` for the
#'   controller's default queue.
#' @param timeout Seconds to wait for the workers to register.
#' @param heartbeat,lease Heartbeat period and lease length in seconds
#'   (defaults: options `redq.heartbeat`, 1, and `redq.lease`, 5). A worker
#'   silent for `lease` seconds is declared lost and its tasks run elsewhere.
#' @param log `NULL` to discard the workers' output, or a directory to
#'   write one log file per worker.
#' @param max_tasks Each worker exits after this many tasks.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return Invisibly, the new workers' ids.
#' @export
#' @examples
#' if (redq_available()) {
#'   ids <- worker_spawn(2)
#'   worker_status(ids)
#'   worker_stop(ids)
#' }
worker_spawn <- function(n = 1, queue = NULL, timeout = 30, heartbeat = NULL, lease = NULL,
                         log = NULL, max_tasks = Inf, controller = NULL) {
  spawn_workers(n, queue, timeout, heartbeat, lease, log, max_tasks, controller)
}

# worker_spawn(), running `command` in each process (a worker_main() or a
# loop of its own that registers as a worker); `wait`: until they have
# registered.
spawn_workers <- function(n, queue, timeout, heartbeat, lease, log, max_tasks, controller,
                          command = WORKER_COMMAND, wait = TRUE, doredis = list()) {
  n <- check_count(n, "n")
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  for (q in queue) check_string(q, "queue")
  timeout <- check_seconds(timeout, "timeout")
  # checked here: the workers would only fail in their own processes
  heartbeat <- check_seconds(heartbeat %||% getOption("redq.heartbeat", 1), "heartbeat",
                             zero_ok = FALSE)
  lease <- check_seconds(lease %||% getOption("redq.lease", 5), "lease", zero_ok = FALSE)
  check_lease(heartbeat, lease)
  max_tasks <- check_count(max_tasks, "max_tasks", none_ok = TRUE)
  host <- Sys.info()[["nodename"]]
  ids <- sprintf("%s-%s-%d", host, substr(basename(tempfile("")), 5, 12), seq_len(n))
  rscript <- file.path(R.home("bin"), "Rscript")
  env <- c("current",
           REDIS_URL = ctl$url, REDQ_NAMESPACE = ctl$namespace,
           REDQ_QUEUES = paste(queue, collapse = ","),
           REDQ_HEARTBEAT = heartbeat, REDQ_LEASE = lease,
           REDQ_MAX_TASKS = max_tasks,
           R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep))
  # doRedis' worker settings: linger, timelimit, loglevel, a log file all
  # workers append to, the console, another R, workers that outlive us
  d <- doredis
  env <- c(env, REDQ_LINGER = d$linger, REDQ_TIMELIMIT = d$timelimit,
           REDQ_LOGLEVEL = d$loglevel, REDQ_LOG = d$log_file)
  args <- c("--vanilla", "-e", command)
  if (!is.null(d$rbin)) {
    rscript <- d$rbin
    args <- c("--vanilla", "--slave", "-e", command)
  }
  outlive <- isTRUE(d$outlive)
  for (id in ids) {
    out <- if (isTRUE(d$console)) "" else if (is.null(log)) NULL else file.path(log, paste0(id, ".log"))
    proc <- processx::process$new(
      rscript, args, env = c(env, REDQ_NAME = id), stdout = out,
      stderr = if (is.null(out)) NULL else if (identical(out, "")) "" else "2>&1",
      supervise = !outlive, cleanup = !outlive)
    redq_env$processes[[id]] <- proc
  }
  if (wait) wait_registered(ctl, ids, timeout)
  invisible(ids)
}

# Workers attach redq, as doRedis workers attach doRedis, so that tasks can
# call redisGet() and friends.
WORKER_COMMAND <- "suppressPackageStartupMessages(library(redq)); worker_main()"

# Registration is the worker's first write; poll for it (start-up only,
# never on the task path) and fail early if a process died instead.
wait_registered <- function(ctl, ids, timeout) {
  deadline <- Sys.time() + timeout
  repeat {
    alive <- worker_list(ctl)
    if (all(ids %in% alive)) {
      return(invisible(TRUE))
    }
    for (id in setdiff(ids, alive)) {
      proc <- redq_env$processes[[id]]
      if (!is.null(proc) && !proc$is_alive()) {
        redq_abort("worker", sprintf(
          "worker %s exited during start-up with status %s; start it with log = tempdir() to see why",
          id, format(proc$get_exit_status())))
      }
    }
    if (Sys.time() > deadline) {
      redq_abort("timeout", sprintf(
        "%d worker(s) did not register within %g s; is redq installed where Rscript finds it?",
        length(setdiff(ids, alive)), timeout))
    }
    Sys.sleep(0.01)
  }
}

#' Inspect workers
#'
#' `worker_list()` gives the ids of live registered workers.
#' `worker_status()` gives each worker's status: `IDLE`, `BUSY`, `EXITED`,
#' `LOST`, or `MISSING`. `worker_info()` gives everything a worker
#' registered (host, pid, queues, R version, start time, heartbeat
#' settings), whether its lease is alive, and, for workers this session
#' started, how the process ended (`exit_status`; a negative number is the
#' signal that killed it).
#'
#' @param ids Worker ids; `NULL` for all live workers.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `worker_list()`: ids. `worker_status()`: named character vector.
#'   `worker_info()`: named list of lists.
#' @export
worker_list <- function(controller = NULL) {
  ctl <- get_controller(controller)
  rs_check(rs_worker_list(ctl$ptr))
}

#' @rdname worker_list
#' @export
worker_status <- function(ids = NULL, controller = NULL) {
  info <- worker_info(ids, controller)
  vapply(info, function(i) i$status, "")
}

#' @rdname worker_list
#' @export
worker_info <- function(ids = NULL, controller = NULL) {
  ctl <- get_controller(controller)
  ids <- ids %||% worker_list(ctl)
  ids <- check_ids(ids)
  info <- rs_check(rs_worker_info(ctl$ptr, ids))
  out <- lapply(seq_along(ids), function(i) {
    x <- info[[i]]
    proc <- redq_env$processes[[ids[[i]]]]
    if (!is.null(proc) && !proc$is_alive()) {
      x$exit_status <- proc$get_exit_status()
    }
    x
  })
  stats::setNames(out, ids)
}

#' Stop workers
#'
#' `type = "graceful"` lets each worker finish its current task, then exit.
#' `type = "kill"` makes it exit at once; its task goes back to the queue.
#' Both work for workers on any machine, through the worker's control list.
#'
#' @param ids Worker ids; `NULL` for all live workers of the namespace.
#' @param type `"graceful"` or `"kill"`.
#' @param wait Seconds to wait for the workers to leave (0: do not wait).
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return Invisibly, the ids signalled.
#' @export
worker_stop <- function(ids = NULL, type = c("graceful", "kill"), wait = 10, controller = NULL) {
  type <- match.arg(type)
  ctl <- get_controller(controller)
  ids <- check_ids(ids %||% worker_list(ctl))
  wait <- check_seconds(wait, "wait")
  if (length(ids) == 0L) {
    return(invisible(ids))
  }
  rs_check(rs_worker_signal(ctl$ptr, ids, identical(type, "kill")))
  deadline <- Sys.time() + wait
  while (wait > 0 && any(ids %in% worker_list(ctl)) && Sys.time() < deadline) {
    Sys.sleep(0.02)
  }
  for (id in ids) {
    proc <- redq_env$processes[[id]]
    if (!is.null(proc) && wait > 0) proc$wait(1000)
  }
  invisible(ids)
}

#' The worker launcher script
#'
#' Copies `redq-worker`, the launcher that cluster nodes run, to `path`:
#' \preformatted{
#' redq-worker [--url-from-env] [--queue q1,q2] [--name NAME]
#'             [--heartbeat S] [--lease S] [--max-tasks N] NAMESPACE
#' }
#' It reads the server from `REDIS_URL` (so the password never appears on
#' a command line) and runs [worker_main()].
#'
#' @param path Where to write the script (a file or a directory).
#' @return Invisibly, the path of the script.
#' @export
#' @examples
#' worker_script(tempdir())
worker_script <- function(path) {
  check_string(path, "path")
  if (dir.exists(path)) {
    path <- file.path(path, "redq-worker")
  }
  src <- system.file("bin", "redq-worker", package = "redq", mustWork = TRUE)
  if (!file.copy(src, path, overwrite = TRUE)) {
    redq_abort("argument", sprintf("cannot write '%s'", path))
  }
  Sys.chmod(path, "0755")
  invisible(path)
}

#' Wait for workers; remove a namespace
#'
#' `worker_wait()` waits until `n` live workers serve `queue` (any queue
#' with `NULL`), for workers started elsewhere (a scheduler, another
#' machine). `redq_destroy()` stops every worker of the namespace (killing
#' what they run) and deletes all its keys: tasks, results, queues, values
#' and records.
#'
#' @param n Number of workers.
#' @param queue Queue they must serve, or `NULL`.
#' @param timeout Seconds to wait.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `worker_wait()`: invisibly, the ids of the live workers.
#'   `redq_destroy()`: invisibly, the number of keys deleted.
#' @export
worker_wait <- function(n = 1, queue = NULL, timeout = 60, controller = NULL) {
  n <- check_count(n, "n")
  timeout <- check_seconds(timeout, "timeout")
  ctl <- get_controller(controller)
  deadline <- Sys.time() + timeout
  repeat {
    ids <- if (is.null(queue)) worker_list(ctl) else serving_workers(ctl, queue)
    if (length(ids) >= n) return(invisible(ids))
    if (Sys.time() > deadline) {
      redq_abort("timeout", sprintf("%d of %d worker(s) registered within %g s", length(ids), n,
                                    timeout))
    }
    Sys.sleep(0.05)
  }
}

#' @rdname worker_wait
#' @export
redq_destroy <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- worker_list(ctl)
  if (length(ids)) worker_stop(ids, type = "kill", wait = 5, controller = ctl)
  invisible(rs_check(rs_controller_destroy(ctl$ptr)))
}
