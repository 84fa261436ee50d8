# The worker process: claim a task, evaluate it, record the result, again.
# The Rust side thread keeps the lease, listens for STOP/KILL/CANCEL and
# enforces timeouts by interrupting this loop.

#' Run a worker in this R process
#'
#' The entry point of every worker: local ones started by [worker_spawn()]
#' and remote ones started by the `redq-worker` launcher
#' ([worker_script()]). It registers, then serves tasks until stopped
#' ([worker_stop()]), until `max_tasks` tasks ran, or until it has been
#' idle for `idle_timeout` seconds. Arguments left `NULL` come from the
#' environment variables `REDIS_URL`, `REDQ_NAMESPACE`, `REDQ_QUEUES`
#' (comma separated), `REDQ_NAME`, `REDQ_HEARTBEAT`, `REDQ_LEASE` and
#' `REDQ_MAX_TASKS`. With a secret (`REDQ_SECRET`, or the one of redq's own
#' server that `url` names), the worker runs only payloads signed with
#' that secret and signs its results (see `vignette("security", "redq")`);
#' other payloads end `ERROR` without being unserialized.
#'
#' Each task is evaluated in a fresh environment whose parent is the global
#' environment. An error in a task ends the task `ERROR`, not the worker.
#'
#' @param namespace Namespace to serve (default `"default"`).
#' @param url Redis URL (default: [redq_url()]: `REDIS_URL`, else your own
#'   embedded server).
#' @param queue Queues, highest priority first (default `"default"`).
#' @param name Worker id (default: a fresh unique id).
#' @param heartbeat,lease Heartbeat period and lease length, seconds.
#' @param max_tasks Exit after this many tasks.
#' @param idle_timeout Exit after this many seconds without a task.
#' @param max_batch Most tasks claimed in one round trip when the backlog is
#'   long (default 16).
#' @param linger Seconds a worker asked to stop (by [worker_stop()] or
#'   [removeQueue()]) goes on taking tasks before it leaves (doRedis';
#'   default `REDQ_LINGER`, else 0).
#' @param timelimit Seconds any task may run on this worker; a task that
#'   runs longer ends `TIMEOUT` (default `REDQ_TIMELIMIT`, else none).
#' @param loglevel Above 0, a line per task to the log (default
#'   `REDQ_LOGLEVEL`, else 0).
#' @param log A file the worker's output and messages are appended to, or
#'   a connection (default `REDQ_LOG`, else the process's own output).
#' @param config A configuration saved with [worker_config_save()]: it
#'   fills in the settings not given.
#' @param task_log Keep what each task prints (output, messages, warnings;
#'   the last 64 KB) in Redis for [task_log()] (default `REDQ_TASK_LOG`,
#'   else off: then it costs nothing).
#' @param offload_path,offload_threshold The directory, shared with the
#'   controllers (it may be mounted elsewhere here), where values over
#'   `offload_threshold` bytes go instead of Redis (see
#'   [redq_controller()]; default `REDQ_OFFLOAD_PATH` and
#'   `REDQ_OFFLOAD_THRESHOLD`, else none).
#' @return Invisibly, the number of tasks run.
#' @export
worker_main <- function(namespace = NULL, url = NULL, queue = NULL, name = NULL,
                        heartbeat = NULL, lease = NULL, max_tasks = NULL,
                        idle_timeout = Inf, max_batch = NULL, linger = NULL, timelimit = NULL,
                        loglevel = NULL, log = NULL, config = NULL, task_log = NULL,
                        offload_path = NULL, offload_threshold = 1e6) {
  env <- function(var, default) {
    v <- Sys.getenv(var)
    if (nzchar(v)) suppressWarnings(as.numeric(v)) else default
  }
  if (!is.null(config)) {
    # a saved configuration fills in what is not given
    saved <- worker_config_read(config, controller = redq_controller(
      namespace %||% Sys.getenv("REDQ_NAMESPACE", "default"),
      url = url, default = FALSE))
    queue <- queue %||% saved$queue
    heartbeat <- heartbeat %||% saved$heartbeat
    lease <- lease %||% saved$lease
    max_tasks <- max_tasks %||% saved$max_tasks
    if (missing(idle_timeout) && !is.null(saved$idle_timeout)) idle_timeout <- saved$idle_timeout
  }
  cfg <- worker_settings(namespace, url, queue, name, heartbeat, lease, max_tasks)
  if (missing(idle_timeout) && is.null(config)) idle_timeout <- env("REDQ_IDLE_TIMEOUT", Inf)
  idle_timeout <- check_seconds(idle_timeout, "idle_timeout", none_ok = TRUE)
  linger <- check_seconds(linger %||% env("REDQ_LINGER", 0), "linger", none_ok = TRUE)
  timelimit <- check_seconds(timelimit %||% env("REDQ_TIMELIMIT", Inf), "timelimit",
                             none_ok = TRUE, zero_ok = FALSE)
  loglevel <- loglevel %||% env("REDQ_LOGLEVEL", 0)
  task_log <- isTRUE(task_log %||% (env("REDQ_TASK_LOG", 0) > 0))
  log <- log %||% (if (nzchar(Sys.getenv("REDQ_LOG"))) Sys.getenv("REDQ_LOG"))
  # a log, or the task lines of loglevel 1, is written out after each
  # task, so that it shows what ran even if the process is killed later
  log_to <- if (loglevel > 0) stdout()
  if (!is.null(log)) {
    # doRedis' log: a file (appended to: several workers may share it) or
    # a connection; output and messages (logger()) go there
    con <- if (is.character(log)) file(log, open = "a") else log
    sink(con, type = "output")
    sink(con, type = "message")
    log_to <- con
    on.exit({
      sink(type = "message")
      sink(type = "output")
      if (is.character(log)) close(con)
    }, add = TRUE)
  }
  offload <- check_offload(offload_path, offload_threshold)
  worker_serve(cfg, max_batch, function(w, state) {
    if (!is.null(offload)) wf_offload(w, offload$path, offload$threshold)
    state$linger <- linger
    state$timelimit <- timelimit
    state$loglevel <- loglevel
    state$idle_timeout <- idle_timeout
    state$task_log <- task_log
    state$log_to <- log_to
    worker_loop(w, state, cfg$max_tasks)
  })
}

