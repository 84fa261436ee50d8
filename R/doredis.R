# doRedis' interface on top of redq: same names, same meaning, so that a
# doRedis script runs after library(redq).

#' Register redq as the foreach backend
#'
#' After `registerDoRedis(queue)`, `foreach(...) %dopar% ...` loops run on
#' the workers serving `queue` (start them with [startLocalWorkers()], with
#' [worker_spawn()], or with the `redq-worker` launcher on other machines).
#' The arguments are doRedis'; `url` and `namespace` are redq's. With no
#' host, port, url or `REDIS_URL`, redq uses your own private server,
#' starting it if needed (see [redq_url()]).
#'
#' `ftinterval`, `chunkSize` and `progress`, when given, set the defaults of
#' all later loops, as [setChunkSize()] and the other setters do (before or
#' after this call); when not given, those settings stand. Per loop,
#' `.options.redis = list(chunkSize =, ftinterval =, progress =, timeout =,
#' max_attempts =)` overrides them.
#'
#' Each iteration runs with its own L'Ecuyer-CMRG random number stream
#' derived from the session's generator, so `set.seed(1)` before a loop
#' gives the same results whatever the number of workers and the chunk
#' size. A function `set.seed.worker` exported to the loop takes over
#' seeding: it is called with argument 0 before every iteration, after the
#' iteration's own stream is installed, as in doRedis. A function
#' `worker.init` runs once per job on each worker before its first
#' iteration, as in doRedis.
#'
#' @param queue Queue name the loop's tasks go to.
#' @param host,port,password Redis server, as in doRedis (alternatively
#'   `url`).
#' @param ftinterval Seconds between checks, while a loop runs, for tasks
#'   the server lost (a restart without persistence, `FLUSHALL`); they are
#'   submitted again. Lost workers are looked for every
#'   `redq.reap_interval` seconds.
#' @param chunkSize Iterations per task; `NULL` chooses one that keeps
#'   every worker busy while amortising round trips.
#' @param progress Show a progress bar (cli: iterations done, throughput,
#'   time left) for loops that take more than a couple of seconds.
#' @param url Redis URL (`redis://[user:password@]host:port/db`).
#' @param namespace redq namespace.
#' @param ... Ignored (doRedis compatibility).
#' @return Invisibly, the controller the loops use.
#' @export
#' @examples
#' if (redq_available()) {
#'   library(foreach)
#'   registerDoRedis("jobs")
#'   startLocalWorkers(n = 2, queue = "jobs", linger = 1)
#'   foreach(i = 1:4, .combine = c) %dopar% sqrt(i)
#'   removeQueue("jobs")
#' }
registerDoRedis <- function(queue, host = "localhost", port = 6379, password,
                            ftinterval = 30, chunkSize = NULL, progress = FALSE,
                            url = NULL, namespace = "default", ...) {
  check_string(queue, "queue")
  # as in doRedis, the setters' values stand unless given here
  given <- c(chunkSize = !missing(chunkSize), ftinterval = !missing(ftinterval),
             progress = !missing(progress))
  if (!is.null(chunkSize)) chunkSize <- check_count(chunkSize, "chunkSize")
  ftinterval <- check_seconds(ftinterval, "ftinterval", zero_ok = FALSE)
  g <- doredis_globals()
  if (given[["chunkSize"]]) g$chunkSize <- chunkSize
  if (given[["ftinterval"]]) g$ftinterval <- ftinterval
  if (given[["progress"]]) g$progress <- isTRUE(progress)
  url <- doredis_url(url, host, port, if (missing(password)) NULL else password,
                     !missing(host) || !missing(port))
  ctl <- redq_controller(namespace, url = url, queue = queue)
  settings <- new.env(parent = emptyenv())
  settings$controller <- ctl
  settings$queue <- queue
  settings$globals <- g
  redq_env$foreach <- settings
  removed <- value_get(REMOVED_QUEUES, controller = ctl)
  if (queue %in% removed) value_set(REMOVED_QUEUES, setdiff(removed, queue), controller = ctl)
  foreach::setDoPar(do_redis, data = settings, info = doredis_info)
  invisible(ctl)
}

doredis_info <- function(data, item) {
  switch(item,
    workers = live_workers(data$controller, data$queue),
    name = "redq",
    version = as.character(utils::packageVersion("redq")),
    NULL)
}

