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
  # a loop whose queue no live worker serves fails after
  # redq.no_worker_timeout seconds (it warns after a lease period)
  job <- job_open(ctl, check_every = opts$ftinterval,
                  no_workers = redq_option("no_worker_timeout"))
  # whatever ends the loop (its end, an error, Ctrl+C), its tasks and keys go
  on.exit(try(job_remove(job), silent = TRUE), add = TRUE)
  job_env(job, serialize_fast(list(expr = expr, env = exportenv, packages = opts$packages,
                                   namespace = loop_namespace(envir))),
          opts$queue)

  seed <- rng_stream_start()
  nworkers <- max(1L, live_workers(ctl, opts$queue))
  chunk <- opts$chunkSize
  sizes <- integer() # iterations a task carries, by the index of its first
  in_flight <- 0L # iterations submitted, results not yet combined
  next_index <- 1L
  exhausted <- FALSE
  total <- NA_integer_
  done_iters <- 0L
  bar <- NULL
  # An ordered loop's results reach foreach's accumulator in iteration
  # order: it keeps results that come early in a buffer it scans on every
  # call, so feeding it out of order makes the combine quadratic in how
  # far ahead they come. Those that come early wait here instead.
  in_order <- isTRUE(obj$combineInfo$in.order)
  held <- list()
  held_at <- integer()
  next_combine <- 1L

  # pull up to n iterations' arguments off the iterator (one handler for
  # the whole window: the iterator signals its end with an error)
  pull <- function(n) {
    args <- vector("list", n)
    k <- 0L
    tryCatch(while (k < n) {
      a <- iterators::nextElem(it)
      k <- k + 1L
      args[k] <- list(a)
    }, error = function(e) {
      if (!identical(conditionMessage(e), "StopIteration")) stop(e)
      exhausted <<- TRUE
    })
    args[seq_len(k)]
  }

  # Iterations travel in chunks; each task is tagged with the index of its
  # first iteration, from which the engine derives its random number stream.
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
    ends <- pmin(n, starts + chunk - 1L)
    payloads <- lapply(seq_along(starts), function(j) {
      serialize_fast(list(type = "foreach", job = job$id, args = args[starts[[j]]:ends[[j]]]))
    })
    firsts <- next_index + starts - 1L
    ids <- job_submit(job, opts$queue, payloads, opts$timeout, opts$max_attempts,
                      tags = firsts, seed = seed)
    sizes[firsts] <<- ends - starts + 1L
    in_flight <<- in_flight + n
    next_index <<- next_index + n
    if (obj$verbose) {
      message(sprintf("redq: job %s, %d iteration(s) in %d task(s) of up to %d", job$id, n,
                      length(ids), chunk))
    }
  }

  submit(pull(FOREACH_WINDOW))
  if (exhausted) total <- next_index - 1L
  while (in_flight > 0L) {
    got <- job_wait(job)
    # the whole batch goes to foreach's accumulator at once
    values <- vector("list", length(got$id))
    for (i in seq_along(got$id)) {
      n <- sizes[[got$tag[[i]]]]
      values[[i]] <- if (got$completed[[i]]) job_value(got, i) else rep(list(job_value(got, i)), n)
    }
    n <- sizes[got$tag]
    values <- unlist(values, recursive = FALSE)
    at <- sequence(n, from = as.integer(got$tag))
    if (in_order) {
      held <- c(held, values)
      held_at <- c(held_at, at)
      o <- order(held_at)
      held <- held[o]
      held_at <- held_at[o]
      gap <- which(held_at != seq.int(next_combine, length.out = length(held_at)))
      k <- if (length(gap)) gap[[1L]] - 1L else length(held_at)
      values <- held[seq_len(k)]
      at <- held_at[seq_len(k)]
      held <- held[k + seq_len(length(held) - k)]
      held_at <- held_at[k + seq_len(length(held_at) - k)]
      next_combine <- next_combine + k
    }
    if (length(at)) {
      tryCatch(accumulator(values, at), error = function(e) {
        redq_abort("combine", sprintf("error calling combine function: %s",
                                      conditionMessage(e)))
      })
    }
    in_flight <- in_flight - sum(n)
    done_iters <- done_iters + sum(n)
    if (!exhausted && in_flight < FOREACH_WINDOW / 2) {
      submit(pull(FOREACH_WINDOW))
      if (exhausted) total <- next_index - 1L
    }
    if (opts$progress && is.null(bar) && !is.na(total)) {
      bar <- progress_bar("iterations")
      on.exit(bar(NULL), add = TRUE)
    }
    if (!is.null(bar)) bar(done_iters, total)
  }

  error_value <- foreach::getErrorValue(it)
  error_index <- foreach::getErrorIndex(it)
  if (identical(obj$errorHandling, "stop") && !is.null(error_value)) {
    msg <- sprintf('task %d failed - "%s"', error_index, conditionMessage(error_value))
    stop(simpleError(msg, call = expr))
  }
  foreach::getResult(it)
}

