# Managing workers from a controller: spawn local ones, list, inspect, stop.

#' Start local workers
#'
#' Starts `n` worker processes on this machine (`Rscript` running
#' [worker_main()]), serving `queue` of the controller's namespace, and
#' waits until they have registered. They exit when this R session ends,
#' even if it crashes: each watches its parent process and leaves within a
#' heartbeat of losing it ([startLocalWorkers()] can start workers that
#' outlive the session). The server URL (password
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
#' @param log Where each worker's output goes: `NULL` for a file in this
#'   session's temporary directory (read with the handle's `logs()`),
#'   `FALSE` to discard it, or a directory for one file per worker.
#' @param max_tasks Each worker exits after this many tasks.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @param idle_timeout Each worker exits after this many seconds without a
#'   task.
#' @param config The name of a configuration saved with
#'   [worker_config_save()]: it fills in the settings not given here.
#' @param task_log Keep what each task prints in Redis ([task_log()]).
#' @param replace While this session waits for tasks (any front end), a
#'   worker whose process ends in the middle of its work (a task called
#'   `quit()`, R crashed, the process was killed) is declared lost at once,
#'   with how it ended, and, with `replace = TRUE`, replaced by a new
#'   worker with the same settings (listed by [worker_list()], not in this
#'   handle's `$id`). Workers that stop, finish their `max_tasks` or reach
#'   their idle timeout are not replaced.
#' @return Invisibly, a handle on the new workers (as rrq's worker
#'   manager): `$id` holds their ids, and `$stop(worker_id = NULL, type =
#'   "graceful")`, `$kill(worker_id = NULL)` (the process, by signal),
#'   `$is_alive(worker_id = NULL)` and `$logs(worker_id)` (the lines the
#'   worker printed) act on all of them or on the ids given. Every
#'   function that takes worker ids also takes the handle.
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(2)
#'   w$id
#'   worker_status(w)
#'   w$is_alive()
#'   w$stop()
#' }
worker_spawn <- function(n = 1, queue = NULL, timeout = 30, heartbeat = NULL, lease = NULL,
                         log = NULL, max_tasks = Inf, controller = NULL, idle_timeout = Inf,
                         config = NULL, task_log = FALSE, replace = TRUE) {
  ctl <- get_controller(controller)
  if (!is.null(config)) {
    # a saved configuration fills in what the call does not give
    cfg <- worker_config_read(config, controller = ctl)
    given <- names(match.call())[-1]
    for (f in intersect(names(cfg), c("queue", "heartbeat", "lease", "max_tasks", "idle_timeout"))) {
      if (!f %in% given) assign(f, cfg[[f]])
    }
  }
  idle_timeout <- check_seconds(idle_timeout, "idle_timeout", none_ok = TRUE)
  ids <- spawn_workers(n, queue, timeout, heartbeat, lease, log, max_tasks, ctl,
                       settings = list(idle_timeout = as.character(idle_timeout),
                                      task_log = if (isTRUE(task_log)) "1"),
                       replace = isTRUE(replace))
  invisible(worker_handle(ids, ctl))
}

# What worker_spawn() returns: the ids and the functions that act on them.
worker_handle <- function(ids, ctl) {
  pick <- function(worker_id) {
    if (is.null(worker_id)) return(ids)
    worker_id <- check_ids(worker_id)
    bad <- setdiff(worker_id, ids)
    if (length(bad)) {
      redq_abort("argument", sprintf("%s: not started by this handle (its workers are in $id)",
                                     paste(bad, collapse = ", ")))
    }
    worker_id
  }
  procs <- function(worker_id) redq_env$processes[pick(worker_id)]
  h <- list(
    id = ids,
    stop = function(worker_id = NULL, type = c("graceful", "kill"), wait = 10) {
      worker_stop(pick(worker_id), type = type, wait = wait, controller = ctl)
    },
    kill = function(worker_id = NULL) {
      # the process itself, as the operating system sees it: for a worker
      # that no longer answers its control list (and is not replaced)
      for (id in pick(worker_id)) {
        if (!is.null(redq_env$spawned[[id]])) redq_env$spawned[[id]]$no_replace <- TRUE
      }
      for (p in procs(worker_id)) if (!is.null(p) && p$is_alive()) p$kill()
      invisible(pick(worker_id))
    },
    is_alive = function(worker_id = NULL) {
      vapply(procs(worker_id), function(p) !is.null(p) && p$is_alive(), TRUE)
    },
    logs = function(worker_id) {
      worker_id <- pick(worker_id)
      if (length(worker_id) != 1L) {
        redq_abort("argument", "'worker_id' must be one worker id (one of $id)")
      }
      path <- redq_env$logs[[worker_id]]
      if (is.null(path)) {
        redq_abort("argument", sprintf(
          "worker %s was started with log = FALSE or to the console: its output was not kept",
          worker_id))
      }
      if (file.exists(path)) readLines(path, warn = FALSE) else character()
    })
  structure(h, class = "redq_workers")
}

