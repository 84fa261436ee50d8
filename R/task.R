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
#'   worker_spawn(1)
#'   task_wait(c(id, ids))
#'   task_result(id)
#'   task_results(ids)
#'   worker_stop()
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

# The payloads of a bulk submission whose `n` rows share `common` (captured
# variables, common arguments): over option redq.shared_threshold bytes,
# `common` is stored once, as an object each payload names by its address
# (`make(i, address)`); else each payload carries it (`make(i, NULL)`).
# Returns list(payloads, shared: the serialized object or NULL).
bulk_payloads <- function(common, n, make) {
  shared <- if (length(common) && n > 1L) serialize_fast(common)
  if (is.null(shared) || length(shared) <= getOption("redq.shared_threshold", 1e6)) {
    return(list(payloads = lapply(seq_len(n), make, address = NULL), shared = NULL))
  }
  address <- rs_object_address(shared)
  list(payloads = lapply(seq_len(n), make, address = address), shared = shared)
}

# A function written inside another function carries that function's
# variables into every task: say so when that makes the payloads large.
warn_closure <- function(fn, payloads) {
  env <- environment(fn)
  local <- !is.null(env) && !identical(env, globalenv()) && !identical(env, baseenv()) &&
    !isNamespace(env)
  size <- if (length(payloads) > 1L) length(payloads[[1]]) else 0
  if (local && size > getOption("redq.shared_threshold", 1e6)) {
    warning(structure(class = c("redq_warning_large_closure", "warning", "condition"), list(
      message = sprintf(paste(
        "each of the %d tasks carries %s: 'fn' was defined inside a function and takes that",
        "function's variables along; define it at top level, or pass large data in 'args'",
        "(stored once)"), length(payloads), format(structure(size, class = "object_size"), units = "auto")),
      call = sys.call(-1))))
  }
  invisible()
}

check_fn <- function(fn) {
  if (!is.function(fn)) {
    redq_abort("argument",
               sprintf("'fn' must be a function, not %s; pass the function itself, e.g. fn = sqrt",
                       class(fn)[1]), call = sys.call(-1))
  }
}

data_rows <- function(data) {
  if (is.data.frame(data)) {
    if (nrow(data) == 0L) {
      return(list())
    }
    return(lapply(seq_len(nrow(data)), function(i) as.list(data[i, , drop = FALSE])))
  }
  if (is.list(data) || is.atomic(data)) {
    return(lapply(data, function(x) if (is.list(x)) x else list(x)))
  }
  redq_abort("argument", "'data' must be a data frame or a list", call = sys.call(-1))
}

# Values of the variables (and user functions) an expression uses, taken from
# envir and its parents up to the global environment; names that resolve in
# packages are left for the worker to find.
capture_vars <- function(expr, envir) {
  names <- all.names(expr)
  out <- list()
  for (nm in unique(names)) {
    e <- envir
    while (!identical(e, emptyenv())) {
      if (exists(nm, envir = e, inherits = FALSE)) {
        if (!isNamespace(e) && !identical(e, baseenv()) &&
            (identical(e, globalenv()) || !is_package_env(e))) {
          out[nm] <- list(get(nm, envir = e, inherits = FALSE))
        }
        break
      }
      if (identical(e, globalenv())) break
      e <- parent.env(e)
    }
  }
  out
}

is_package_env <- function(e) {
  startsWith(environmentName(e), "package:") || isNamespace(e)
}

serialize_fast <- function(x) serialize(x, NULL, xdr = FALSE)

task_payload_expr <- function(expr, vars, seed = NULL, stream = FALSE, controller = NULL,
                              shared = NULL) {
  payload_bytes(c(list(type = "expr", expr = expr, vars = vars), if (!is.null(seed)) list(seed = seed),
                  if (!is.null(shared)) list(shared = shared)), stream, controller)
}