# The L'Ecuyer-CMRG seed of a loop's first iteration, from one draw of the
# session's generator: set.seed() before a loop fixes every iteration's
# numbers, whatever the number of workers or the chunk size (iteration i
# gets stream i - 1 after this one). This is the one draw redq takes from
# R's generator, and it is the user's: a loop that uses random numbers
# moves .Random.seed, as with doRNG (secrets, ports and ids come from the
# system's generator).
rng_stream_start <- function() lecuyer_seed(sample.int(.Machine$integer.max, 1L))

# What the loop body needs: the variables foreach finds it uses, those named
# in .export (or setExport()), and the '...' of an enclosing function.
loop_exports <- function(obj, expr, envir, opts) {
  exportenv <- loop_dots(envir)
  noexport <- union(obj$noexport, obj$argnames)
  # codetools, which foreach uses to find the variables, warns about
  # functions that pass `...` on inside closures (plyr's do.ply does); the
  # warning is about code analysis, not about anything the loop does
  withCallingHandlers(foreach::getexports(expr, exportenv, envir, bad = noexport),
    warning = function(w) {
      if (grepl("may be used in an incorrect context", conditionMessage(w), fixed = TRUE)) {
        invokeRestart("muffleWarning")
      }
    })
  # named exports go whatever .noexport says, as in doParallel and doRedis
  # (setExport()), but never over an iteration variable
  export <- unique(c(obj$export, opts$export))
  for (sym in setdiff(export, obj$argnames)) {
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

# A loop written inside a package's function sees that package's
# functions, as it does with doParallel: its workers evaluate it in the
# package's namespace. NULL for loops written at top level or in scripts.
loop_namespace <- function(envir) {
  top <- topenv(envir)
  if (!isNamespace(top) || isBaseNamespace(top)) return(NULL)
  getNamespaceName(top)
}

# The `...` of the function a loop is written in, in an environment of
# their own: each argument is evaluated here, as the other backends do, and
# one that cannot be (plyr's summarise(s = sum(v)), whose variables exist
# only in the data the workers get) travels as its promise, with its
# expression, to be evaluated where the loop's function does so. No
# `...` there: an empty environment.
loop_dots <- function(envir) {
  env <- tryCatch(eval(as.call(list(capture_dots, quote(...))), envir),
                  error = function(e) NULL)
  if (is.null(env)) return(new.env(parent = emptyenv()))
  for (i in seq_len(eval(quote(...length()), env))) {
    tryCatch(eval(as.name(paste0("..", i)), env), error = function(e) NULL)
  }
  env
}

capture_dots <- function(...) environment()

# Worker side: evaluate one chunk of a job's iterations. The job's
# environment is fetched once per worker per job and kept for its next
# chunks; errors are per-iteration values, as foreach expects. The task's
# seed is the stream of its first iteration; each next iteration takes the
# next stream.
run_foreach_chunk <- function(p, task, w, state) {
  job <- state$jobs[[p$job]]
  if (is.null(job)) {
    job <- foreach_job_setup(p$job, w, state)
    state$jobs <- c(utils::tail(state$jobs, 3L), stats::setNames(list(job), p$job))
  }
  seeds <- if (!is.null(task$seed)) rng_streams(task$seed, 0, length(p$args))
  # a user's set.seed.worker(0) runs before every iteration, after the
  # default seeding, as in doRedis
  user_seed <- job$env$set.seed.worker
  out <- vector("list", length(p$args))
  for (k in seq_along(p$args)) {
    args <- p$args[[k]]
    for (n in names(args)) assign(n, args[[n]], pos = job$env)
    if (!is.null(seeds)) assign(".Random.seed", seeds[[k]], envir = globalenv())
    if (is.function(user_seed)) user_seed(0)
    out[k] <- list(tryCatch(eval(job$expr, envir = job$env), error = function(e) e))
  }
  out
}

foreach_job_setup <- function(jid, w, state) {
  job <- worker_job_env(w, jid, state)
  if (is.null(job)) {
    stop("the job's environment is gone from Redis (the loop ended or the server lost it)")
  }
  for (pkg in job$packages) {
    library(pkg, character.only = TRUE)
  }
  parent.env(job$env) <- if (is.null(job$namespace)) globalenv() else asNamespace(job$namespace)
  # compiled once per job, as foreach's own backends do: R compiles loops
  # on the fly only at top level, so an uncompiled body runs its loops slowly
  job$expr <- compile_expr(job$expr, job$env)
  if (is.function(job$env$worker.init)) {
    job$env$worker.init()
  }
  job
}
