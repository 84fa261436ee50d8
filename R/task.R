# The task API: create tasks now, wait for them and fetch results later,
# from this or any other session.

#' Create tasks
#'
#' `task_create_expr()` queues one R expression. The values of the variables
#' it uses are captured from `envir` now (like rrq), so the task computes
#' with what the caller sees at creation time. `task_create_call()` queues a
#' call of `fn` with `args`. The bulk forms create one task per row of a
#' data frame (or element of a list) in a single round trip: in
#' `task_create_bulk_expr()` the row's columns are variables of `expr`; in
#' `task_create_bulk_call()` they are the arguments of `fn`. The variables
#' `task_create_bulk_expr()` captures, like the `args` of
#' `task_create_bulk_call()`, are stored once when they are over 1 MB.
#'
#' All return at once with the new ids. Tasks wait in their queue until a
#' worker takes them, even if no worker exists yet. With `depends_on`, they
#' enter the queue only once every task they depend on has completed.
#'
#' @param expr An expression (not evaluated now).
#' @param fn A function.
#' @param args A list of arguments for `fn`; for `task_create_bulk_call()`,
#'   arguments every task gets besides its row of `data`. Over 1 MB
#'   (option `redq.shared_threshold`, in bytes) they are stored once, not
#'   with each task, and each worker fetches them once (it keeps up to
#'   option `redq.object_cache` bytes, 2 GB by default, of such values).
#' @param data A data frame (one task per row) or a list (one task per
#'   element; each element a list of named values or a single value).
#' @param queue Queue name; `NULL` for the controller's default queue.
#' @param timeout Seconds the task may run before it ends `TIMEOUT`
#'   (`NULL` or `Inf`: no limit).
#' @param max_attempts How many times the task may be started when its
#'   workers keep dying; after that it ends `DIED` (`NULL`: 3).
#' @param depends_on Ids of tasks that must complete first. Until they have,
#'   the new tasks are `DEFERRED`; if one of them ends any other way
#'   (error, timeout, cancelled, died, deleted), they end `IMPOSSIBLE`.
#' @param envir Environment the variables of `expr` are looked up in.
#' @param seed `NULL`, an integer (as for [set.seed()]) or a `.Random.seed`
#'   of `"L'Ecuyer-CMRG"`: the task (in the bulk forms, the i-th task) runs
#'   with the i-th L'Ecuyer-CMRG stream after it, whichever worker runs it.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return Task ids (character).
#' @export
#' @examples
#' if (redq_available()) {
#'   id <- task_create_expr(sqrt(2))
#'   ids <- task_create_bulk_call(function(x, y) x + y, data.frame(x = 1:3, y = 4:6))
#'   w <- worker_spawn(1)
#'   task_wait(c(id, ids))
#'   task_result(id)
#'   task_results(ids)
#'   w$stop()
#' }
task_create_expr <- function(expr, queue = NULL, timeout = NULL, max_attempts = NULL,
                             depends_on = NULL, envir = parent.frame(), seed = NULL,
                             controller = NULL) {
  expr <- substitute(expr)
  payload <- task_payload_expr(expr, capture_vars(expr, envir), seed_streams(seed, 1)[[1]],
                               stream = TRUE, controller = controller)
  task_submit(list(payload), queue, timeout, max_attempts, depends_on, controller)
}

#' @rdname task_create_expr
#' @export
task_create_call <- function(fn, args = list(), queue = NULL, timeout = NULL, max_attempts = NULL,
                             depends_on = NULL, seed = NULL, controller = NULL) {
  check_fn(fn)
  if (!is.list(args)) {
    redq_abort("argument", "'args' must be a list of arguments for 'fn'")
  }
  payload <- task_payload_call(fn, args, seed_streams(seed, 1)[[1]], stream = TRUE,
                               controller = controller)
  task_submit(list(payload), queue, timeout, max_attempts, depends_on, controller)
}

