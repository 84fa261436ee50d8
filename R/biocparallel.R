# BiocParallel backend, compatible with RedisParam: RedisParam() is a
# BiocParallelParam whose task manager (BiocParallel's .manager_* API)
# drives one engine job per bplapply()/bpiterate() call. The constant part
# of BiocParallel's tasks (FUN, its arguments, options, globals) goes up
# once per call as the job's environment and is cached by workers; each
# task carries only its elements and seed. BiocParallel's own worker
# function evaluates it, so logging, RNG streams, stop.on.error and
# errors behave as with SnowParam.
#
# BiocParallel is suggested, not imported: the class and its methods are
# defined the first time RedisParam() is called, so that redq's workers
# and non-Bioconductor users do not load it.

#' BiocParallel backend on redq workers (RedisParam-compatible)
#'
#' `RedisParam()` is a [BiocParallel::BiocParallelParam] whose tasks run on
#' redq workers: `bplapply()`, `bpmapply()`, `bpvec()`, `bpiterate()` and
#' `bpaggregate()` work as with any other param, and code written for the
#' RedisParam package runs unchanged after `library(redq)` (the first call
#' attaches BiocParallel, as `library(RedisParam)` did).
#'
#' `is.worker` chooses the session's role. `NA` (default): `bpstart()`
#' starts `workers` local workers serving `jobname` and `bpstop()` stops
#' them; `bplapply()` on a param that is not started starts and stops them
#' around the call. `FALSE`: a manager only, using whatever workers serve
#' `jobname`, here or on other machines, including workers that join part
#' way through. `TRUE`: `bpstart()` makes this session a worker serving
#' `jobname` until [rpstopall()] (or [worker_stop()]) stops it.
#'
#' Several managers may share one `jobname` and its workers: each keeps at
#' most `queue.multiplier` times the number of live workers of its tasks
#' queued, so their tasks interleave. A worker that dies mid-task is found
#' by its lease and its task runs on another worker (at most
#' `max_attempts` times in all), without duplicate results. The constant
#' part of each call (the function, its extra arguments, globals) is
#' stored once per call and cached by the workers.
#'
#' `timeout` limits each element's evaluation (seconds); an element that
#' runs longer is interrupted in its worker, ends with an error (use
#' [BiocParallel::bptry()] and `BPREDO` to rerun it), and the worker goes
#' on.
#'
#' If the server loses the call's data (a restart without persistence,
#' `FLUSHALL`), the manager submits what was lost again within
#' `getOption("redq.check_interval", 5)` seconds.
#'
#' The server comes from `url`, else `redis.hostname`/`redis.port`/
#' `redis.password`, else the environment variables `REDISPARAM_HOST`,
#' `REDISPARAM_PORT`, `REDISPARAM_PASSWORD`, then `REDIS_HOST`,
#' `REDIS_PORT`, `REDIS_PASSWORD` (each setting on its own), else
#' `REDIS_URL`, else redq's default server (see [redq_url()]).
#'
#' @param workers Workers to start (`is.worker = NA`), or as for
#'   `SnowParam()` a vector of host names, which must name this machine
#'   (`"localhost"`); for a manager the number of workers expected, used to
#'   split elements into tasks.
#' @param tasks,log,logdir,threshold,resultdir,stop.on.error,exportglobals,progressbar,RNGseed
#'   As for [BiocParallel::BiocParallelParam].
#' @param jobname Queue shared by managers and workers.
#' @param timeout Seconds each element may run.
#' @param queue.multiplier Tasks a manager keeps queued per live worker.
#' @param redis.hostname,redis.port,redis.password Redis server.
#' @param is.worker `NA`, `FALSE` or `TRUE`: see Details.
#' @param url Redis URL (overrides the host, port and password).
#' @param namespace redq namespace.
#' @param max_attempts Runs a task gets when its workers keep dying.
#' @param force.GC,fallback As for [BiocParallel::SnowParam()]: collect
#'   garbage after each element; run a call in this session when the param
#'   is not started and has one worker (`is.worker = NA` only, since a
#'   manager's workers are elsewhere).
#' @return A `RedisParam` object.
#' @export
#' @examples
#' if (redq_available() && requireNamespace("BiocParallel", quietly = TRUE)) {
#'   p <- RedisParam(workers = 2)
#'   res <- bplapply(1:7, function(i) Sys.getpid(), BPPARAM = p)
#'   table(unlist(res))
#' }
RedisParam <- function(workers = rpworkers(is.worker), tasks = 0L, jobname = BiocParallel::ipcid(),
                       log = FALSE, logdir = NA, threshold = "INFO",
                       resultdir = NA_character_, stop.on.error = TRUE, timeout = NULL,
                       exportglobals = TRUE, progressbar = FALSE, RNGseed = NULL,
                       queue.multiplier = 2, redis.hostname = NULL, redis.port = NULL,
                       redis.password = NULL, is.worker = NA, url = NULL,
                       namespace = "default", max_attempts = 3, force.GC = FALSE,
                       fallback = TRUE) {
  gen <- bioc_classes()
  if (!is.logical(is.worker) || length(is.worker) != 1L) {
    redq_abort("argument", "'is.worker' must be NA (manager and local workers), FALSE (manager only) or TRUE (worker)")
  }
  for (flag in c("force.GC", "fallback")) {
    v <- get(flag)
    if (!is.logical(v) || length(v) != 1L || is.na(v)) {
      redq_abort("argument", sprintf("'%s' must be TRUE or FALSE", flag))
    }
  }
  if (!all(is.na(logdir)) && !isTRUE(log)) {
    redq_abort("argument", "'log' must be TRUE when 'logdir' is given")
  }
  own_jobname <- missing(jobname)
  if (own_jobname) jobname <- BiocParallel::ipcid()
  workers <- rp_local_workers(workers)
  check_string(jobname, "jobname")
  if (startsWith(jobname, "@")) redq_abort("argument", "'jobname' must not start with '@'")
  check_string(namespace, "namespace")
  max_attempts <- check_count(max_attempts, "max_attempts")
  multiplier <- queue.multiplier
  if (!is.numeric(multiplier) || length(multiplier) != 1L || is.na(multiplier) ||
      !is.finite(multiplier) || multiplier <= 0) {
    redq_abort("argument", "'queue.multiplier' must be a positive number, e.g. 2")
  }
  bioc <- BiocParallel_ns()
  timeout <- if (is.null(timeout)) bioc$WORKER_TIMEOUT else
    as.integer(check_seconds(timeout, "timeout", zero_ok = FALSE))
  # as SnowParam: a progress bar moves with each element unless told
  # otherwise
  tasks <- if (isTRUE(progressbar) && missing(tasks)) bioc$TASKS_MAXIMUM else
    if (identical(as.numeric(tasks), 0)) 0 else check_count(tasks, "tasks", none_ok = TRUE)
  server <- rp_server(url, redis.hostname, redis.port, redis.password)
  if (!is.null(RNGseed)) RNGseed <- as.integer(RNGseed)
  proto <- BiocParallel::.prototype_update(
    BiocParallel::.BiocParallelParam_prototype,
    workers = as.integer(workers), tasks = if (is.infinite(tasks)) NA_integer_ else as.integer(tasks),
    jobname = jobname, log = isTRUE(log), logdir = as.character(logdir),
    threshold = as.character(threshold), resultdir = as.character(resultdir),
    stop.on.error = isTRUE(stop.on.error), timeout = as.integer(timeout),
    exportglobals = isTRUE(exportglobals), progressbar = isTRUE(progressbar),
    RNGseed = RNGseed, force.GC = force.GC,
    # a param with one local worker that is not started runs in this
    # session, as any BiocParallel param does; a manager's workers are
    # elsewhere, and a worker is one
    fallback = fallback && is.na(is.worker))
  x <- do.call(gen, c(proto, list(
    hostname = server$host, port = server$port, password = server$password,
    url = server$url %||% NA_character_, namespace = namespace,
    queue.multiplier = as.numeric(multiplier), is.worker = is.worker,
    max_attempts = as.numeric(max_attempts), state = new.env(parent = emptyenv()))))
  x$state$own_jobname <- own_jobname
  x
}

