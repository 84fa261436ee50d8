# The future backend: every future is a redq task. A session keeps one
# engine job per (server, namespace) for its futures; run() submits, and
# resolved() / result() wait through the engine, which also hands back the
# conditions running futures relay (progressr updates) as they arrive.
# Written against future 1.31's Future class API (run(), resolved(),
# result(), nbrOfWorkers(), nbrOfFreeWorkers(), getExpression()).

#' A future backend on redq workers
#'
#' `plan(redq_future)` makes every future a redq task: `future()`, `%<-%`,
#' `future.apply::future_lapply()`, `furrr::future_map()`, doFuture and
#' everything else built on the future framework then run on redq workers,
#' on this machine or on any machine that reaches the Redis server.
#'
#' Futures are queued at once, whatever the number of workers (they wait
#' in Redis, not in this session). Globals and packages are found by
#' future; `seed = TRUE` gives future's own reproducible L'Ecuyer streams;
#' output and conditions are relayed as future specifies, and immediate
#' conditions (progressr updates) reach this session while the future runs.
#' A future whose worker dies runs again elsewhere, up to `max_attempts`
#' times; after that `value()` signals a `FutureError` naming the workers
#' lost. Ctrl+C while `value()` waits cancels the future's task; Ctrl+C
#' while future waits for a list of futures (`value()` of a list,
#' `resolve()`, `future_lapply()`, `future_map()`) cancels those of the
#' list still running; so does a function (`future_lapply()`'s own, or
#' yours) that created futures and then ends with an error or Ctrl+C
#' instead of returning. Their values then signal a `FutureError`.
#' A future's task id (`f$task_id`) can be read from any session with the
#' task API (`task_status()`, `task_result()`) until this session collects
#' it.
#'
#' `nbrOfWorkers()` is the plan's `workers` when it starts its own;
#' otherwise it counts the live workers serving `queue` (from their
#' leases), or 1 while none has registered, never 0, so that future.apply
#' and furrr split work sensibly before the workers arrive.
#'
#' @param expr,envir,substitute,lazy,seed,globals,packages,stdout,conditions,label,earlySignal,gc,...
#'   As for [future::future()].
#' @param namespace,queue redq namespace and queue the futures go to.
#' @param url Redis URL, or `NULL` for [redq_url()].
#' @param workers Number of local workers to start for this plan (started
#'   with the first future, stopped with the session), a function that
#'   returns that number (as future allows), or `NULL` to use
#'   the workers already serving `queue`, here or elsewhere.
#' @param timeout Seconds a future may run (`NULL`: no limit).
#' @param max_attempts Runs allowed when workers keep dying (`NULL`: 3).
#' @return A future of class `RedqFuture`.
#' @export
#' @examples
#' if (redq_available() && requireNamespace("future", quietly = TRUE)) {
#'   future::plan(redq_future, workers = 2)
#'   f <- future::future(Sys.getpid())
#'   future::value(f)
#'   y <- future.apply::future_sapply(1:4, function(i) i^2)
#'   future::plan(future::sequential)
#' }
redq_future <- function(expr, envir = parent.frame(), substitute = TRUE, lazy = FALSE,
                        seed = FALSE, globals = TRUE, packages = NULL, stdout = TRUE,
                        conditions = "condition", label = NULL, earlySignal = FALSE,
                        gc = FALSE, namespace = "default", queue = "default", url = NULL,
                        workers = NULL, timeout = NULL, max_attempts = NULL, ...) {
  if (substitute) expr <- substitute(expr)
  future <- RedqFuture(expr = expr, envir = envir, substitute = FALSE, lazy = lazy, seed = seed,
                       globals = globals, packages = packages, stdout = stdout,
                       conditions = conditions, label = label, earlySignal = earlySignal,
                       gc = gc, namespace = namespace, queue = queue, url = url,
                       workers = workers, timeout = timeout, max_attempts = max_attempts, ...)
  if (!lazy) future <- future::run(future)
  future
}
class(redq_future) <- c("redq_future", "multiprocess", "future", "function")