#' @rdname task_create_expr
#' @export
task_create_bulk_expr <- function(expr, data, queue = NULL, timeout = NULL, max_attempts = NULL,
                                  depends_on = NULL, envir = parent.frame(), seed = NULL,
                                  controller = NULL) {
  expr <- substitute(expr)
  rows <- data_rows(data)
  if (any(vapply(rows, function(r) length(r) && is.null(names(r)) || any(!nzchar(names(r))), NA))) {
    redq_abort("argument", paste("every element of 'data' must name its values, e.g.",
                                 "data.frame(x = 1:3) or list(list(x = 1), list(x = 2))"))
  }
  vars <- capture_vars(expr, envir)
  seeds <- seed_streams(seed, length(rows))
  # each row's values override the captured variables
  b <- bulk_payloads(vars, length(rows), function(i, address) {
    if (!is.null(address)) return(task_payload_expr(expr, rows[[i]], seeds[[i]], shared = address))
    v <- vars
    v[names(rows[[i]])] <- rows[[i]]
    task_payload_expr(expr, v, seeds[[i]])
  })
  task_submit(b$payloads, queue, timeout, max_attempts, depends_on, controller, shared = b$shared)
}

#' @rdname task_create_expr
#' @export
task_create_bulk_call <- function(fn, data, args = list(), queue = NULL, timeout = NULL,
                                  max_attempts = NULL, depends_on = NULL, seed = NULL,
                                  controller = NULL) {
  check_fn(fn)
  rows <- data_rows(data)
  seeds <- seed_streams(seed, length(rows))
  b <- bulk_payloads(args, length(rows), function(i, address) {
    if (is.null(address)) task_payload_call(fn, c(rows[[i]], args), seeds[[i]])
    else task_payload_call(fn, rows[[i]], seeds[[i]], shared = address)
  })
  warn_closure(fn, b$payloads)
  task_submit(b$payloads, queue, timeout, max_attempts, depends_on, controller, shared = b$shared)
}

# Timeout and attempts are checked by the core, before anything is queued.
task_submit <- function(payloads, queue, timeout, max_attempts, depends_on, controller,
                        shared = NULL) {
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  check_string(queue, "queue")
  depends_on <- if (is.null(depends_on)) character() else check_ids(depends_on)
  rs_check(rs_task_submit(ctl$ptr, queue, payloads, timeout, max_attempts, depends_on, shared),
           call = sys.call(-1))
}

#' Task status, results and bookkeeping
#'
#' `task_status()` gives each task's status: `DEFERRED` (waiting for the
#' tasks it depends on), `PENDING`, `RUNNING`, `COMPLETE`, `ERROR`,
#' `TIMEOUT`, `CANCELLED`, `DIED`, `IMPOSSIBLE` (a task it depends on did
#' not complete), or `MISSING` for ids the server does not know. `task_wait()` blocks until all tasks have
#' ended; it can be interrupted with Ctrl+C, which leaves the tasks and
#' the connection as they were. `task_result()` fetches one result;
#' `task_results()` several, as a list. Small results (up to 1 KB
#' serialized) come with the notice that a task completed, and the
#' controller keeps those its waits received (up to 64 MB; forgotten when it
#' deletes the task), so reading them after `task_wait()` costs no round
#' trip to the server.
#'
#' A task whose R code failed has status `ERROR` and its result is a
#' [redq_task_error()] condition; `error = TRUE` signals it instead.
#'
#' @param ids Task ids. For `task_result()`, a single id.
#' @param id A single task id.
#' @param timeout Seconds to wait (`Inf`: no limit). On expiry
#'   `task_wait()` signals `redq_error_timeout`.
#' @param progress Show a progress bar with throughput and time left (a
#'   cli bar, shown once the wait lasts a couple of seconds; default: when
#'   interactive and waiting on more than one task).
#' @param error Signal the error of a failed task instead of returning it.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_status()`, `task_wait()`: named character vector of
#'   statuses (invisibly for `task_wait()`). `task_result()`: the value.
#'   `task_results()`: a list of values.
#' @export
#' @examples
#' if (redq_available()) {
#'   id <- task_create_expr(stop("boom"))
#'   w <- worker_spawn(1)
#'   task_wait(id)
#'   task_status(id)
#'   task_result(id)
#'   task_info(id)$status
#'   w$stop()
#' }
task_status <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  stats::setNames(rs_check(rs_task_status(ctl$ptr, ids)), ids)
}