task_payload_call <- function(fn, args, seed = NULL, shared = NULL, stream = FALSE,
                              controller = NULL) {
  payload_bytes(c(list(type = "call", fn = fn, args = args), if (!is.null(seed)) list(seed = seed),
                  if (!is.null(shared)) list(shared = shared)), stream, controller)
}

# The core's inline limit, in bytes: values over it are stored apart, in
# chunks (asked once).
big_value <- function() redq_env$big_value %||% (redq_env$big_value <- rs_big_value())

# Whether a value may serialize past the inline limit. Numbers, logicals
# and raw vectors shorter than a million cannot (8 bytes each at most), and
# are most results: they skip object.size(), which costs microseconds.
is_large <- function(x) {
  if (is.null(x) || (is.atomic(x) && !is.character(x) && length(x) < 1e6)) return(FALSE)
  utils::object.size(x) > big_value()
}

# A payload's bytes. With `stream`, a large one (a single task's: sizing
# every task of a bulk submission would cost more than it saves) is
# serialized by the core straight into chunks, and the bytes are the
# reference to them: no serialized copy of it is ever whole.
payload_bytes <- function(p, stream = FALSE, controller = NULL) {
  if (stream && is_large(p)) {
    return(rs_check(rs_controller_stream(get_controller(controller)$ptr, p)))
  }
  serialize_fast(p)
}

# L'Ecuyer-CMRG streams for n tasks: the i-th after `seed` (an integer for
# set.seed(), or a .Random.seed of L'Ecuyer-CMRG) for task i; a list of n
# NULLs without a seed.
seed_streams <- function(seed, n) {
  out <- vector("list", n)
  if (is.null(seed)) return(out)
  s <- lecuyer_seed(seed)
  for (i in seq_len(n)) {
    s <- parallel::nextRNGStream(s)
    out[[i]] <- s
  }
  out
}

# A .Random.seed of L'Ecuyer-CMRG: given, or made by set.seed(seed) (the
# session's own generator is left as it was).
lecuyer_seed <- function(seed) {
  if (is.numeric(seed) && length(seed) == 7L && isTRUE(seed[[1]] %% 10000 == 407)) {
    return(as.integer(seed))
  }
  if (!is.numeric(seed) || length(seed) != 1L || is.na(seed) || seed != round(seed)) {
    redq_abort("argument", paste("'seed' must be a whole number (as for set.seed()) or a",
                                 ".Random.seed of \"L'Ecuyer-CMRG\""), call = sys.call(-2))
  }
  genv <- globalenv()
  old <- if (exists(".Random.seed", genv, inherits = FALSE)) get(".Random.seed", genv)
  kind <- RNGkind()
  on.exit({
    RNGkind(kind[[1]], kind[[2]], kind[[3]])
    if (is.null(old)) rm(".Random.seed", envir = genv) else assign(".Random.seed", old, envir = genv)
  })
  RNGkind("L'Ecuyer-CMRG")
  set.seed(seed)
  get(".Random.seed", genv)
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
#'   worker_spawn(1)
#'   task_wait(id)
#'   task_status(id)
#'   task_result(id)
#'   task_info(id)$status
#'   worker_stop()
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
  deadline <- Sys.time() + check_seconds(timeout, "timeout", none_ok = TRUE)
  told <- FALSE
  repeat {
    left <- max(0, as.numeric(deadline - Sys.time(), units = "secs"))
    # told once per call: a wait again would find the same queues idle
    r <- rs_task_wait(ctl$ptr, ids, if (is.finite(timeout)) left else timeout, reap_interval(),
                      reconnect_patience(), bar, if (told) c(NA, Inf) else starve(),
                      local_workers(ctl))
    told <- told || length(r$notices) > 0L
    warn_lost(if (inherits(r, "redq_rs_error")) attr(r, "lost") else r$lost)
    if (inherits(r, "redq_rs_error") && identical(r$kind, "timeout")) {
      r$message <- paste0(r$message, "; wait again, or cancel them with task_cancel()")
    }
    r <- rs_check(r)
    for (m in r$notices) warning(m, call. = FALSE)
    if (!length(r$notices)) break
  }
  invisible(stats::setNames(r$status, ids))
}

