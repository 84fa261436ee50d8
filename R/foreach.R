# The foreach backend. A loop is a job: its environment (expression,
# exported variables, packages) is uploaded once; iterations travel in
# chunks as tasks that report to the job's own completion list; results are
# combined as they arrive; every key of the job is gone when the loop ends,
# normally, with an error, or on Ctrl+C.

# Upper bound on iterations held in memory (args submitted, results not yet
# combined): iterators of unknown or huge length are consumed in windows.
FOREACH_WINDOW <- 10000L

do_redis <- function(obj, expr, envir, data) {
  if (!inherits(obj, "foreach")) {
    redq_abort("argument", "obj must be a foreach object")
  }
  opts <- loop_options(obj, data)
  ctl <- get_controller(data$controller)
  it <- iterators::iter(obj)
  accumulator <- foreach::makeAccum(it)
  exportenv <- loop_exports(obj, expr, envir, opts)
  jid <- substr(basename(tempfile("")), 5, 16)
  job <- new.env(parent = emptyenv())
  job$id <- jid
  job$ctl <- ctl
  job$queue <- opts$queue
  job$timeout <- opts$timeout
  job$max_attempts <- opts$max_attempts
  job$pending <- list() # task id -> payload, kept until its result is in
  job$events <- events_tail(ctl) # lost workers reported up to here
  job$size <- list() # task id -> number of iterations
  job$env <- serialize_fast(list(expr = expr, env = exportenv, packages = opts$packages))
  on.exit(job_remove(job), add = TRUE)
  job$about <- paste(opts$queue, Sys.info()[["user"]], Sys.info()[["nodename"]], Sys.getpid(),
                     format(Sys.time(), "%Y-%m-%d %H:%M:%OS3"), sep = "\t")
  rs_check(rs_job_put_env(ctl$ptr, jid, job$env, job$about))

  seeds <- rng_streams()
  nworkers <- max(1L, live_workers(ctl, opts$queue))
  chunk <- opts$chunkSize
  next_index <- 1L
  exhausted <- FALSE
  total <- NA_integer_
  done_iters <- 0L
  bar <- NULL
  started <- Sys.time()
  last_check <- Sys.time()

  # pull up to n iterations' arguments off the iterator
  pull <- function(n) {
    args <- vector("list", n)
    k <- 0L
    while (k < n) {
      a <- tryCatch(iterators::nextElem(it), error = function(e) {
        if (identical(conditionMessage(e), "StopIteration")) NULL else stop(e)
      })
      if (is.null(a)) {
        exhausted <<- TRUE
        break
      }
      k <- k + 1L
      args[[k]] <- a
    }
    args[seq_len(k)]
  }

  submit <- function(args) {
    n <- length(args)
    if (n == 0L) return(invisible())
    if (is.null(chunk)) {
      basis <- if (exhausted) n else FOREACH_WINDOW
      # enough tasks to keep every worker busy (4 per worker) while
      # amortising round trips over many iterations per task
      chunk <<- max(1L, as.integer(floor(basis / (nworkers * 4L))))
    }
    starts <- seq(1L, n, by = chunk)
    ids <- sprintf("%s.%d", jid, next_index + starts - 1L)
    payloads <- vector("list", length(starts))
    for (j in seq_along(starts)) {
      idx <- starts[[j]]:min(n, starts[[j]] + chunk - 1L)
      first <- next_index + idx[[1]] - 1L
      payloads[[j]] <- serialize_fast(list(
        type = "foreach", job = jid, first = first, args = args[idx],
        seed = seeds(first)))
      job$size[[ids[[j]]]] <- length(idx)
    }
    names(payloads) <- ids
    job$pending[ids] <- payloads
    rs_check(rs_job_submit(ctl$ptr, jid, opts$queue, ids, unname(payloads),
                           opts$timeout, opts$max_attempts))
    next_index <<- next_index + n
    if (obj$verbose) {
      message(sprintf("redq: job %s, %d iteration(s) in %d task(s) of up to %d", jid, n,
                      length(ids), chunk))
    }
  }

  submit(pull(FOREACH_WINDOW))
  if (exhausted) total <- next_index - 1L
  while (length(job$pending) > 0L) {
    got <- job_collect(job, 0.2)
    for (i in seq_along(got$id)) {
      id <- got$id[[i]]
      if (is.null(job$pending[[id]])) next # duplicate notice after a resubmission
      first <- as.integer(sub(".*\\.", "", id))
      values <- chunk_values(got$status[[i]], got$result[[i]], job$size[[id]], id)
      job$pending[[id]] <- NULL
      job$size[[id]] <- NULL
      tryCatch(accumulator(values, seq.int(first, length.out = length(values))),
               error = function(e) {
                 redq_abort("combine", sprintf("error calling combine function: %s",
                                               conditionMessage(e)))
               })
      done_iters <- done_iters + length(values)
    }
    if (!exhausted && sum(unlist(job$size)) < FOREACH_WINDOW / 2) {
      submit(pull(FOREACH_WINDOW))
      if (exhausted) total <- next_index - 1L
    }
    if (opts$progress && is.null(bar) && !is.na(total) &&
        as.numeric(Sys.time() - started, units = "secs") > 0.5) {
      bar <- utils::txtProgressBar(min = 0, max = max(1L, total), style = 3)
      on.exit(close(bar), add = TRUE)
    }
    if (!is.null(bar)) utils::setTxtProgressBar(bar, done_iters)
    if (as.numeric(Sys.time() - last_check, units = "secs") >= opts$ftinterval) {
      last_check <- Sys.time()
      job_recover(job)
    }
  }

  error_value <- foreach::getErrorValue(it)
  error_index <- foreach::getErrorIndex(it)
  if (identical(obj$errorHandling, "stop") && !is.null(error_value)) {
    msg <- sprintf('task %d failed - "%s"', error_index, conditionMessage(error_value))
    stop(simpleError(msg, call = expr))
  }
  foreach::getResult(it)
}