#' @export
print.redq_workers <- function(x, ...) {
  alive <- x$is_alive()
  cat(sprintf("<redq workers: %d started, %d running>\n", length(x$id), sum(alive)))
  for (i in seq_along(x$id)) cat(sprintf("  %s%s\n", x$id[[i]], if (alive[[i]]) "" else " (exited)"))
  invisible(x)
}

#' @export
as.character.redq_workers <- function(x, ...) x$id

# worker_spawn(), running `command` in each process (a worker_main() or a
# loop of its own that registers as a worker); `wait`: until they have
# registered.
spawn_workers <- function(n, queue, timeout, heartbeat, lease, log, max_tasks, controller,
                          command = WORKER_COMMAND, wait = TRUE, settings = list(),
                          replace = TRUE) {
  n <- check_count(n, "n")
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  for (q in queue) check_string(q, "queue")
  timeout <- check_seconds(timeout, "timeout")
  # checked here: the workers would only fail in their own processes
  timing <- worker_timing(heartbeat, lease)
  heartbeat <- timing$heartbeat
  lease <- timing$lease
  max_tasks <- check_count(max_tasks, "max_tasks", none_ok = TRUE)
  host <- Sys.info()[["nodename"]]
  ids <- sprintf("%s-%s-%d", host, substr(basename(tempfile("")), 5, 12), seq_len(n))
  rscript <- file.path(R.home("bin"), "Rscript")
  env <- c("current",
           REDIS_URL = ctl$url, REDQ_NAMESPACE = ctl$namespace,
           REDQ_QUEUES = paste(queue, collapse = ","),
           REDQ_HEARTBEAT = heartbeat, REDQ_LEASE = lease,
           REDQ_MAX_TASKS = max_tasks,
           # the controller's secret: the workers sign and check as it does
           REDQ_SECRET = ctl$secret %||% "",
           R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep))
  # settings passed to the workers: linger, timelimit, loglevel, idle
  # timeout, task logs, a log file all
  # workers append to, the console, another R, workers that outlive us
  d <- settings
  if (!is.null(ctl$offload)) {
    env <- c(env, REDQ_OFFLOAD_PATH = ctl$offload$path,
             REDQ_OFFLOAD_THRESHOLD = format(ctl$offload$threshold, scientific = FALSE))
  }
  env <- c(env, REDQ_LINGER = d$linger, REDQ_TIMELIMIT = d$timelimit,
           REDQ_LOGLEVEL = d$loglevel, REDQ_LOG = d$log_file, REDQ_IDLE_TIMEOUT = d$idle_timeout,
           REDQ_TASK_LOG = d$task_log)
  args <- c("--vanilla", "-e", command)
  if (!is.null(d$rbin)) {
    rscript <- d$rbin
    args <- c("--vanilla", "--slave", "-e", command)
  }
  outlive <- isTRUE(d$outlive)
  # A worker's own temporary directory goes inside the session's, so that
  # one killed (which cannot remove it) leaves nothing once the session
  # ends; workers that outlive the session keep the system's.
  # They also leave when this session ends, however it ends: their side
  # thread watches their parent (no supervisor process, whose pipes
  # closeAllConnections() would close).
  if (!outlive) env <- c(env, TMPDIR = session_log_dir(), REDQ_PARENT_PID = Sys.getpid())
  for (id in ids) {
    out <- if (isTRUE(d$console)) "" else if (isFALSE(log)) NULL else
      file.path(log %||% session_log_dir(), paste0(id, ".log"))
    redq_env$logs[[id]] <- out
    proc <- preserve_seed(processx::process$new(
      rscript, args, env = c(env, REDQ_NAME = id), stdout = out,
      stderr = if (is.null(out)) NULL else if (identical(out, "")) "" else "2>&1",
      cleanup = !outlive))
    redq_env$processes[[id]] <- proc
    # how to start another in its place (local_workers())
    redq_env$spawned[[id]] <- list(
      ctl = ctl, reported = FALSE, no_replace = !replace,
      again = list(queue = queue, timeout = timeout, heartbeat = heartbeat, lease = lease,
                   log = log, max_tasks = max_tasks, command = command, settings = settings))
  }
  if (wait) wait_registered(ctl, ids, timeout)
  invisible(ids)
}

# How many live workers serve `queue` (foreach's and future's worker counts),
# riding out a server that is away.
live_workers <- function(ctl, queue) length(patiently(function() serving_workers(ctl, queue)))

# `f()`, called again while the server cannot be reached (a restart or a
# failover), for up to option redq.reconnect_patience seconds, as the
# engine's waits ride such a spell out; other errors stand.
patiently <- function(f) {
  deadline <- Sys.time() + reconnect_patience()
  repeat {
    r <- tryCatch(f(), redq_error_connection = function(e) e)
    if (!inherits(r, "redq_error_connection") || Sys.time() > deadline) break
    Sys.sleep(0.2)
  }
  if (inherits(r, "redq_error_connection")) stop(r)
  r
}