#' @rdname redisSet
#' @export
redisConnect <- function(host = "localhost", port = 6379, password, url = NULL, ...) {
  # the server host, port, password or url name; else, as
  # registerDoRedis(), redq_url()'s
  url <- doredis_url(url, host, port, if (missing(password)) NULL else password,
                     !missing(host) || !missing(port))
  redq_env$redis_ctl <- redq_controller("default", url = url, default = FALSE)
  invisible(NULL)
}

#' @rdname redisSet
#' @export
redisClose <- function(...) {
  redq_env$redis_ctl <- NULL
  invisible(NULL)
}

# The doRedis host/port/password arguments, when given, name the server.
doredis_url <- function(url, host, port, password, explicit) {
  if (!is.null(url)) {
    return(url)
  }
  if (!explicit && is.null(password)) {
    return(NULL)
  }
  server_url(host, port, password)
}

# doRedis' settings for every later loop (setChunkSize() and friends), set
# before or after registerDoRedis(), and kept when it is called again.
doredis_globals <- function() {
  g <- redq_env$doredis_globals
  if (is.null(g)) {
    g <- new.env(parent = emptyenv())
    g$chunkSize <- NULL
    g$ftinterval <- 30
    g$progress <- FALSE
    g$export <- character()
    g$packages <- character()
    redq_env$doredis_globals <- g
  }
  g
}

# Settings of one loop: doRedis' settings, then .options.redis.
loop_options <- function(obj, settings) {
  o <- obj$options$redis %||% list()
  g <- settings$globals
  list(queue = settings$queue,
       # doRedis accepts both spellings
       chunkSize = if (!is.null(o$chunkSize %||% o$chunksize)) {
         check_count(o$chunkSize %||% o$chunksize, "chunkSize")
       } else {
         g$chunkSize
       },
       ftinterval = if (!is.null(o$ftinterval)) {
         check_seconds(o$ftinterval, "ftinterval", zero_ok = FALSE)
       } else {
         g$ftinterval
       },
       progress = isTRUE(o$progress %||% g$progress),
       timeout = check_seconds(o$timeout, "timeout", none_ok = TRUE, zero_ok = FALSE),
       max_attempts = if (!is.null(o$max_attempts)) check_count(o$max_attempts, "max_attempts"),
       export = g$export,
       packages = unique(c(obj$packages, g$packages)))
}

#' Settings of the registered redq foreach backend
#'
#' doRedis' setters: they change the defaults of all later loops, whether
#' called before or after [registerDoRedis()], which keeps them unless
#' given the same settings itself. `setChunkSize()`: iterations per task (`NULL` for
#' automatic). `setFtinterval()`: seconds between checks for tasks the
#' server lost (see [registerDoRedis()]).
#' `setExport()`: variables always exported to loops (whatever a loop's
#' `.noexport` says, as in doRedis). `setPackages()`:
#' packages always loaded on workers. `setProgress()`: progress bar.
#'
#' @param value New value.
#' @param names Variable names.
#' @param packages Package names.
#' @return Invisibly, the previous value.
#' @export
setChunkSize <- function(value = 1) {
  s <- doredis_globals()
  old <- s$chunkSize
  s$chunkSize <- if (is.null(value)) NULL else check_count(value, "value")
  invisible(old)
}

#' @rdname setChunkSize
#' @export
setFtinterval <- function(value = 30) {
  s <- doredis_globals()
  old <- s$ftinterval
  s$ftinterval <- check_seconds(value, "value", zero_ok = FALSE)
  invisible(old)
}

#' @rdname setChunkSize
#' @export
setExport <- function(names = c()) {
  s <- doredis_globals()
  old <- s$export
  s$export <- as.character(names)
  invisible(old)
}

#' @rdname setChunkSize
#' @export
setPackages <- function(packages = c()) {
  s <- doredis_globals()
  old <- s$packages
  s$packages <- as.character(packages)
  invisible(old)
}

#' @rdname setChunkSize
#' @export
setProgress <- function(value = FALSE) {
  s <- doredis_globals()
  old <- s$progress
  s$progress <- isTRUE(value)
  invisible(old)
}