#' @rdname task_status
#' @export
task_wait <- function(ids, timeout = Inf, progress = NULL, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  progress <- progress %||% (interactive() && length(ids) > 1L)
  bar <- if (isTRUE(progress)) progress_bar() else NULL
  on.exit(if (!is.null(bar)) bar(NULL), add = TRUE)
  # as job_wait(): a wait that has something to tell returns early with
  # it alone, and goes on here
  start <- unclass(Sys.time())
  left <- timeout
  told <- FALSE
  o <- wait_options()
  repeat {
    # told once per call: a wait again would find the same queues idle
    r <- rs_task_wait(ctl$ptr, ids, left, o[[1L]], o[[2L]], bar,
                      c(if (told) NA else o[[3L]], Inf), watched_workers(ctl))
    told <- told || length(r$notices) > 0L
    warn_lost(if (inherits(r, "redq_rs_error")) attr(r, "lost") else r$lost)
    if (inherits(r, "redq_rs_error") && identical(r$kind, "timeout")) {
      r$message <- paste0(r$message, "; wait again, or cancel them with task_cancel()")
    }
    r <- rs_check(r)
    for (m in r$notices) warning(m, call. = FALSE)
    if (!length(r$notices)) break
    left <- time_left(timeout, start)
  }
  invisible(stats::setNames(r$status, ids))
}

#' @rdname task_status
#' @export
task_result <- function(id, error = FALSE, controller = NULL) {
  if (!is.character(id) || length(id) != 1L) {
    redq_abort("argument", "'id' must be a single task id; use task_results() for several")
  }
  task_results(id, error = error, controller = controller)[[1L]]
}

#' @rdname task_status
#' @export
task_results <- function(ids, error = FALSE, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  r <- rs_check(rs_task_results(ctl$ptr, ids))
  out <- if (all(r$completed)) {
    lapply(r$result, unserialize) # the common case, without per-task checks
  } else {
    out <- vector("list", length(ids))
    for (i in seq_along(ids)) out[i] <- list(result_value(r, i, error))
    out
  }
  stats::setNames(out, ids)
}

result_value <- function(r, i, error) {
  id <- r$id[[i]]
  if (!r$exists[[i]]) {
    redq_abort("not_found", sprintf("task %s: %s", id, r$message[[i]]), call = sys.call(-2))
  }
  if (!r$done[[i]]) {
    redq_abort("not_ready", sprintf("task %s is %s; wait for it with task_wait()", id, r$status[[i]]),
               call = sys.call(-2))
  }
  value <- job_value(r, i)
  if (inherits(value, "redq_task_error")) {
    value$task_id <- id
    if (error) stop(value)
  }
  value
}

#' Bookkeeping of a task
#'
#' @param id A single task id.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A list: `id`, `status`, `queue`, `worker`, `attempt`,
#'   `max_attempts`, `timeout`, `job` (the foreach loop it belongs to, or
#'   the id of the controller that created or last retried it), `depends_on`, `tag` (a
#'   foreach task's first iteration), the times `created`, `started`, `finished`
#'   (POSIXct), and `attempts`, a data frame with one row per ended attempt
#'   (`worker`, `started`, `ended`, `outcome`: a status, or `LOST` when the
#'   worker died).
#' @export
task_info <- function(id, controller = NULL) {
  check_string(id, "id")
  ctl <- get_controller(controller)
  r <- rs_check(rs_task_info(ctl$ptr, id))
  f <- as.list(r$fields)
  a <- r$attempts
  attempts <- data.frame(worker = a$worker, started = ms_time(a$started), ended = ms_time(a$ended),
                         outcome = a$outcome, stringsAsFactors = FALSE)
  list(id = id, status = f$status, queue = f$queue, worker = f$worker %||% NA_character_,
       attempt = as.integer(f$attempt %||% 0L), max_attempts = as.integer(f$max_attempts),
       timeout = as.numeric(f$timeout %||% Inf), job = f$job %||% NA_character_,
       depends_on = if (is.null(f$depends_on)) character() else strsplit(f$depends_on, ",")[[1]],
       tag = as.numeric(f$tag %||% NA), created = ms_time(f$created), started = ms_time(f$started), finished = ms_time(f$finished),
       attempts = attempts)
}