# The iteration values of one ended task. A task that could not run
# (DIED, TIMEOUT, CANCELLED) yields an error value for each of its
# iterations, which .errorhandling then treats like any error.
chunk_values <- function(status, raw, n, id) {
  if (status == "COMPLETE") {
    return(unserialize(raw))
  }
  err <- if (!is.null(raw) && length(raw)) {
    unserialize(raw)
  } else {
    redq_task_error(TASK_STATUS_MESSAGE[[status]] %||% status, status = status, id = id)
  }
  rep(list(err), n)
}

# Results in. A connection error is waited out: the Rust side reconnects,
# and job_recover() resubmits whatever the server lost meanwhile.
job_collect <- function(job, wait) {
  r <- rs_job_collect(job$ctl$ptr, job$id, wait)
  if (inherits(r, "redq_rs_error") && identical(r$kind, "connection")) {
    job_recover(job)
    return(list(id = character()))
  }
  rs_check(r)
}

# job_check(), retried until the server answers again (or patience runs out).
job_recover <- function(job, patience = getOption("redq.reconnect_patience", 60)) {
  deadline <- Sys.time() + patience
  repeat {
    ok <- tryCatch({
      job_check(job)
      TRUE
    }, redq_error_connection = function(e) {
      if (Sys.time() > deadline) stop(e)
      FALSE
    })
    if (ok) return(invisible())
    Sys.sleep(0.1)
  }
}

# Run the reaper, and resubmit whatever the server lost (restart without
# persistence, FLUSHALL): the controller still holds every unfinished
# task's payload.
job_check <- function(job) {
  ctl <- job$ctl
  r <- reap_and_report(ctl, job$events)
  job$events <- r$last
  warn_lost(r$lost)
  ids <- names(job$pending)
  if (length(ids) == 0L) return(invisible())
  m <- rs_check(rs_job_missing(ctl$ptr, job$id, ids))
  if (!m$env) {
    rs_check(rs_job_put_env(ctl$ptr, job$id, job$env, job$about))
  }
  if (length(m$missing)) {
    gone <- ids[m$missing]
    rs_check(rs_job_submit(ctl$ptr, job$id, job$queue, gone, unname(job$pending[gone]),
                           job$timeout, job$max_attempts))
  }
}

job_list <- function(ctl) rs_check(rs_job_list(ctl$ptr))

job_cancel <- function(ctl, jid, queue) rs_check(rs_job_cancel(ctl$ptr, jid, queue))