#' Start doRedis workers on this machine
#'
#' doRedis' `startLocalWorkers()`: starts `n` worker processes on this
#' machine serving `queue`. By default they end with this R session (if it
#' crashes too); with `outlive = TRUE` they keep serving after it ends, as
#' doRedis' workers do, until [removeQueue()] removes their queues.
#'
#' @param n Number of workers.
#' @param queue Queue (or queues) to serve.
#' @param host,port,password Redis server, as in doRedis.
#' @param iter Each worker exits after this many tasks.
#' @param linger Seconds a worker stays once [removeQueue()] has removed
#'   all its queues (taking what is still queued elsewhere), then leaves.
#' @param timeout As in old doRedis versions: `linger`, when `linger` is
#'   not given.
#' @param log Where the workers' output and messages ([logger()]) go: `NULL`
#'   (nowhere), `stdout()` or `stderr()` (this session's console), a file
#'   all workers append to, or a directory (one file per worker).
#' @param loglevel Above 0, each worker writes a line per task to its log.
#' @param timelimit Seconds any task may run; one that runs longer ends
#'   `TIMEOUT` and its worker goes on.
#' @param Rbin The R executable the workers run (default: this R's
#'   `Rscript`).
#' @param outlive Workers outlive this R session.
#' @param url Redis URL.
#' @param namespace redq namespace.
#' @param ... Ignored (doRedis compatibility).
#' @return Invisibly, the worker ids.
#' @export
startLocalWorkers <- function(n, queue, host = "localhost", port = 6379, iter = Inf,
                              linger = 30, timeout = NULL, log = NULL, loglevel = 0,
                              timelimit = 0, Rbin = NULL, password, outlive = FALSE,
                              url = NULL, namespace = "default", ...) {
  ctl <- doredis_controller(url, host, port, if (missing(password)) NULL else password,
                            !missing(host) || !missing(port), namespace)
  if (missing(linger) && !is.null(timeout)) linger <- timeout
  d <- doredis_worker_settings(linger, loglevel, timelimit)
  console <- inherits(log, "connection")
  if (is.character(log) && !dir.exists(log)) d$log_file <- normalizePath(log, mustWork = FALSE)
  d$console <- console
  d$rbin <- Rbin
  d$outlive <- isTRUE(outlive)
  log <- if (is.character(log) && dir.exists(log)) log else NULL
  spawn_workers(n, queue, 30, NULL, NULL, log, iter, ctl, settings = d)
}

# linger, loglevel and timelimit as environment variables of the workers.
doredis_worker_settings <- function(linger, loglevel, timelimit) {
  linger <- check_seconds(linger, "linger", none_ok = TRUE)
  timelimit <- if (is.null(timelimit) || identical(timelimit, 0)) Inf else
    check_seconds(timelimit, "timelimit", zero_ok = FALSE)
  list(linger = as.character(linger), loglevel = as.character(as.numeric(loglevel)),
       timelimit = as.character(timelimit))
}

#' Run a doRedis worker in this R process
#'
#' doRedis' `redisWorker()`: serve `queue` until [removeQueue()] removes it
#' (then `linger` seconds more) or `iter` tasks ran. A thin layer over
#' [worker_main()].
#'
#' @inheritParams startLocalWorkers
#' @param log A connection or file the worker's output and messages go to
#'   (default: standard error, as in doRedis).
#' @param connected Ignored (doRedis compatibility).
#' @return Invisibly, the number of tasks run.
#' @export
redisWorker <- function(queue, host = "localhost", port = 6379, iter = Inf, linger = 30,
                        log = stderr(), connected = FALSE, password = NULL, loglevel = 0,
                        timelimit = 0, url = NULL, namespace = "default", ...) {
  url <- doredis_url(url, host, port, password, !missing(host) || !missing(port))
  d <- doredis_worker_settings(linger, loglevel, timelimit)
  if (inherits(log, "terminal")) log <- NULL # already where it would go
  worker_main(namespace = namespace, url = url %||% redq_url(), queue = queue,
              max_tasks = iter, linger = as.numeric(d$linger),
              timelimit = as.numeric(d$timelimit), loglevel = as.numeric(d$loglevel), log = log)
}

doredis_controller <- function(url, host, port, password, explicit, namespace) {
  url <- doredis_url(url, host, port, password, explicit)
  s <- redq_env$foreach
  if (is.null(url) && !is.null(s) && identical(s$controller$namespace, namespace)) {
    return(s$controller)
  }
  redq_controller(namespace, url = url, default = FALSE)
}