# Milliseconds since the epoch (numbers or strings; NULL or NA: unknown)
# as POSIXct.
ms_time <- function(ms) {
  if (is.null(ms)) return(as.POSIXct(NA))
  as.POSIXct(as.numeric(ms) / 1000, origin = "1970-01-01")
}

#' List, cancel and delete tasks
#'
#' `task_list()` gives the ids of tasks created through the task API and
#' not deleted, oldest first; with `status`, only those with one of the
#' given statuses (e.g. `task_list(status = "ERROR")` to inspect failures
#' before `task_retry()`). `task_cancel()` ends `PENDING` and `DEFERRED` tasks at once
#' and interrupts `RUNNING` ones on their workers (which go on serving);
#' all end `CANCELLED`. `task_retry()` queues tasks that ended without
#' completing (`ERROR`, `TIMEOUT`, `CANCELLED`, `DIED`, `IMPOSSIBLE`) again,
#' under the same id, with a fresh attempt count; it retries all of them or,
#' if one cannot be retried, none. `task_delete()` cancels what has not
#' ended and removes the tasks' data.
#'
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @param status Statuses to keep (`NULL`: all).
#' @return `task_list()`: ids. `task_cancel()`, `task_retry()`: invisibly,
#'   the status each task had before. `task_delete()`: invisibly `NULL`.
#' @export
task_list <- function(controller = NULL, status = NULL) {
  ctl <- get_controller(controller)
  ids <- rs_check(rs_task_list(ctl$ptr))
  if (is.null(status) || !length(ids)) return(ids)
  known <- rs_task_status_words()
  if (!is.character(status) || anyNA(status) || !all(status %in% known)) {
    redq_abort("argument", sprintf("'status' must be task statuses: %s",
                                   paste(known, collapse = ", ")))
  }
  ids[rs_check(rs_task_status(ctl$ptr, ids)) %in% status]
}

#' @rdname task_list
#' @export
task_cancel <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  invisible(stats::setNames(rs_check(rs_task_cancel(ctl$ptr, ids)), ids))
}

#' @rdname task_list
#' @export
task_retry <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  invisible(stats::setNames(rs_check(rs_task_retry(ctl$ptr, ids)), ids))
}

# Why a task ended without a value, in words (front ends' errors).
task_failure <- function(id, ctl) rs_check(rs_task_failure(ctl$ptr, id))

# For table views (rush's): each task's state (queued, running, finished,
# failed), worker, payload and result (both opened, as raw vectors); and
# the states alone.
task_records <- function(ctl, ids) rs_check(rs_task_records(ctl$ptr, ids))

task_states <- function(ctl, ids) rs_check(rs_task_states(ctl$ptr, ids))

# Wait up to `timeout` seconds until `n` tasks of the namespace have
# completed since it began (its running totals; n = 0, timeout = 0: how
# many have): list(reached, found). Tables whose tasks anyone may create
# (rush's) wait for new results this way.
tasks_completed <- function(ctl, n, timeout) {
  rs_check(rs_task_wait_completed(ctl$ptr, n, timeout, reconnect_patience()))
}

#' @rdname task_list
#' @export
task_delete <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  rs_check(rs_task_delete(ctl$ptr, ids))
  invisible(NULL)
}

# On a worker, the task API's payloads: an expression evaluated with its
# variables (those shared by a bulk submission come from the worker's
# object cache), and a function called with its arguments (kinds "expr"
# and "call").
run_expr <- function(p, task, w, state) {
  vars <- p$vars
  if (!is.null(p$shared)) {
    vars <- shared_object(w, p$shared, state)
    vars[names(p$vars)] <- p$vars
  }
  env <- list2env(vars, parent = globalenv())
  eval(compile_expr(p$expr, env), env)
}

run_call <- function(p, task, w, state) {
  args <- if (is.null(p$shared)) p$args else c(p$args, shared_object(w, p$shared, state))
  do.call(p$fn, args, quote = TRUE)
}