# A cli progress bar as a function(done, total), with throughput and ETA;
# bar(NULL) closes it. Drawn once the wait has lasted
# `cli.progress_show_after` seconds (2 by default, as cli's own bars), then
# at most five times a second, and at the end.
progress_bar <- function(what = "tasks") {
  frame <- environment()
  id <- NULL
  born <- Sys.time()
  drawn <- NULL
  function(done, total) {
    if (is.null(done)) {
      if (!is.null(id)) cli::cli_progress_done(id = id, .envir = frame)
      return(invisible())
    }
    now <- Sys.time()
    if (is.null(id)) {
      id <<- cli::cli_progress_bar(
        what, total = max(1, total), clear = FALSE, .envir = frame,
        format = paste("{cli::pb_name} {cli::pb_bar} {cli::pb_current}/{cli::pb_total}",
                       "| {cli::pb_rate} | ETA {cli::pb_eta}"))
    }
    due <- as.numeric(now - born, units = "secs") >= getOption("cli.progress_show_after", 2) &&
      (is.null(drawn) || done >= total || as.numeric(now - drawn, units = "secs") >= 0.2)
    if (due) drawn <<- now
    cli::cli_progress_update(id = id, set = done, total = max(1, total), force = due,
                             .envir = frame)
  }
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

#' @rdname task_list
#' @export
task_delete <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  rs_check(rs_task_delete(ctl$ptr, ids))
  invisible(NULL)
}