# A worker's settings: arguments, else the REDQ_* environment variables,
# checked like arguments.
worker_settings <- function(namespace = NULL, url = NULL, queue = NULL, name = NULL,
                          heartbeat = NULL, lease = NULL, max_tasks = NULL) {
  env <- function(var, default = NULL) {
    v <- Sys.getenv(var)
    if (nzchar(v)) v else default
  }
  num <- function(x) if (is.character(x)) suppressWarnings(as.numeric(x)) else x
  list(
    namespace = namespace %||% env("REDQ_NAMESPACE", "default"),
    url = redq_url(url),
    queue = queue %||% strsplit(env("REDQ_QUEUES", "default"), ",", fixed = TRUE)[[1]],
    name = name %||% env("REDQ_NAME"),
    heartbeat = check_seconds(num(heartbeat %||% env("REDQ_HEARTBEAT", redq_option("heartbeat"))), "heartbeat",
                              zero_ok = FALSE),
    lease = check_seconds(num(lease %||% env("REDQ_LEASE", redq_option("lease"))), "lease",
                          zero_ok = FALSE),
    max_tasks = check_count(num(max_tasks %||% env("REDQ_MAX_TASKS", Inf)), "max_tasks",
                            none_ok = TRUE),
    parent = parent_pid())
}