#' Remove a queue
#'
#' Cancels the queue's waiting tasks and deletes it, as doRedis does; a
#' worker all of whose queues have been removed then leaves (after its
#' `linger` seconds). Registering the queue again ([registerDoRedis()])
#' brings it back.
#'
#' @param queue Queue name.
#' @return Invisibly, the number of tasks cancelled.
#' @export
removeQueue <- function(queue) {
  check_string(queue, "queue")
  ctl <- foreach_controller(NULL)
  n <- queue_remove(queue, controller = ctl)
  removed <- union(value_get(REMOVED_QUEUES, controller = ctl), queue)
  value_set(REMOVED_QUEUES, removed, controller = ctl)
  info <- worker_info(NULL, ctl)
  gone <- names(info)[vapply(info, function(i) {
    all(strsplit(i$queues %||% "", ",", fixed = TRUE)[[1]] %in% removed)
  }, logical(1))]
  if (length(gone)) worker_stop(gone, wait = 0, controller = ctl)
  invisible(n)
}

# Queues removeQueue() removed (a queue registered again leaves the list).
REMOVED_QUEUES <- "doredis:removed_queues"

#' Running foreach jobs and their tasks
#'
#' doRedis' job control. `jobs()` lists the foreach loops running in the
#' namespace (from any session); `tasks()` lists the loop tasks workers are
#' running now; `removeJob()` cancels a job's queued and running tasks from
#' any session, which ends the loop in its own session with an error of
#' class `redq_error_cancelled`; iterations not yet submitted never run.
#'
#' @param queue Only jobs on this queue (`"*"` for all).
#' @param id Only tasks of this job id (`"*"` for all).
#' @param job Job ids, or a data frame as returned by `jobs()`.
#' @param controller A [redq_controller()], or `NULL` for the registered
#'   backend's.
#' @return `jobs()`: a data frame with columns `queue`, `id`, `user`, `host`,
#'   `pid`, `time`. `tasks()`: a data frame with columns `queue`, `id`,
#'   `user`, `coordinator`, `time`, `iter`, `host`, `pid`. `removeJob()`:
#'   invisibly, the number of tasks cancelled.
#' @export
jobs <- function(queue = "*", controller = NULL) {
  ctl <- foreach_controller(controller)
  r <- job_list(ctl)
  out <- data.frame(queue = r$queue, id = r$id, user = r$user, host = r$host,
                    pid = as.integer(r$pid), time = format(ms_time(r$started), "%Y-%m-%d %H:%M:%OS3"),
                    stringsAsFactors = FALSE)
  if (!identical(queue, "*")) out <- out[out$queue %in% queue, , drop = FALSE]
  rownames(out) <- NULL
  out
}

#' @rdname jobs
#' @export
tasks <- function(queue = "*", id = "*", controller = NULL) {
  ctl <- foreach_controller(controller)
  running <- jobs(queue, ctl)
  info <- worker_info(NULL, ctl)
  rows <- lapply(info, function(w) {
    task <- w$task %||% ""
    if (!nzchar(task)) return(NULL)
    t <- tryCatch(task_info(task, controller = ctl), redq_error = function(e) NULL)
    j <- running[running$id %in% t$job, , drop = FALSE]
    if (nrow(j) == 0L || !(identical(id, "*") || j$id %in% id)) return(NULL)
    data.frame(queue = j$queue, id = j$id, user = j$user, coordinator = j$host,
               time = format(t$started), iter = as.character(t$tag), host = w$host,
               pid = as.integer(w$pid), stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, rows)
  if (is.null(out)) {
    out <- data.frame(queue = character(), id = character(), user = character(),
                      coordinator = character(), time = character(), iter = character(),
                      host = character(), pid = integer())
  }
  rownames(out) <- NULL
  out
}

#' @rdname jobs
#' @export
removeJob <- function(job, controller = NULL) {
  ctl <- foreach_controller(controller)
  ids <- if (is.data.frame(job)) job$id else as.character(unlist(job))
  running <- jobs("*", ctl)
  n <- 0
  for (jid in intersect(ids, running$id)) {
    n <- n + job_cancel_remote(ctl, jid)
  }
  invisible(n)
}

foreach_controller <- function(controller) {
  if (!is.null(controller)) {
    return(get_controller(controller))
  }
  s <- redq_env$foreach
  if (is.null(s)) redq_default_controller() else s$controller
}
