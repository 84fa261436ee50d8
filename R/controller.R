#' Connect to a redq namespace
#'
#' A controller is the handle through which an R session submits tasks,
#' waits for them and manages workers. Every task, queue and worker function
#' takes `controller = NULL` last and then uses the default controller: the
#' last one created with `default = TRUE`, or one made on first use for
#' namespace `"default"` on the server [redq_url()] finds.
#'
#' Many controllers (in one session or many) may share a namespace; a task
#' created by one can be waited on and fetched by any other.
#'
#' @section Task lifecycle:
#' \preformatted{
#'   DEFERRED ──dependencies complete──┐      cancel ──► CANCELLED
#'      │                              ▼        │           ▲
#'      │        task_create ─► PENDING ──claim──► RUNNING ──► COMPLETE | ERROR
#'      │                         ▲                 │  │
#'      │                         └── worker lost ──┘  ├──timeout──► TIMEOUT
#'      │                             (attempt + 1)    └──lost max_attempts times──► DIED
#'      └──a dependency did not complete──► IMPOSSIBLE
#' }
#' `task_status()` reports `MISSING` for ids the server does not know.
#'
#' @section Worker lifecycle:
#' \preformatted{
#' start ─► IDLE ◄──► BUSY ──► EXITED   (STOP, end of work, or KILL)
#'                  │
#'                  └─ lease expired ─► LOST (tasks go back to their queues)
#' }
#' A worker is alive while its heartbeat lease exists; its Rust side thread
#' renews it whatever R is doing.
#'
#' @param id Namespace: controllers and workers with the same namespace
#'   share queues, tasks and workers.
#' @param url Redis URL, or `NULL` for [redq_url()].
#' @param queue Default queue for tasks created through this controller.
#' @param default Make this the default controller.
#' @return An object of class `redq_controller`.
#' @export
#' @examples
#' if (redq_available()) {
#'   ctl <- redq_controller("example")
#'   ctl
#' }
redq_controller <- function(id = "default", url = NULL, queue = "default", default = TRUE) {
  check_string(id, "id")
  check_string(queue, "queue")
  url <- redq_url(url)
  ptr <- rs_check(rs_controller_open(url, id))
  ctl <- new.env(parent = emptyenv())
  ctl$ptr <- ptr
  ctl$url <- url
  ctl$namespace <- id
  ctl$queue <- queue
  ctl$address <- rs_controller_address(ptr)
  ctl$pid <- Sys.getpid()
  class(ctl) <- "redq_controller"
  reg.finalizer(ctl, controller_finalize, onexit = TRUE)
  if (default) {
    redq_env$controller <- ctl
  }
  ctl
}

# Whether a Redis server answers at url.
server_answers <- function(url) {
  !inherits(rs_controller_open(url, "redq"), "redq_rs_error")
}

controller_finalize <- function(ctl) {
  # after .onUnload the shared library is gone: do not call into it
  if (isTRUE(redq_env$loaded) && identical(ctl$pid, Sys.getpid())) {
    try(rs_controller_close(ctl$ptr), silent = TRUE)
  }
}

#' @rdname redq_controller
#' @export
redq_default_controller <- function() {
  ctl <- redq_env$controller
  if (is.null(ctl) || !identical(ctl$pid, Sys.getpid())) {
    # inside a worker, default to the worker's own server and namespace
    ctl <- redq_controller(id = redq_env$worker_namespace %||% "default",
                           url = redq_env$worker_url)
  }
  ctl
}

get_controller <- function(controller) {
  if (is.null(controller)) {
    return(redq_default_controller())
  }
  if (!inherits(controller, "redq_controller")) {
    redq_abort("argument", "'controller' must be a redq_controller (see redq_controller()) or NULL",
               call = sys.call(-1))
  }
  controller
}

#' @export
print.redq_controller <- function(x, ...) {
  cat(sprintf("<redq_controller> namespace '%s' on %s\n", x$namespace, x$address))
  info <- tryCatch({
    queues <- queue_list(x)
    lens <- vapply(queues, queue_length, numeric(1), controller = x)
    workers <- worker_list(x)
    list(queues = queues, lens = lens, workers = workers)
  }, redq_error = function(e) e)
  if (inherits(info, "redq_error")) {
    cat("  (server unreachable: ", conditionMessage(info), ")\n", sep = "")
    return(invisible(x))
  }
  cat(sprintf("  default queue: %s\n", x$queue))
  if (length(info$queues)) {
    cat(sprintf("  queued: %s\n", paste(sprintf("%s=%d", info$queues, info$lens), collapse = ", ")))
  } else {
    cat("  queued: none\n")
  }
  cat(sprintf("  live workers: %d\n", length(info$workers)))
  invisible(x)
}

#' Run the lost-worker check now
#'
#' Finds registered workers whose heartbeat lease has expired, marks them
#' `LOST`, and puts each task they held back in its queue (counting an
#' attempt), or ends it `DIED` once it used up `max_attempts`. Controllers
#' run this while they wait and workers run it between heartbeats, so it is
#' rarely needed by hand.
#'
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A data frame with one row per worker found lost: `worker`,
#'   `host`, `requeued` and `died` (numbers of tasks).
#' @export
worker_detect_lost <- function(controller = NULL) {
  ctl <- get_controller(controller)
  r <- rs_check(rs_controller_reap(ctl$ptr))
  data.frame(worker = r$id, host = r$host, requeued = r$requeued, died = r$died,
             stringsAsFactors = FALSE)
}

#' Store and fetch values in the namespace
#'
#' `redisSet()` and `redisGet()` keep R values in Redis under the
#' namespace (as doRedis does), so tasks and loops can read shared data
#' without shipping it with every task.
#'
#' @param key Name of the value.
#' @param val Any R value.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `redisGet()`: the value, or `NULL`. The others: invisibly `NULL`.
#' @export
#' @examples
#' if (redq_available()) {
#'   redisSet("answer", 42)
#'   redisGet("answer")
#'   redisDelete("answer")
#' }
redisSet <- function(key, val, controller = NULL) {
  check_string(key, "key")
  ctl <- get_controller(controller)
  rs_check(rs_controller_data_set(ctl$ptr, key, serialize(val, NULL, xdr = FALSE)))
  invisible(NULL)
}

#' @rdname redisSet
#' @export
redisGet <- function(key, controller = NULL) {
  check_string(key, "key")
  ctl <- get_controller(controller)
  raw <- rs_check(rs_controller_data_get(ctl$ptr, key))
  if (is.null(raw)) NULL else unserialize(raw)
}

#' @rdname redisSet
#' @export
redisDelete <- function(key, controller = NULL) {
  check_string(key, "key")
  ctl <- get_controller(controller)
  rs_check(rs_controller_data_delete(ctl$ptr, key))
  invisible(NULL)
}

# Administrative command (tests, diagnostics): a character vector in, the
# reply as an R value out.
redis_command <- function(args, controller = NULL) {
  ctl <- get_controller(controller)
  rs_check(rs_controller_command(ctl$ptr, as.character(args)))
}

`%||%` <- function(a, b) if (is.null(a)) b else a