# The Future object: future's own, with redq's settings checked now so
# that a bad one fails at future(), not on a worker.
RedqFuture <- function(expr = NULL, envir = parent.frame(), substitute = TRUE, globals = TRUE,
                       packages = NULL, namespace = "default", queue = "default", url = NULL,
                       workers = NULL, timeout = NULL, max_attempts = NULL, ...) {
  if (substitute) expr <- substitute(expr)
  check_string(namespace, "namespace")
  check_string(queue, "queue")
  workers <- plan_workers(workers)
  if (!is.null(timeout)) timeout <- check_seconds(timeout, "timeout", none_ok = TRUE, zero_ok = FALSE)
  if (!is.null(max_attempts)) max_attempts <- check_count(max_attempts, "max_attempts")
  args <- list(...)
  args$calls <- NULL
  future <- do.call(future::Future, c(list(expr = expr, envir = envir, substitute = FALSE,
                                           globals = globals, packages = packages), args),
                    quote = TRUE)
  future$redq <- list(namespace = namespace, queue = queue, url = url, workers = workers,
                      timeout = timeout, max_attempts = max_attempts)
  future$task_id <- NA_character_
  structure(future, class = c("RedqFuture", "MultiprocessFuture", class(future)))
}

# The session's state for the futures of one server and namespace: a
# controller, one engine job (results fetched and deleted once received,
# relayed conditions handed back), the unresolved futures by task id, and
# the local workers a plan started.
future_state <- function(spec) {
  url <- redq_url(spec$url)
  key <- paste(url, spec$namespace)
  st <- redq_env$futures[[key]]
  if (is.null(st) || !identical(st$ctl$pid, Sys.getpid())) {
    st <- new.env(parent = emptyenv())
    st$ctl <- redq_controller(spec$namespace, url = url, queue = spec$queue, default = FALSE)
    st$job <- job_open(st$ctl, fetch = TRUE, consume = TRUE, relay = TRUE)
    st$pending <- new.env(parent = emptyenv())
    st$workers <- character()
    st$workers_for <- NULL
    redq_env$futures[[key]] <- st
  }
  st
}

# A plan with `workers = n` starts its workers with its first future, and
# keeps n: a worker that died (its futures run again elsewhere) is
# replaced before the next future. They stop with the session, or when a
# plan asks for other workers.
future_workers <- function(st, spec) {
  want <- list(n = spec$workers, queue = spec$queue)
  if (is.null(spec$workers)) return(invisible())
  if (!identical(st$workers_for, want)) {
    if (length(st$workers)) {
      try(worker_stop(st$workers, type = "kill", wait = 1, controller = st$ctl), silent = TRUE)
    }
    st$workers <- character()
    st$workers_for <- want
  }
  alive <- vapply(st$workers, function(id) {
    proc <- redq_env$processes[[id]]
    !is.null(proc) && proc$is_alive()
  }, logical(1))
  st$workers <- st$workers[alive]
  missing <- spec$workers - length(st$workers)
  if (missing > 0) {
    # the plan replaces its workers itself, before each future
    st$workers <- c(st$workers, worker_spawn(missing, queue = spec$queue, controller = st$ctl,
                                             replace = FALSE)$id)
  }
  invisible()
}

#' @exportS3Method future::run
run.RedqFuture <- function(future, ...) {
  if (future$state != "created") {
    stop(future::FutureError(sprintf("A future ('%s') can only be launched once.",
                                     future$label %||% "<none>"), future = future))
  }
  st <- future_state(future$redq)
  future_workers(st, future$redq)
  expr <- future::getExpression(future)
  payload <- serialize_fast(list(type = "future", expr = expr,
                                 globals = as.list(future$globals)))
  spec <- future$redq
  job_submit(st$job, spec$queue, list(payload), spec$timeout, spec$max_attempts,
             record = function(id) {
               future$task_id <- id
               assign(id, future, envir = st$pending)
               future$state <- "running"
               future_guard_caller(future)
             })
  invisible(future)
}

# Immediate conditions (progressr's progress updates, and any condition
# of class immediateCondition) are relayed through redq while the future
# runs, and muffled so that future does not relay them twice. The relay
# function is put into the expression itself (it is redq's, and redq is
# loaded on every worker).
#' @exportS3Method future::getExpression
getExpression.RedqFuture <- function(future, expr = future$expr, immediateConditions = TRUE,
                                     conditionClasses = future$conditions, ...) {
  immediate <- getOption("future.relay.immediate", "immediateCondition")
  exclude <- attr(conditionClasses, "exclude", exact = TRUE)
  conditionClasses <- unique(c(conditionClasses, immediate))
  attr(conditionClasses, "exclude") <- exclude
  expr <- bquote(withCallingHandlers(.(expr), immediateCondition = function(cond) {
    if (.(wf_relay)(cond)) {
      for (restart in computeRestarts(cond)) {
        if (startsWith(restart$name, "muffle")) invokeRestart(restart)
      }
    }
  }))
  NextMethod(expr = expr, immediateConditions = immediateConditions,
             conditionClasses = conditionClasses)
}