# `workers`: a number, or as for SnowParam the names of the hosts to start
# them on, which must be this one (start workers elsewhere with the
# redq-worker launcher, and use is.worker = FALSE here).
rp_local_workers <- function(workers) {
  if (!is.character(workers)) return(check_count(workers, "workers"))
  local <- c("localhost", "127.0.0.1", "::1", Sys.info()[["nodename"]])
  away <- setdiff(workers, local)
  if (length(workers) == 0L || length(away)) {
    redq_abort("argument", sprintf(
      "RedisParam starts workers on this machine only, not on %s: start them there with the redq-worker launcher (see ?worker_main) and use RedisParam(is.worker = FALSE) here",
      paste(if (length(away)) away else "no host", collapse = ", ")))
  }
  length(workers)
}

#' @rdname RedisParam
#' @param x A `RedisParam`.
#' @details `rpworkers(is.worker)` is the default number of workers:
#'   `BiocParallel::snowWorkers()` for local workers, 1 for a worker, and
#'   1000 (as many as may join) for a manager. `rphost()`, `rpport()` and
#'   `rppassword()` give the server settings from the environment (or, with
#'   `x`, those of `x`; `NULL` where unset); `rpisworker(x)` the role;
#'   `rpalive(x)` whether the server answers; `rpstopall(x)` stops every
#'   worker serving `x`'s jobname.
#' @export
rpworkers <- function(is.worker) {
  if (!is.logical(is.worker) || length(is.worker) != 1L) {
    redq_abort("argument", "'is.worker' must be NA, FALSE or TRUE")
  }
  if (is.na(is.worker)) BiocParallel::snowWorkers() else if (is.worker) 1L else 1000L
}