# Ids of the live workers that serve `queue`.
serving_workers <- function(ctl, queue) {
  info <- worker_info(NULL, ctl)
  serving <- vapply(info, function(i) {
    isTRUE(i$alive) && queue %in% strsplit(i$queues %||% "", ",", fixed = TRUE)[[1]]
  }, logical(1))
  names(info)[serving]
}

# A worker's own queue: work addressed to it alone (a parallel cluster's
# node calls, BiocParallel's calls to a given worker).
worker_queue <- function(wid) rs_private_queue(wid)

# Where workers started without a log directory write, and where the
# session's workers keep their temporary directories: removed with the
# session's own.
session_log_dir <- function() {
  dir <- file.path(tempdir(), "redq-workers")
  dir.create(dir, showWarnings = FALSE, mode = "0700")
  dir
}

# Workers attach redq, as doRedis workers attach doRedis, so that tasks can
# call redisGet() and friends.
WORKER_COMMAND <- "suppressPackageStartupMessages(library(redq)); worker_main()"

# Registration is the worker's first write; poll for it (start-up only,
# never on the task path) and fail early if a process died instead.
wait_registered <- function(ctl, ids, timeout) {
  deadline <- Sys.time() + timeout
  done <- character()
  repeat {
    alive <- worker_list(ctl)
    if (all(ids %in% c(alive, done))) {
      return(invisible(TRUE))
    }
    for (id in setdiff(ids, c(alive, done))) {
      proc <- redq_env$processes[[id]]
      if (!is.null(proc) && !proc$is_alive()) {
        # one that registered and already left (its loop found nothing more
        # to do) started fine
        if (!is.null(worker_info(id, controller = ctl)[[1]]$host)) {
          done <- c(done, id)
          next
        }
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

#' A worker's event log
#'
#' Each worker keeps a log of what happened to it in Redis, readable from
#' any session (as rrq's `rrq_worker_log_tail()`): when it started, lost
#' and regained its connection, was registered again after the server lost
#' its record, was declared lost, and stopped. Workers started with
#' `task_log = TRUE` also log when each task began and ended. A log keeps
#' the newest 1000 events and expires a day after its worker left.
#'
#' @param ids Worker ids (or a [worker_spawn()] handle); `NULL` for all
#'   live workers.
#' @param n The last `n` events of each worker.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A data frame, oldest event first: `worker_id`, `time`
#'   (POSIXct), `event` (its first word: `started`, `began`, `ended`,
#'   `reconnected`, `registered`, `lost`, `stopped`) and `detail`.
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(1, task_log = TRUE)
#'   task_wait(task_create_expr(1 + 1))
#'   w$stop()
#'   worker_log_tail(w)
#' }
worker_log_tail <- function(ids = NULL, n = 10, controller = NULL) {
  ctl <- get_controller(controller)
  ids <- check_ids(ids %||% worker_list(ctl))
  n <- check_count(n, "n")
  lines <- rs_check(rs_worker_log_tail(ctl$ptr, ids, n))
  who <- rep(ids, lengths(lines))
  lines <- unlist(lines) %||% character()
  ms <- as.numeric(sub(" .*", "", lines))
  text <- sub("^[0-9]+ ", "", lines)
  out <- data.frame(worker_id = who,
                    time = as.POSIXct(ms / 1000, origin = "1970-01-01"),
                    event = sub("[ ,:;].*", "", text),
                    detail = trimws(sub("^[^ ,:;]*[,:;]? ?", "", text)),
                    stringsAsFactors = FALSE)
  out <- out[order(out$time), , drop = FALSE]
  rownames(out) <- NULL
  out
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
  # asked to go: not replaced should their processes end (local_workers())
  for (id in intersect(ids, names(redq_env$spawned))) redq_env$spawned[[id]]$no_replace <- TRUE
  rs_check(rs_worker_signal(ctl$ptr, ids, identical(type, "kill")))
  deadline <- Sys.time() + wait
  while (wait > 0 && any(ids %in% worker_list(ctl)) && Sys.time() < deadline) {
    Sys.sleep(0.02)
  }
  # a process this session started has gone when this returns (within
  # the same wait): it has written out what it had buffered
  for (id in ids) {
    proc <- redq_env$processes[[id]]
    left <- as.numeric(deadline - Sys.time(), units = "secs")
    if (!is.null(proc) && wait > 0) proc$wait(max(1, left) * 1000)
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
  if (!is.null(queue)) check_string(queue, "queue")
  # the core waits, in slices, with interrupts checked
  r <- rs_check(rs_worker_wait(ctl$ptr, n, queue, timeout, reconnect_patience()))
  if (!r$reached) {
    redq_abort("timeout", sprintf("%d of %d worker(s) registered within %g s", r$found, n, timeout))
  }
  ids <- if (is.null(queue)) worker_list(ctl) else serving_workers(ctl, queue)
  invisible(ids)
}

#' @rdname worker_wait
#' @export
redq_destroy <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- worker_list(ctl)
  if (length(ids)) worker_stop(ids, type = "kill", wait = 5, controller = ctl)
  invisible(rs_check(rs_controller_destroy(ctl$ptr)))
}