# resolved() waits at most `future.resolved.timeout` seconds (0.01), as
# future's own cluster futures do, for any of the session's futures.
#' @exportS3Method future::resolved
resolved.RedqFuture <- function(x, run = TRUE, timeout = NULL, ...) {
  if (x$state == "created") return(NextMethod())
  if (is.null(x$result)) {
    future_guard_list()
    future_poll(x, timeout %||% getOption("future.resolved.timeout", 0.01), any = TRUE)
  }
  !is.null(x$result)
}

#' @exportS3Method future::result
result.RedqFuture <- function(future, ...) {
  if (future$state == "created") future <- future::run(future)
  while (is.null(future$result)) future_poll(future, Inf)
  result <- future$result
  if (inherits(result, "FutureError")) stop(result)
  result
}

# Wait up to `timeout` for the future's task (any: or any of the
# session's), signalling the conditions futures relay meanwhile. Ctrl+C
# while value() waits for it cancels its task.
future_poll <- function(future, timeout, any = FALSE) {
  st <- future_state(future$redq)
  ids <- if (any) ls(st$pending) else future$task_id
  r <- withCallingHandlers(
    job_wait(st$job, n = if (any) NA else 0, ids = ids, timeout = timeout),
    interrupt = function(cnd) if (!any) future_abandon(list(future)))
  future_relay(st, r$relayed)
  for (i in seq_along(r$id)) future_collect(st, r, i)
  invisible(future)
}

# future waits for a list of futures in resolve() (value() of a list,
# future_lapply(), future_map() all do). Should that wait end without
# them (Ctrl+C, an error), the redq futures of the list that are still
# running are cancelled: on.exit() in resolve()'s frame, added once.
future_guard_list <- function() {
  resolve_list <- utils::getFromNamespace("resolve.list", "future")
  for (i in rev(seq_len(sys.nframe()))) {
    if (!identical(sys.function(i), resolve_list)) next
    frame <- sys.frame(i)
    if (!exists(".redq_guarded", envir = frame, inherits = FALSE)) {
      assign(".redq_guarded", TRUE, envir = frame)
      cleanup <- function() future_abandon(get("x", envir = frame))
      do.call(base::on.exit, list(as.call(list(cleanup)), TRUE), envir = frame)
    }
    return(invisible())
  }
}

# The function that called future() (future_lapply()'s and
# future_map()'s inner functions, a user's function) may end without
# returning, interrupted or failed, between creating its futures and
# collecting them: then the redq futures it created that are still running
# are cancelled (on.exit() in its frame, added once; a normal return,
# with or without its futures resolved, cancels nothing).
future_guard_caller <- function(future) {
  make <- future::future
  for (i in rev(seq_len(sys.nframe()))) {
    if (!identical(sys.function(i), make)) next
    parent <- sys.parents()[[i]]
    if (parent == 0L) return(invisible())
    # eval()'s frames (local(), futureAssign()'s do.call() into the
    # caller's environment, a script's source()) record no value when they
    # return: a normal end could not be told from an abnormal one, and
    # wanted futures (`v %<-% ...`) would be cancelled. Only closures'
    # frames are guarded.
    if (is.primitive(sys.function(parent))) return(invisible())
    frame <- sys.frame(parent)
    guards <- redq_env$guards
    for (g in guards) {
      if (identical(g$frame, frame)) {
        g$futures <- c(g$futures, list(future))
        return(invisible())
      }
    }
    g <- new.env(parent = emptyenv())
    g$frame <- frame
    g$futures <- list(future)
    redq_env$guards <- c(guards, list(g))
    cleanup <- function() {
      redq_env$guards <- Filter(function(x) !identical(x, g), redq_env$guards)
      if (identical(returnValue(g), g)) future_abandon(g$futures)
    }
    do.call(base::on.exit, list(as.call(list(cleanup)), TRUE), envir = frame)
    return(invisible())
  }
}

# Cancel the tasks of those of `futures` that are redq futures still
# running; their values then signal a FutureError.
future_abandon <- function(futures) {
  for (f in futures) {
    if (inherits(f, "RedqFuture") && is.null(f$result) && !is.na(f$task_id)) {
      st <- future_state(f$redq)
      try(job_cancel(st$job, f$task_id), silent = TRUE)
    }
  }
}