#' @rdname RedisParam
#' @export
rphost <- function(x) {
  if (missing(x)) rp_env("HOST") else x$hostname %|na|% NULL
}

#' @rdname RedisParam
#' @export
rpport <- function(x) {
  if (missing(x)) rp_port(rp_env("PORT"), rp_env_name("PORT")) else x$port %|na|% NULL
}

#' @rdname RedisParam
#' @export
rppassword <- function(x) {
  if (missing(x)) rp_env("PASSWORD") else x$password %|na|% NULL
}

#' @rdname RedisParam
#' @export
rpisworker <- function(x) x$is.worker

#' @rdname RedisParam
#' @export
rpalive <- function(x) {
  url <- if (missing(x)) rp_server(NULL, NULL, NULL, NULL)$url else rp_url(x)
  tryCatch({
    ctl <- redq_controller("default", url = redq_url(url), default = FALSE)
    identical(redis_command("PING", controller = ctl), "PONG")
  }, redq_error = function(e) FALSE)
}

#' @rdname RedisParam
#' @export
rpstopall <- function(x) {
  ctl <- rp_controller(x)
  ids <- serving_workers(ctl, x$jobname)
  worker_stop(ids, type = "graceful", wait = 5, controller = ctl)
  x$state$workers <- setdiff(x$state$workers, ids)
  invisible(x)
}

`%|na|%` <- function(a, b) if (length(a) == 0L || is.na(a)) b else a

# The environment variable for one setting: REDISPARAM_<what>, else
# REDIS_<what>; NULL when neither is set.
rp_env_name <- function(what) {
  for (v in paste0(c("REDISPARAM_", "REDIS_"), what)) if (nzchar(Sys.getenv(v))) return(v)
  paste0("REDIS_", what)
}

rp_env <- function(what) {
  v <- Sys.getenv(rp_env_name(what))
  if (nzchar(v)) v else NULL
}