job_remove <- function(job) {
  ids <- names(job$pending)
  r <- rs_job_remove(job$ctl$ptr, job$id, if (is.null(ids)) character() else ids)
  invisible(r)
}

# A function giving the L'Ecuyer-CMRG seed of iteration i. The streams
# derive from one draw of the session's generator, so set.seed() before a
# loop fixes every iteration's numbers whatever the number of workers or
# the chunk size.
rng_streams <- function() {
  base <- sample.int(.Machine$integer.max, 1L)
  old <- if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) {
    get(".Random.seed", envir = globalenv(), inherits = FALSE)
  }
  old_kind <- RNGkind()
  RNGkind("L'Ecuyer-CMRG")
  set.seed(base)
  first <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  RNGkind(old_kind[1], old_kind[2], old_kind[3])
  if (is.null(old)) {
    rm(".Random.seed", envir = globalenv())
  } else {
    assign(".Random.seed", old, envir = globalenv())
  }
  cache <- list(i = 1L, seed = first)
  function(i) {
    # iterations are asked for in increasing order
    while (cache$i < i) {
      cache$seed <<- parallel::nextRNGStream(cache$seed)
      cache$i <<- cache$i + 1L
    }
    cache$seed
  }
}

# What the loop body needs: the variables foreach finds it uses, those named
# in .export (or setExport()), and the '...' of an enclosing function.
loop_exports <- function(obj, expr, envir, opts) {
  exportenv <- tryCatch({
    args <- eval(quote(list(...)), envir)
    environment(do.call(make_dots_env, args))
  }, error = function(e) new.env(parent = emptyenv()))
  noexport <- union(obj$noexport, obj$argnames)
  foreach::getexports(expr, exportenv, envir, bad = noexport)
  export <- unique(c(obj$export, opts$export))
  for (sym in setdiff(export, noexport)) {
    if (!exists(sym, envir, inherits = TRUE)) {
      redq_abort("argument", sprintf('unable to find variable "%s" to export', sym))
    }
    val <- get(sym, envir = envir, inherits = TRUE)
    if (is.function(val) &&
        (identical(environment(val), globalenv()) || identical(environment(val), envir))) {
      environment(val) <- exportenv
    }
    assign(sym, val, pos = exportenv, inherits = FALSE)
  }
  if (obj$verbose) {
    message("redq: exporting ", paste(ls(exportenv, all.names = TRUE), collapse = ", "))
  }
  exportenv
}

make_dots_env <- function(...) {
  list(...)
  function() NULL
}

# Worker side: evaluate one chunk of a job's iterations. The job's
# environment is fetched once per worker per job and kept for its next
# chunks; errors are per-iteration values, as foreach expects.
run_foreach_chunk <- function(p, task, w, state) {
  job <- state$jobs[[p$job]]
  if (is.null(job)) {
    job <- foreach_job_setup(p$job, w)
    state$jobs <- c(utils::tail(state$jobs, 3L), stats::setNames(list(job), p$job))
  }
  seed <- p$seed
  # a user's set.seed.worker(0) runs before every iteration, after the
  # default seeding, as in doRedis
  user_seed <- job$env$set.seed.worker
  out <- vector("list", length(p$args))
  for (k in seq_along(p$args)) {
    args <- p$args[[k]]
    for (n in names(args)) assign(n, args[[n]], pos = job$env)
    if (!is.null(seed)) {
      assign(".Random.seed", seed, envir = globalenv())
      seed <- parallel::nextRNGStream(seed)
    }
    if (is.function(user_seed)) user_seed(0)
    out[k] <- list(tryCatch(eval(job$expr, envir = job$env), error = function(e) e))
  }
  out
}

foreach_job_setup <- function(jid, w) {
  raw <- worker_job_env(w, jid)
  if (is.null(raw)) {
    stop("the job's environment is gone from Redis (the loop ended or the server lost it)")
  }
  job <- unserialize(raw)
  for (pkg in job$packages) {
    library(pkg, character.only = TRUE)
  }
  parent.env(job$env) <- globalenv()
  # compiled once per job, as foreach's own backends do: R compiles loops
  # on the fly only at top level, so an uncompiled body runs its loops slowly
  job$expr <- compile_expr(job$expr, job$env)
  if (is.function(job$env$worker.init)) {
    job$env$worker.init()
  }
  job
}