#' Questions about tasks
#'
#' As in rrq: `task_exists()` tells whether the server knows each task;
#' `task_position()` gives each task's place in its queue (1: next; 0 when
#' it is not waiting in a queue); `task_times()` the times each was
#' created, started and finished; `task_overview()` counts the tasks of
#' the task list by status.
#'
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_exists()`: logical. `task_position()`: integer.
#'   `task_times()`: a data frame (`id`, `queue`, `worker`, `attempt`,
#'   `created`, `started`, `finished`, `status`) that [plot()] draws as a
#'   timeline ([plot.redq_task_times()]). `task_overview()`: a named integer
#'   vector.
#' @export
#' @examples
#' if (redq_available()) {
#'   ids <- task_create_bulk_call(sqrt, list(1, 4, 9), queue = "later")
#'   task_exists(c(ids, "nope"))
#'   task_position(ids)
#'   task_overview()
#'   task_delete(ids)
#' }
task_exists <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  if (!length(ids)) return(logical(0))
  rs_check(rs_task_results(ctl$ptr, ids))$exists
}

#' @rdname task_exists
#' @export
task_position <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  out <- integer(length(ids))
  for (q in unique(vapply(ids, function(id) task_info_safe(id, ctl)$queue %||% "", ""))) {
    if (!nzchar(q)) next
    waiting <- rs_check(rs_queue_tasks(ctl$ptr, q))
    at <- match(ids, waiting)
    out[!is.na(at)] <- at[!is.na(at)]
  }
  stats::setNames(out, ids)
}

#' @rdname task_exists
#' @export
task_times <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  info <- lapply(ids, task_info_safe, ctl = ctl)
  time <- function(f) do.call(c, lapply(info, function(i) i[[f]] %||% as.POSIXct(NA)))
  text <- function(f) vapply(info, function(i) as.character(i[[f]] %||% NA), "")
  out <- data.frame(id = ids, queue = text("queue"), worker = text("worker"),
                    attempt = suppressWarnings(as.integer(text("attempt"))),
                    created = time("created"), started = time("started"),
                    finished = time("finished"), status = text("status"))
  # earlier attempts (a lost worker's, a timed-out one's), for plot()
  earlier <- do.call(rbind, lapply(seq_along(ids), function(k) {
    a <- info[[k]]$attempts
    # the last ended attempt of a finished task is the one that ended it
    if (!is.null(a) && nrow(a) && !is.na(out$finished[[k]])) a <- a[-nrow(a), , drop = FALSE]
    if (is.null(a) || !nrow(a)) return(NULL)
    data.frame(id = ids[[k]], worker = a$worker, started = a$started, ended = a$ended,
               outcome = a$outcome)
  }))
  structure(out, class = c("redq_task_times", "data.frame"), attempts = earlier)
}

#' Plot a timeline of tasks
#'
#' One row per worker, one bar per attempt from its start to its end,
#' coloured by how it ended; attempts that did not end their task (the
#' worker was lost, the attempt timed out and was retried) are drawn
#' hatched and marked with a cross, and their task's next attempt is
#' joined to them by a dotted line. Use any graphics device
#' ([grDevices::png()], [grDevices::pdf()]) to save it.
#'
#' @param x A [task_times()] data frame.
#' @param main Title.
#' @param ... Ignored.
#' @return Invisibly, `x`.
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(2)
#'   ids <- task_create_bulk_call(function(s) Sys.sleep(s), as.list(runif(8, 0, 0.2)))
#'   task_wait(ids)
#'   plot(task_times(ids))
#'   worker_stop(w)
#' }
plot.redq_task_times <- function(x, main = "redq tasks", ...) {
  a <- attr(x, "attempts")
  done <- x[!is.na(x$started), , drop = FALSE]
  end <- done$finished
  end[is.na(end)] <- Sys.time()
  bars <- data.frame(id = done$id, worker = done$worker, started = done$started, ended = end,
                     outcome = done$status, final = TRUE)
  if (!is.null(a) && nrow(a)) {
    a$ended[is.na(a$ended)] <- a$started[is.na(a$ended)]
    bars <- rbind(bars, data.frame(id = a$id, worker = a$worker, started = a$started,
                                   ended = a$ended, outcome = a$outcome, final = FALSE))
  }
  if (!nrow(bars)) {
    graphics::plot.new()
    graphics::title(main = paste(main, "(no task has started)"))
    return(invisible(x))
  }
  workers <- sort(unique(bars$worker))
  outcomes <- sort(unique(bars$outcome))
  cols <- stats::setNames(grDevices::hcl.colors(max(3, length(outcomes)), "Dark 3")[seq_along(outcomes)],
                          outcomes)
  t0 <- min(bars$started)
  s <- as.numeric(bars$started - t0, units = "secs")
  e <- pmax(as.numeric(bars$ended - t0, units = "secs"), s + 1e-3)
  y <- match(bars$worker, workers)
  old <- graphics::par(mar = c(4, max(8, max(nchar(workers)) * 0.55), 3, 1))
  on.exit(graphics::par(old))
  graphics::plot(NA, xlim = c(0, max(e)), ylim = c(0.5, length(workers) + 0.5), yaxt = "n",
                 xlab = "seconds since the first start", ylab = "", main = main)
  graphics::axis(2, at = seq_along(workers), labels = workers, las = 1, cex.axis = 0.7)
  graphics::rect(s, y - 0.35, e, y + 0.35, col = cols[bars$outcome], border = "grey30",
                 density = ifelse(bars$final, NA, 25))
  lost <- !bars$final
  if (any(lost)) {
    graphics::points(e[lost], y[lost], pch = 4, cex = 1.6, lwd = 2)
    for (i in which(lost)) {
      j <- which(bars$final & bars$id == bars$id[[i]])
      if (length(j)) graphics::segments(e[i], y[i], s[j], y[j], lty = 3)
    }
  }
  graphics::legend("topright", legend = outcomes, fill = cols, cex = 0.7, bg = "white")
  invisible(x)
}

#' @rdname task_exists
#' @export
task_overview <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- rs_check(rs_task_list(ctl$ptr))
  words <- rs_task_status_words()
  st <- if (length(ids)) rs_check(rs_task_status(ctl$ptr, ids)) else character()
  stats::setNames(vapply(words, function(w) sum(st == w), 1L), words)
}

task_info_safe <- function(id, ctl) {
  tryCatch(task_info(id, controller = ctl), redq_error_not_found = function(e) list())
}

#' Progress reported from inside a task
#'
#' `task_progress_update(value)`, called by a task's code on a worker,
#' records `value` (any small R object: a fraction, a message) as the
#' task's progress; `task_progress(ids)` reads it from any session while
#' the task runs and after. Outside a worker `task_progress_update()` does
#' nothing.
#'
#' @param value Any small R value.
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_progress_update()`: invisibly, whether it was recorded.
#'   `task_progress()`: a list named by id (`NULL` where none).
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(1)
#'   id <- task_create_expr({
#'     task_progress_update(0.5)
#'     Sys.sleep(1)
#'   })
#'   Sys.sleep(0.5)
#'   task_progress(id)
#'   task_wait(id)
#'   worker_stop(w)
#' }
task_progress_update <- function(value) {
  w <- redq_env$worker
  if (is.null(w)) return(invisible(FALSE))
  invisible(rs_check(rs_worker_progress(w, serialize(value, NULL, xdr = FALSE))))
}