# The session that started this worker, which it must not outlive
# (REDQ_PARENT_PID), or NULL. Read once: processes its tasks start do not
# inherit it.
parent_pid <- function() {
  pid <- suppressWarnings(as.numeric(Sys.getenv("REDQ_PARENT_PID")))
  Sys.unsetenv("REDQ_PARENT_PID")
  if (is.na(pid)) NULL else pid
}

# Register a worker with the settings `cfg`, run `run(w, state)` (the loop
# that claims and ends tasks), and leave: what it claimed and did not end
# goes back. Returns what `run` returns (the number of tasks run).
worker_serve <- function(cfg, max_batch, run) {
  w <- wf_register(cfg, max_batch)
  redq_env$worker_url <- cfg$url
  redq_env$worker <- w
  on.exit(redq_env$worker <- NULL, add = TRUE)
  redq_env$worker_namespace <- cfg$namespace
  id <- wf_id(w)
  message(sprintf("redq worker %s serving %s (namespace '%s')", id,
                  paste(cfg$queue, collapse = ", "), cfg$namespace))
  state <- new.env(parent = emptyenv())
  # an idle worker asks for work this often (control messages and work on
  # its own queue wake it at once): with the heartbeat, what an idle
  # worker costs the server (see ARCHITECTURE.md, "What it costs")
  state$idle_poll <- max(1, cfg$heartbeat)
  state$jobs <- list()
  state$signals_handled <- 0
  state$interrupted <- FALSE
  on.exit(wf_exit(w), add = TRUE)
  loaded <- worker_envir_load()
  if (inherits(loaded, "error")) {
    message("redq worker ", id, ": the worker environment failed to load: ", conditionMessage(loaded))
  }
  n <- run(w, state)
  message(sprintf("redq worker %s exiting after %d task(s)", id, as.integer(n %||% 0)))
  invisible(n)
}

# Each step reports the tasks finished since the last one and starts the
# next batch (one task, or several short ones when the backlog is long),
# in one round trip; the loop then begins, runs and ends them in order.
#
# Interrupts: the side thread interrupts a task it times out or cancels,
# and its SIGINT may land anywhere in this loop: a moment after that task
# ended (a stray one: the loop resumes, so no claimed task or unsent
# result is dropped), or after the task began and before run_task()'s
# handler is in place (the task is marked, and run_task() ends it at
# once); inside a task run_task() turns it into the task's end. Any other
# interrupt is a user's Ctrl+C: the worker reports what it finished and
# leaves; the task it was running, and those of its batch it had not
# begun, go back to their queue.
worker_loop <- function(w, state, max_tasks, idle_timeout = state$idle_timeout %||% Inf) {
  n <- 0
  state$idle_since <- Sys.time()
  state$idle_timeout <- idle_timeout
  state$n <- 0
  tryCatch(withCallingHandlers({
    repeat {
      worker_answer_messages(w, state)
      paused <- wf_paused(w)
      limit <- if (paused) 0 else max_tasks - n
      if (wf_stop_requested(w)) {
        # asked to stop: leave now, or (doRedis' linger) after taking what
        # comes for `linger` seconds
        state$stop_at <- state$stop_at %||% Sys.time()
        if (as.numeric(Sys.time() - state$stop_at, units = "secs") >= (state$linger %||% 0)) limit <- 0
      }
      batch <- wf_step(w, limit, state$idle_poll %||% 1)
      if (length(batch$id) == 0L) {
        if (paused && is.null(state$stop_at)) {
          Sys.sleep(0.05) # paused: answer messages, take no task
          state$idle_since <- Sys.time()
          next
        }
        if (limit <= 0 || as.numeric(Sys.time() - state$idle_since, units = "secs") > state$idle_timeout) {
          # a message that woke it is answered before it leaves
          worker_answer_messages(w, state)
          break
        }
        if (!is.null(state$stop_at)) Sys.sleep(0.1) # a stopping worker's step does not block
        next
      }
      # settings read once per batch, not per task
      capped <- is.finite(state$timelimit %||% Inf)
      chatty <- (state$loglevel %||% 0) > 0
      for (i in seq_along(batch$id)) {
        id <- batch$id[[i]]
        if (i > 1L && wf_stop_requested(w) && is.null(state$stop_at)) break # the rest go back
        state$interrupted <- FALSE
        if (!wf_begin(w, id)) {
          wf_skip(w, id) # cancelled before it began
          next
        }
        if (capped) wf_cap_deadline(w, state$timelimit)
        if (chatty) cat("Processing task(s)", id, "\n")
        out <- run_task(w, list(id = id, payload = batch$payload[[i]], seed = batch$seed[[i]]), state)
        wf_end(w, id, out)
        if (!is.null(state$log_to)) flush(state$log_to)
        n <- n + 1
        state$n <- n
      }
      state$idle_since <- Sys.time()
    }
  }, interrupt = function(cnd) {
    # inside a task, run_task()'s own handler sees the interrupt first
    kind <- wf_interrupt_kind(w, state)
    if (kind == "task") state$interrupted <- TRUE
    if (kind != "user") invokeRestart("resume")
  }), interrupt = function(cnd) NULL)
  # report what finished; what was claimed and not finished goes back when
  # the worker exits
  wf_report(w)
  n
}