rp_port <- function(port, source) {
  if (is.null(port)) return(NULL)
  p <- suppressWarnings(as.numeric(port))
  if (length(port) != 1L || is.na(p) || p != round(p) || p < 1 || p > 65535) {
    redq_abort("argument", sprintf(paste(
      "%s is '%s', which is not a port number (1 to 65535); give a port such as 6379,",
      "or the whole address as REDIS_URL (redis://host:port)"), source, format(port)), call = NULL)
  }
  as.integer(p)
}

# Host, port and password from the arguments, else the environment; a URL
# when any is set, else NULL (REDIS_URL or redq's default server).
rp_server <- function(url, host, port, password) {
  if (!is.null(url)) check_string(url, "url")
  host_src <- if (is.null(host)) rp_env_name("HOST") else "redis.hostname"
  port_src <- if (is.null(port)) rp_env_name("PORT") else "redis.port"
  host <- host %||% rp_env("HOST")
  port <- rp_port(port %||% rp_env("PORT"), port_src)
  password <- password %||% rp_env("PASSWORD")
  if (!is.null(host) && (length(host) != 1L || is.na(host) || !nzchar(host) ||
                         grepl("[/@ ]|://", host))) {
    redq_abort("argument", sprintf(paste(
      "%s is '%s', which is not a host name; give a name or address such as 10.0.0.1,",
      "or the whole address as REDIS_URL (redis://host:port)"), host_src, format(host)), call = NULL)
  }
  if (!is.null(password)) check_string(password, "redis.password")
  if (is.null(url) && (!is.null(host) || !is.null(port) || !is.null(password))) {
    url <- server_url(host %||% "127.0.0.1", port %||% 6379L, password)
  }
  list(url = url, host = host %||% NA_character_, port = port %||% NA_integer_,
       password = password %||% NA_character_)
}

rp_url <- function(x) x$url %|na|% NULL

# The param's controller (one per param, made when first needed).
rp_controller <- function(x) {
  st <- x$state
  if (is.null(st$ctl) || !identical(st$ctl$pid, Sys.getpid())) {
    st$ctl <- redq_controller(x$namespace, url = redq_url(rp_url(x)), queue = x$jobname,
                              default = FALSE)
  }
  st$ctl
}

BiocParallel_ns <- function() {
  if (!requireNamespace("BiocParallel", quietly = TRUE)) {
    redq_abort("dependency", paste(
      "RedisParam() needs the BiocParallel package; install it",
      "(Debian: apt install r-bioc-biocparallel; else BiocManager::install('BiocParallel'))"))
  }
  asNamespace("BiocParallel")
}

# Define the RedisParam class and its methods (once per session) in an
# environment of their own whose parent is redq's namespace.
# the fields of a reference class's methods, as R CMD check sees them
utils::globalVariables(c(".self", "callSuper"))

bioc_classes <- function() {
  if (!is.null(redq_env$bioc)) return(redq_env$bioc$gen)
  BiocParallel_ns()
  if (!"package:BiocParallel" %in% search()) {
    attachNamespace("BiocParallel")
  }
  where <- new.env(parent = asNamespace("redq"))
  assign(".packageName", "redq", envir = where)
  gen <- methods::setRefClass("RedisParam", contains = "BiocParallelParam", where = where,
    fields = list(hostname = "character", port = "integer", password = "character",
                  url = "character", namespace = "character", queue.multiplier = "numeric",
                  is.worker = "logical", max_attempts = "numeric", state = "environment"),
    methods = list(show = function() {
      callSuper()
      cat("  jobname: ", .self$jobname, "; is.worker: ", .self$is.worker,
          "; queue.multiplier: ", .self$queue.multiplier, "\n",
          "  server: ", redact_url(rp_url(.self) %||% "(redq_url())"), "; namespace: ",
          .self$namespace, "\n", sep = "")
    }))
  methods::setClass("RedqBiocManager", contains = "environment", where = where)
  bioc_methods(where)
  redq_env$bioc <- list(gen = gen, where = where)
  gen
}

redact_url <- function(url) sub("//[^@/]*@", "//***@", url)