#' @rdname task_progress_update
#' @export
task_progress <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  raw <- if (length(ids)) rs_check(rs_task_progress(ctl$ptr, ids)) else list()
  stats::setNames(lapply(raw, function(r) if (is.null(r)) NULL else unserialize(r)), ids)
}

#' What a task printed
#'
#' Workers started with `task_log = TRUE` ([worker_spawn()],
#' [worker_main()], the launcher's `--task-log`) keep what each task prints
#' (output, messages, warnings; the last 64 KB) in Redis; `task_log()`
#' reads it from any session, whichever machine ran the task.
#'
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A character vector named by id: the text, or `NA` where none
#'   was kept.
#' @export
task_log <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  if (!length(ids)) return(character())
  stats::setNames(rs_check(rs_task_logs(ctl$ptr, ids)), ids)
}

#' What a task was given; what waits before it
#'
#' As in rrq: `task_data()` returns what a task was created with (its
#' expression and captured variables, or its function and arguments), as
#' long as it is kept (until it completes, or for a task that ended
#' otherwise until it is deleted). `task_preceeding()` gives the ids queued
#' before a task, next first. `deferred_list()` lists the tasks waiting for
#' others (`DEFERRED`) with the ids each still waits for.
#'
#' @param id A task id.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_data()`: a list (`expr` and `vars`, or `fn` and `args`), or
#'   `NULL` once its payload is gone. `task_preceeding()`: ids.
#'   `deferred_list()`: a named list of the ids each deferred task depends
#'   on.
#' @export
task_data <- function(id, controller = NULL) {
  check_string(id, "id")
  ctl <- get_controller(controller)
  raw <- rs_check(rs_task_records(ctl$ptr, id))$payload[[1]]
  if (is.null(raw)) return(NULL)
  p <- unserialize(raw)
  p[setdiff(names(p), c("type", "seed"))]
}

#' @rdname task_data
#' @export
task_preceeding <- function(id, controller = NULL) {
  check_string(id, "id")
  ctl <- get_controller(controller)
  q <- task_info_safe(id, ctl)$queue
  if (is.null(q)) return(character())
  waiting <- rs_check(rs_queue_tasks(ctl$ptr, q))
  at <- match(id, waiting)
  if (is.na(at)) character() else waiting[seq_len(at - 1L)]
}

#' @rdname task_data
#' @export
deferred_list <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- rs_check(rs_task_list(ctl$ptr))
  if (!length(ids)) return(list())
  # the task list's first status word is DEFERRED (see rs_task_status_words)
  deferred <- ids[rs_check(rs_task_status(ctl$ptr, ids)) == rs_task_status_words()[[1]]]
  stats::setNames(lapply(deferred, function(id) task_info(id, controller = ctl)$depends_on), deferred)
}
