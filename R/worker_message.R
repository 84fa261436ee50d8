# Talking to workers that run: messages (rrq's), the worker environment
# every worker loads, and named worker configurations.

#' Messages to workers
#'
#' As in rrq: `worker_message_send()` sends a command to workers (all live
#' workers by default) and returns the message id; `worker_message_response()`
#' collects their replies, waiting up to `timeout` seconds for all of them;
#' `worker_message_send_and_wait()` does both. Commands:
#'
#' * `PING` (reply `"PONG"`), `ECHO` (the `args` string), `PAUSE` (take no
#'   more tasks; the running one goes on) and `RESUME`: answered at once by
#'   the worker's side thread, even while a task runs;
#' * `EVAL` (evaluate `args`, an expression or a string of R code, in the
#'   worker's global environment; the reply is its value), `INFO` (the
#'   worker's process, R and redq versions, tasks run), `REFRESH` (load the
#'   worker environment again, see [worker_envir_set()]), `TIMEOUT_SET`
#'   (`args` seconds idle, counted from now, before the worker leaves; `Inf`
#'   for never) and
#'   `TIMEOUT_GET`: answered by the worker between tasks, at once when it is
#'   idle.
#'
#' @param command One of the commands above.
#' @param args The command's argument.
#' @param worker_ids Workers (default: all live ones).
#' @param message_id A message id from `worker_message_send()`.
#' @param timeout Seconds to wait for the replies.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `worker_message_send()`: the message id (with the workers as
#'   attribute `workers`). `worker_message_response()` and
#'   `worker_message_send_and_wait()`: a list of replies named by worker
#'   (`NULL` for a worker that has not replied).
#' @export
#' @examples
#' if (redq_available()) {
#'   ids <- worker_spawn(2)
#'   worker_message_send_and_wait("PING")
#'   worker_message_send_and_wait("EVAL", quote(Sys.getpid()))
#'   worker_stop(ids)
#' }
worker_message_send <- function(command, args = NULL, worker_ids = NULL, controller = NULL) {
  ctl <- get_controller(controller)
  if (!is.character(command) || length(command) != 1L || !command %in% MESSAGE_COMMANDS) {
    redq_abort("argument", sprintf("'command' must be one of %s",
                                   paste(MESSAGE_COMMANDS, collapse = ", ")))
  }
  ids <- check_ids(worker_ids %||% worker_list(ctl))
  raw <- if (command %in% c("ECHO", "TIMEOUT_SET")) charToRaw(as.character(args %||% "")) else
    serialize(args, NULL, xdr = FALSE)
  mid <- rs_check(rs_message_send(ctl$ptr, ids, command, raw))
  structure(mid, workers = ids)
}

MESSAGE_COMMANDS <- c("PING", "ECHO", "EVAL", "INFO", "PAUSE", "RESUME", "REFRESH",
                      "TIMEOUT_SET", "TIMEOUT_GET")

#' @rdname worker_message_send
#' @export
worker_message_response <- function(message_id, worker_ids = NULL, timeout = 0,
                                    controller = NULL) {
  ctl <- get_controller(controller)
  check_string(message_id, "message_id")
  ids <- worker_ids %||% attr(message_id, "workers") %||% character()
  timeout <- check_seconds(timeout, "timeout")
  deadline <- Sys.time() + timeout
  repeat {
    got <- rs_check(rs_message_responses(ctl$ptr, message_id))
    if (all(ids %in% got$worker) || Sys.time() >= deadline) break
    Sys.sleep(0.005)
  }
  ids <- if (length(ids)) ids else got$worker
  out <- lapply(ids, function(w) {
    i <- match(w, got$worker)
    if (is.na(i)) NULL else message_reply(got$reply[[i]])
  })
  stats::setNames(out, ids)
}

#' @rdname worker_message_send
#' @export
worker_message_send_and_wait <- function(command, args = NULL, worker_ids = NULL, timeout = 10,
                                         controller = NULL) {
  mid <- worker_message_send(command, args, worker_ids, controller)
  worker_message_response(mid, timeout = timeout, controller = controller)
}

# A reply: "s" and a string from the side thread, "e" and why the worker
# (or this session) refused the message or its reply, or "r" and an R
# serialization from the R thread.
message_reply <- function(raw) {
  body <- raw[-1]
  switch(rawToChar(raw[1]),
    s = rawToChar(body),
    e = structure(class = c("redq_error_signature", "redq_error", "error", "condition"),
                  list(message = rawToChar(body), call = NULL)),
    unserialize(body))
}