# Messages the side thread left for the R thread (EVAL, REFRESH, INFO,
# TIMEOUT_SET, TIMEOUT_GET), answered between tasks.
worker_answer_messages <- function(w, state) {
  m <- wf_messages(w)
  if (is.null(m)) return(invisible())
  for (i in seq_along(m$id)) {
    args <- m$args[[i]]
    reply <- tryCatch(switch(m$command[[i]],
      EVAL = {
        expr <- unserialize(args)
        if (is.character(expr)) expr <- parse(text = expr)
        eval(expr, envir = globalenv())
      },
      REFRESH = worker_envir_load(),
      INFO = list(worker = wf_id(w), host = Sys.info()[["nodename"]], pid = Sys.getpid(),
                  r_version = as.character(getRversion()),
                  redq_version = as.character(utils::packageVersion("redq")),
                  tasks = state$n %||% 0, idle_timeout = state$idle_timeout,
                  objects_fetched = state$objects_fetched %||% 0),
      TIMEOUT_SET = {
        state$idle_timeout <- check_seconds(as.numeric(rawToChar(args)), "timeout",
                                            none_ok = TRUE)
        state$idle_since <- Sys.time() # the new timeout counts from now
        "OK"
      },
      TIMEOUT_GET = state$idle_timeout,
      simpleError(sprintf("unknown message '%s'", m$command[[i]]))),
      error = function(e) e)
    wf_respond(w, m$id[[i]], reply)
  }
}

# One task. A single exiting handler (error) and calling handlers for the
# rest: each exiting handler class costs several microseconds per task.
# Our own interrupt (a timeout or cancel) becomes an error of class
# redq_interrupted that ends the task; a user's Ctrl+C is left to the
# worker loop, which leaves.
run_task <- function(w, task, state) {
  if (isTRUE(state$task_log)) return(run_task_logged(w, task, state))
  warnings <- character()
  # the core serializes the value when the task ends (wf_end()), and ends
  # it ERROR should R fail to
  tryCatch(
    withCallingHandlers({
      if (state$interrupted) stop(INTERRUPTED) # before this handler was in place
      value <- run_payload(unserialize(task$payload), task, w, state)
      wf_result(value, if (inherits(value, "redq_task_error")) OUTCOME_ERROR else OUTCOME_VALUE)
    },
      warning = function(cnd) {
        warnings <<- c(warnings, conditionMessage(cnd))
        if (isTRUE(state$logging)) cat("Warning message:\n", conditionMessage(cnd), "\n", sep = "")
        invokeRestart("muffleWarning")
      },
      interrupt = function(cnd) {
        kind <- wf_interrupt_kind(w, state)
        if (kind == "task") stop(INTERRUPTED)
        if (kind == "stray") invokeRestart("resume")
      }),
    error = function(e) {
      # the core knows whether it was a timeout or a cancel
      if (inherits(e, "redq_interrupted")) return(list(outcome = OUTCOME_INTERRUPTED, result = raw()))
      call <- conditionCall(e)
      # an error raised by the task's own top-level call names our eval()
      if (is.call(call) && identical(call[[1]], quote(eval))) call <- NULL
      wf_result(redq_task_error(conditionMessage(e), call = call, warnings = warnings,
                                id = task$id, trace = e), OUTCOME_ERROR)
    })
}