# Signal relayed conditions now, and keep them with their future, as
# future's own cluster backend does.
future_relay <- function(st, relayed) {
  for (k in seq_along(relayed$id)) {
    cond <- unserialize(relayed$message[[k]])
    if (inherits(cond, "warning")) {
      warning(cond)
    } else if (inherits(cond, "message")) {
      message(cond)
    } else {
      signalCondition(cond)
    }
    cond$signaled <- (cond$signaled %||% 0L) + 1L
    f <- st$pending[[relayed$id[[k]]]]
    if (!is.null(f)) f$.signaledConditions <- c(f$.signaledConditions, list(cond))
  }
}

# A future's task ended: its FutureResult, or a FutureError that says why
# there is none (its workers died, it timed out or was cancelled).
future_collect <- function(st, r, i) {
  id <- r$id[[i]]
  future <- st$pending[[id]]
  if (is.null(future)) return(invisible())
  rm(list = id, envir = st$pending)
  value <- if (r$completed[[i]]) unserialize(r$result[[i]])
  if (inherits(value, "FutureResult")) {
    value$conditions <- c(future$.signaledConditions, value$conditions)
    future$.signaledConditions <- NULL
    future$result <- value
    future$state <- "finished"
  } else {
    future$result <- future::FutureError(future_failure(st, r, i), future = future)
    future$state <- "failed"
  }
  invisible()
}

future_failure <- function(st, r, i) {
  if (isTRUE(r$refused[[i]])) return(r$message[[i]])
  if (!is.null(r$result[[i]])) {
    e <- unserialize(r$result[[i]])
    if (inherits(e, "condition")) return(conditionMessage(e))
  }
  task_failure(r$id[[i]], st$ctl)
}

# future asks for these whenever a plan is set, also on a worker, where
# future restores the session's plan after each future: there they answer
# from the plan alone, without connecting anywhere.
#' @exportS3Method future::nbrOfWorkers
nbrOfWorkers.redq_future <- function(evaluator) {
  spec <- future_plan_spec(evaluator)
  if (!is.null(redq_env$worker)) return(spec$workers %||% 1L)
  # a plan with its own pool has that many; else whoever serves the queue
  if (!is.null(spec$workers)) return(spec$workers)
  st <- future_state(spec)
  max(1L, live_workers(st$ctl, spec$queue))
}

#' @exportS3Method future::nbrOfFreeWorkers
nbrOfFreeWorkers.redq_future <- function(evaluator, background = FALSE, ...) {
  n <- nbrOfWorkers.redq_future(evaluator)
  if (!is.null(redq_env$worker)) return(n)
  st <- future_state(future_plan_spec(evaluator))
  max(0L, n - length(ls(st$pending)))
}

# A plan's `workers`: a number, or as future lets it be, a function that
# returns one (NULL: start none).
plan_workers <- function(workers) {
  if (is.function(workers)) workers <- workers()
  if (is.null(workers)) NULL else check_count(workers, "workers")
}

# The settings of a plan: what plan() tweaked, else redq_future's defaults.
future_plan_spec <- function(evaluator) {
  f <- utils::modifyList(as.list(formals(redq_future)), as.list(formals(evaluator)))
  get <- function(name) eval(f[[name]], envir = baseenv())
  workers <- plan_workers(get("workers"))
  list(namespace = get("namespace"), queue = get("queue"), url = get("url"), workers = workers)
}

#' @export
print.RedqFuture <- function(x, ...) {
  NextMethod()
  cat(sprintf("redq task: %s (namespace '%s', queue '%s')\n", x$task_id, x$redq$namespace,
              x$redq$queue))
  invisible(x)
}

# On a worker: a future's own expression, which captures its value, output
# and conditions into a FutureResult (payload kind "future").
run_future <- function(p, task, w, state) eval_future(p$expr, p$globals)

# As on future's own cluster workers, a future's globals live in the
# global environment while it runs (functions defined at top level find
# them there); unlike there, they are taken away afterwards, and what they
# covered is put back, so that futures do not see each other's globals.
eval_future <- function(expr, globals) {
  genv <- globalenv()
  names <- as.character(names(globals))
  had <- vapply(names, exists, logical(1), envir = genv, inherits = FALSE)
  saved <- mget(names[had], envir = genv)
  on.exit({
    rm(list = names[!had], envir = genv)
    list2env(saved, envir = genv)
  })
  list2env(globals, envir = genv)
  eval(expr, genv)
}