bioc_methods <- function(where) {
  set <- function(f, sig, def) methods::setMethod(f, sig, def, where = where)
  set("bpstart", "RedisParam", function(x, ...) rp_start(x))
  set("bpstop", "RedisParam", function(x) rp_stop(x))
  set("bpisup", "RedisParam", function(x) isTRUE(x$state$up))
  set("bpbackend", "RedisParam", function(x) x$state$ctl)
  set("bpworkers", "RedisParam", function(x) rp_nworkers(x))
  set("bptasks", "RedisParam", function(x) rp_tasks(x))
  set("bplog<-", c("RedisParam", "logical"), function(x, value) {
    x$log <- isTRUE(value)
    x
  })
  set(".manager", "RedisParam", function(BPPARAM) rp_manager(BPPARAM))
  set(".manager_send", "RedqBiocManager", function(manager, value, ...) {
    manager$buffer[[length(manager$buffer) + 1L]] <- value
    invisible(manager)
  })
  set(".manager_flush", "RedqBiocManager", function(manager) rp_flush(manager))
  set(".manager_recv", "RedqBiocManager", function(manager) rp_recv(manager))
  set(".manager_capacity", "RedqBiocManager", function(manager) rp_capacity(manager))
  set(".manager_send_all", "RedqBiocManager", function(manager, value) rp_send_all(manager, value))
  set(".manager_recv_all", "RedqBiocManager", function(manager) rp_recv_all(manager))
  set(".manager_cleanup", "RedqBiocManager", function(manager) rp_cleanup(manager))
}

rp_start <- function(x) {
  if (isTRUE(x$is.worker)) {
    # a worker: serve the jobname until stopped
    return(invisible(worker_main(namespace = x$namespace, url = redq_url(rp_url(x)),
                                 queue = x$jobname)))
  }
  if (isTRUE(x$state$up)) redq_abort("state", "this RedisParam is already started; bpstop() it first")
  ctl <- rp_controller(x)
  if (is.na(x$is.worker)) {
    x$state$workers <- worker_spawn(x$workers, queue = x$jobname, controller = ctl)$id
  }
  x$state$up <- TRUE
  BiocParallel::.bpstart_impl(x)
  invisible(x)
}

rp_stop <- function(x) {
  if (isTRUE(x$is.worker) || !isTRUE(x$state$up)) return(invisible(x))
  x$state$up <- FALSE
  BiocParallel::.bpstop_impl(x)
  if (length(x$state$workers)) {
    try(worker_stop(x$state$workers, type = "kill", wait = 2, controller = rp_controller(x)),
        silent = TRUE)
    x$state$workers <- character()
  }
  # a jobname of this session's own (the default) is forgotten with it
  if (is.na(x$is.worker) && isTRUE(x$state$own_jobname)) {
    try(queue_remove(x$jobname, controller = rp_controller(x)), silent = TRUE)
  }
  invisible(x)
}

# Started: the live workers serving the jobname (at least 1); else the
# number asked for.
rp_nworkers <- function(x) {
  if (!isTRUE(x$state$up)) return(x$workers)
  max(1L, rp_live(x))
}

# With tasks = 0, BiocParallel makes one task per worker. A manager splits
# by the workers it expects (`workers`), not by those live now, so that
# workers joining part way through a call find tasks to take.
rp_tasks <- function(x) {
  if (isTRUE(x$tasks == 0L) && isFALSE(x$is.worker)) x$workers else x$tasks
}

rp_live <- function(x) length(serving_workers(rp_controller(x), x$jobname))

# One manager per bplapply()/bpiterate() call: one engine job.
rp_manager <- function(BPPARAM) {
  m <- methods::new("RedqBiocManager")
  m$param <- BPPARAM
  m$ctl <- rp_controller(BPPARAM)
  m$queue <- BPPARAM$jobname
  m$job <- job_open(m$ctl, fetch = TRUE, consume = TRUE,
                    check_every = redq_option("check_interval"))
  m$buffer <- list()
  m$sizes <- new.env(parent = emptyenv())
  m$env_sent <- FALSE
  m$live <- NA_integer_
  m$live_at <- -Inf
  m$all <- character()
  m
}