#' A worker environment: packages, code and set-up for every worker
#'
#' As rrq's worker environments: `worker_envir_set()` stores packages to
#' attach, R source files (their code, read now) to evaluate in the global
#' environment and a function `init` to call, and has every live worker
#' load them (`REFRESH`); workers that start later load them before their
#' first task. `worker_envir_get()` returns what is stored.
#'
#' @param packages Package names.
#' @param sources Paths of R files.
#' @param init A function of no arguments.
#' @param timeout Seconds to wait for the live workers to load it.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `worker_envir_set()`: invisibly, each live worker's reply
#'   (`TRUE`, or the error it met). `worker_envir_get()`: the stored list.
#' @export
worker_envir_set <- function(packages = NULL, sources = NULL, init = NULL, timeout = 30,
                             controller = NULL) {
  ctl <- get_controller(controller)
  if (!is.null(init) && !is.function(init)) redq_abort("argument", "'init' must be a function")
  sources <- as.character(sources)
  missing_src <- sources[!file.exists(sources)]
  if (length(missing_src)) {
    redq_abort("argument", sprintf("source file(s) not found: %s", paste(missing_src, collapse = ", ")))
  }
  code <- lapply(sources, function(f) paste(readLines(f, warn = FALSE), collapse = "\n"))
  value_set(WORKER_ENVIR, list(packages = as.character(packages), sources = sources,
                               code = code, init = init), controller = ctl)
  ids <- worker_list(ctl)
  if (!length(ids)) return(invisible(list()))
  invisible(worker_message_send_and_wait("REFRESH", worker_ids = ids, timeout = timeout,
                                         controller = ctl))
}

#' @rdname worker_envir_set
#' @export
worker_envir_get <- function(controller = NULL) value_get(WORKER_ENVIR, controller = controller)

WORKER_ENVIR <- "redq.worker_envir"

# On a worker: load the stored worker environment (TRUE, or the error).
worker_envir_load <- function(w = redq_env$worker) {
  tryCatch({
    # on a worker, through its own connection (no second one at start-up)
    raw <- if (is.null(w)) NULL else wf_data(w, WORKER_ENVIR)
    e <- if (is.null(w)) value_get(WORKER_ENVIR) else if (!is.null(raw)) unserialize(raw)
    if (!is.null(e)) {
      for (p in e$packages) suppressPackageStartupMessages(library(p, character.only = TRUE))
      for (code in e$code) eval(parse(text = code, keep.source = FALSE), envir = globalenv())
      if (is.function(e$init)) {
        environment(e$init) <- globalenv()
        e$init()
      }
    }
    TRUE
  }, error = function(err) err)
}

#' Named worker configurations
#'
#' As rrq's: `worker_config_save()` stores settings for workers under a
#' name, in the namespace, so that workers started anywhere use the same
#' ones: `worker_spawn(config = name)` and the launcher's `--config name`
#' take what they are not given from it. `worker_config_read()` returns
#' one, `worker_config_list()` the names.
#'
#' @param name Configuration name.
#' @param queue,heartbeat,lease,max_tasks,idle_timeout As for
#'   [worker_spawn()] and [worker_main()].
#' @param overwrite Replace a configuration of that name.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `worker_config_save()`: invisibly, the configuration.
#'   `worker_config_read()`: a list. `worker_config_list()`: names.
#' @export
worker_config_save <- function(name, queue = NULL, heartbeat = NULL, lease = NULL,
                               max_tasks = NULL, idle_timeout = NULL, overwrite = TRUE,
                               controller = NULL) {
  check_string(name, "name")
  ctl <- get_controller(controller)
  if (!is.null(queue)) for (q in queue) check_string(q, "queue")
  cfg <- list(queue = queue,
              heartbeat = if (!is.null(heartbeat)) check_seconds(heartbeat, "heartbeat", zero_ok = FALSE),
              lease = if (!is.null(lease)) check_seconds(lease, "lease", zero_ok = FALSE),
              max_tasks = if (!is.null(max_tasks)) check_count(max_tasks, "max_tasks", none_ok = TRUE),
              idle_timeout = if (!is.null(idle_timeout)) {
                check_seconds(idle_timeout, "idle_timeout", none_ok = TRUE)
              })
  if (!is.null(cfg$heartbeat) && !is.null(cfg$lease)) check_lease(cfg$heartbeat, cfg$lease)
  cfg <- cfg[!vapply(cfg, is.null, logical(1))]
  names <- worker_config_list(ctl)
  if (name %in% names && !overwrite) {
    redq_abort("argument", sprintf("a worker configuration '%s' exists; use overwrite = TRUE", name))
  }
  value_set(paste0(WORKER_CONFIG, name), cfg, controller = ctl)
  value_set(WORKER_CONFIGS, union(names, name), controller = ctl)
  invisible(cfg)
}

#' @rdname worker_config_save
#' @export
worker_config_read <- function(name, controller = NULL) {
  check_string(name, "name")
  cfg <- value_get(paste0(WORKER_CONFIG, name), controller = controller)
  if (is.null(cfg)) {
    redq_abort("not_found", sprintf("no worker configuration '%s'; save one with worker_config_save()",
                                    name))
  }
  cfg
}

#' @rdname worker_config_save
#' @export
worker_config_list <- function(controller = NULL) {
  value_get(WORKER_CONFIGS, controller = controller) %||% character()
}

WORKER_CONFIG <- "redq.worker_config."
WORKER_CONFIGS <- "redq.worker_configs"