# run_task(), keeping what the task prints (output, messages, warnings) in
# its record for task_log(), and when it began and ended in the worker's
# event log.
run_task_logged <- function(w, task, state) {
  t0 <- Sys.time()
  wf_event(w, paste("began", task$id))
  con <- rawConnection(raw(0), "w")
  sink(con)
  sink(con, type = "message")
  state$task_log <- FALSE
  state$logging <- TRUE
  out <- tryCatch(run_task(w, task, state), finally = {
    sink(type = "message")
    sink()
    state$task_log <- TRUE
    state$logging <- FALSE
  })
  text <- rawConnectionValue(con)
  close(con)
  wf_log(w, text)
  how <- c("a value", "an error", "interrupted")[match(out$outcome, c(OUTCOME_VALUE, OUTCOME_ERROR, OUTCOME_INTERRUPTED))]
  wf_event(w, sprintf("ended %s after %.3f s: %s", task$id,
                      as.numeric(Sys.time() - t0, units = "secs"), how))
  out
}

INTERRUPTED <- structure(class = c("redq_interrupted", "error", "condition"),
                         list(message = "the task was interrupted", call = NULL))

# A shared object (common arguments of a bulk submission), fetched once
# per worker and kept, the most recently used first, up to option
# redq.object_cache bytes (2 GB).
shared_object <- function(w, address, state) {
  cache <- state$objects %||% (state$objects <- new.env(parent = emptyenv()))
  hit <- cache[[address]]
  if (!is.null(hit)) {
    hit$used <- Sys.time()
    return(hit$value)
  }
  raw <- wf_object(w, address)
  value <- unserialize(raw)
  state$objects_fetched <- (state$objects_fetched %||% 0) + 1
  limit <- redq_option("object_cache")
  entries <- mget(ls(cache), envir = cache)
  used <- sum(vapply(entries, function(e) e$size, 1))
  for (k in names(entries)[order(vapply(entries, function(e) as.numeric(e$used), 1))]) {
    if (used + length(raw) <= limit) break
    used <- used - entries[[k]]$size
    rm(list = k, envir = cache)
  }
  if (length(raw) <= limit) {
    assign(address, list2env(list(value = value, size = length(raw), used = Sys.time())), envir = cache)
  }
  value
}

# Byte-compile expressions that loop: R compiles loops on the fly only at
# top level, so an uncompiled loop in a task runs several times slower.
# Loop-free expressions are cheaper to evaluate than to compile.
compile_expr <- function(expr, env) {
  names <- all.names(expr)
  if (!any(c("for", "while", "repeat") %in% names)) {
    return(expr)
  }
  # a body that uses the `...` of the function around the loop is left to
  # the interpreter: the compiler would warn that `...` may be used in an
  # incorrect context, which the user's code did not cause
  if ("..." %in% names) return(expr)
  compiler::compile(expr, env, options = list(suppressUndefined = TRUE))
}

# A job's environment, unserialized (NULL if it is gone): one stored as a
# shared object comes from the worker's object cache.
worker_job_env <- function(w, jid, state) {
  got <- wf_job_env(w, jid)
  if (is.character(got)) shared_object(w, got, state) else if (!is.null(got)) unserialize(got)
}