# Tasks a manager keeps queued: queue.multiplier per live worker (looked
# up at most once a second), at least 1.
rp_capacity <- function(m) {
  now <- proc.time()[["elapsed"]]
  if (now - m$live_at > 1) {
    m$live <- rp_live(m$param)
    m$live_at <- now
  }
  max(1L, ceiling(max(1L, m$live) * m$param$queue.multiplier))
}

# Submit what .manager_send() buffered: the constant part once per call
# (as the job's environment), then each task's own part.
rp_flush <- function(m) {
  if (!length(m$buffer)) return(invisible(m))
  if (!m$env_sent) {
    const <- BiocParallel::.task_const(m$buffer[[1]])
    job_env(m$job, serialize_fast(list(const = const)), m$queue)
    m$env_sent <- TRUE
  }
  tags <- vapply(m$buffer, function(v) as.numeric(v$data$tag), numeric(1))
  payloads <- lapply(m$buffer, function(v) {
    assign(as.character(v$data$tag), length(v$data$args$X), envir = m$sizes)
    serialize_fast(list(type = "bioc", job = m$job$id, msg = BiocParallel::.task_dynamic(v)))
  })
  m$buffer <- list()
  job_submit(m$job, m$queue, payloads, max_attempts = m$param$max_attempts, tags = tags)
  invisible(m)
}

# Results as they arrive, as BiocParallel's managers return them: a list
# of list(value = <the worker's VALUE message>). A task no worker could
# finish (its workers kept dying, or it was cancelled) gives an error for
# each of its elements. Waits in slices of a second, returning nothing
# when a slice passes, so that the caller can queue more tasks for
# workers that joined.
rp_recv <- function(m) {
  r <- job_wait(m$job, n = NA, timeout = 1)
  out <- vector("list", length(r$id))
  for (i in seq_along(r$id)) {
    tag <- r$tag[[i]]
    n <- m$sizes[[as.character(tag)]] %||% 1L
    if (exists(as.character(tag), envir = m$sizes, inherits = FALSE)) {
      rm(list = as.character(tag), envir = m$sizes)
    }
    value <- if (r$completed[[i]]) unserialize(r$result[[i]]) else {
      err <- BiocParallel::.error_worker_comm(simpleError(rp_failure(m, r, i)),
                                              sprintf("task %s failed", r$id[[i]]))
      list(type = "VALUE", tag = as.integer(tag), value = rep(list(err), n), success = FALSE,
           time = NULL, log = NULL, sout = NULL)
    }
    out[[i]] <- list(node = value$node %||% r$id[[i]], value = value)
  }
  out
}

# Why task i of a wait's reply has no value: its error, or what happened
# to it (lost workers, cancelled).
rp_failure <- function(m, r, i) {
  v <- job_value(r, i)
  if (inherits(v, "redq_task_error") && !is.null(r$result[[i]])) conditionMessage(v) else
    task_failure(r$id[[i]], m$ctl)
}

# A message for every live worker of the jobname, through its own queue.
rp_send_all <- function(m, value) {
  if (identical(value$type, "DONE")) {
    rpstopall(m$param)
    return(invisible(m))
  }
  payload <- serialize_fast(list(type = "bioc", job = "", msg = value))
  for (w in serving_workers(m$ctl, m$queue)) {
    m$all <- c(m$all, job_submit(m$job, worker_queue(w), list(payload), max_attempts = 1))
  }
  invisible(m)
}

rp_recv_all <- function(m) {
  ids <- m$all
  m$all <- character()
  if (!length(ids)) return(list())
  r <- job_wait(m$job, n = 0, ids = ids)
  lapply(seq_along(r$id), function(i) {
    list(value = if (r$completed[[i]]) unserialize(r$result[[i]]) else
      list(type = "VALUE", value = list(simpleError(rp_failure(m, r, i))), success = FALSE))
  })
}

# The call ended (or was interrupted): cancel what is left, delete the
# job's keys.
rp_cleanup <- function(m) {
  try(job_remove(m$job), silent = TRUE)
  invisible(m)
}
