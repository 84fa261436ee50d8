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
#' @param url Redis URL, or `NULL` for [redq_url()]: `redis://[user:password@]host:port/db`
#'   (`rediss://` for TLS), a Redis Cluster as
#'   `redis+cluster://[user:password@]host:port,host:port` or the sentinels of
#'   a master as `redis+sentinel://[user:password@]host:port,host:port/master`.
#' @param queue Default queue for tasks created through this controller.
#' @param default Make this the default controller.
#' @param offload_path,offload_threshold For a small Redis: a directory
#'   that this session and the workers share (a network file system; the
#'   workers are given it with `worker_main(offload_path =)`, the
#'   launcher's environment `REDQ_OFFLOAD_PATH`, or by [worker_spawn()]),
#'   where payloads, shared arguments, loop environments and results over
#'   `offload_threshold` bytes go, in files named by the SHA-256 of their
#'   content, in a directory named by the namespace; Redis holds only a
#'   reference and counts the references to each file. A worker that
#'   cannot read the directory ends the task `ERROR` saying so. A file no
#'   task refers to any more is deleted by the next controller with the
#'   directory that waits for or deletes tasks (5 s after it was written,
#'   at the earliest); [redq_destroy()] removes the namespace's directory.
#' @return An object of class `redq_controller`.
#' @export
#' @examples
#' if (redq_available()) {
#'   ctl <- redq_controller("example")
#'   ctl
#' }
redq_controller <- function(id = "default", url = NULL, queue = "default", default = TRUE,
                            offload_path = NULL, offload_threshold = 1e6) {
  check_string(id, "id")
  check_string(queue, "queue")
  offload <- check_offload(offload_path, offload_threshold)
  url <- redq_url(url)
  secret <- url_secret(url)
  ptr <- rs_check(rs_controller_open(url, id, secret))
  if (!is.null(offload)) rs_check(rs_controller_offload(ptr, offload$path, offload$threshold))
  ctl <- new.env(parent = emptyenv())
  ctl$ptr <- ptr
  ctl$url <- url
  ctl$secret <- secret
  ctl$namespace <- id
  ctl$queue <- queue
  ctl$address <- rs_controller_address(ptr)
  ctl$pid <- Sys.getpid()
  ctl$offload <- offload
  class(ctl) <- "redq_controller"
  reg.finalizer(ctl, controller_finalize, onexit = TRUE)
  if (default) {
    redq_env$controller <- ctl
  }
  ctl
}

# Whether a Redis server answers at url.
server_answers <- function(url) {
  !inherits(rs_controller_open(url, "redq", NULL), "redq_rs_error")
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

#' Shared values, as in doRedis
#'
#' `redisSet()` stores an R value under the key you name, as doRedis does
#' (serialized, on the key itself, outside any redq namespace), so other
#' doRedis processes, `redis-cli` and loop bodies on workers (`redisGet()`)
#' see it. `redisGet()` returns it, or, for a value that is not a
#' serialized R object (a counter), the string Redis holds; `NULL` if the
#' key does not exist. `redisDelete()` deletes keys. `redisIncrBy()` and
#' `redisDecrBy()` add to (subtract from) a counter and return its new value.
#' `redisConnect()` chooses the server these use in this session: the one
#' `host`, `port`, `password` or `url` name, else [redq_url()]'s (as
#' [registerDoRedis()] chooses); `redisClose()` forgets that choice. Without
#' `redisConnect()` they use the registered foreach backend's server, else
#' [redq_url()]'s, and on a worker its own.
#'
#' `value_set()`, `value_get()` and `value_delete()` keep values in redq's
#' namespace instead, where [redq_destroy()] removes them with the rest.
#'
#' @param key Key name(s).
#' @param val,value Any R value; for `redisIncrBy()`/`redisDecrBy()`, a
#'   whole number.
#' @param name Name of a value in the namespace.
#' @param host,port,password The server, as in doRedis.
#' @param url A Redis URL instead.
#' @param ... Ignored (doRedis compatibility).
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `redisGet()`, `value_get()`: the value, or `NULL`.
#'   `redisIncrBy()`/`redisDecrBy()`: the new count. `redisDelete()`:
#'   invisibly, how many keys were deleted. The others: invisibly `NULL`.
#' @export
#' @examples
#' if (redq_available()) {
#'   redisSet("answer", 42)
#'   redisGet("answer")
#'   redisIncrBy("count", 5)
#'   redisDelete(c("answer", "count"))
#'   value_set("shared", 1:3)
#'   value_get("shared")
#'   value_delete("shared")
#' }
redisSet <- function(key, val) {
  check_string(key, "key")
  rs_check(rs_redis_set(redis_controller()$ptr, key, serialize(val, NULL)))
  invisible(NULL)
}

#' @rdname redisSet
#' @export
redisGet <- function(key) {
  check_string(key, "key")
  raw <- rs_check(rs_redis_get(redis_controller()$ptr, key))
  if (is.null(raw)) return(NULL)
  if (is_serialized(raw)) unserialize(raw) else rawToChar(raw)
}

#' @rdname redisSet
#' @export
redisDelete <- function(key) {
  if (!is.character(key) || anyNA(key)) redq_abort("argument", "'key' must be key names")
  invisible(rs_check(rs_redis_delete(redis_controller()$ptr, key)))
}

#' @rdname redisSet
#' @export
redisIncrBy <- function(key, value = 1) {
  check_string(key, "key")
  rs_check(rs_redis_incr_by(redis_controller()$ptr, key, as.numeric(value)))
}

#' @rdname redisSet
#' @export
redisDecrBy <- function(key, value = 1) {
  check_string(key, "key")
  rs_check(rs_redis_incr_by(redis_controller()$ptr, key, -as.numeric(value)))
}

# The connection of doRedis' data functions: redisConnect()'s, else the
# registered backend's, else the default controller's (on a worker: its
# server).
redis_controller <- function() {
  ctl <- redq_env$redis_ctl
  if (!is.null(ctl) && identical(ctl$pid, Sys.getpid())) return(ctl)
  s <- redq_env$foreach
  if (!is.null(s) && is.null(redq_env$worker)) return(s$controller)
  redq_default_controller()
}

# A serialized R object starts with its format's header.
is_serialized <- function(raw) {
  length(raw) >= 2 && raw[[2]] == as.raw(0x0a) && raw[[1]] %in% charToRaw("XAB")
}

#' @rdname redisSet
#' @export
value_set <- function(name, value, controller = NULL) {
  check_string(name, "name")
  ctl <- get_controller(controller)
  data_set(ctl, name, serialize(value, NULL, xdr = FALSE))
}

#' @rdname redisSet
#' @export
value_get <- function(name, controller = NULL) {
  check_string(name, "name")
  ctl <- get_controller(controller)
  raw <- data_get(ctl, name)
  if (is.null(raw)) NULL else unserialize(raw)
}

#' @rdname redisSet
#' @export
value_delete <- function(name, controller = NULL) {
  check_string(name, "name")
  ctl <- get_controller(controller)
  data_delete(ctl, name)
}

# The namespace's values as bytes (the core seals and opens them): what
# value_set()/value_get() and the front ends' own records (rush's) store.
data_set <- function(ctl, name, raw) invisible(rs_check(rs_controller_data_set(ctl$ptr, name, raw)))

data_get <- function(ctl, name) rs_check(rs_controller_data_get(ctl$ptr, name))

# Several at once: a list of raw vectors (NULL where unset).
data_mget <- function(ctl, names) rs_check(rs_controller_data_mget(ctl$ptr, names))

data_delete <- function(ctl, name) invisible(rs_check(rs_controller_data_delete(ctl$ptr, name)))

#' @rdname redisSet
#' @param msg A message.
#' @details `logger(msg)` writes `@ <time> <host> <pid> <msg>` to standard
#'   error, as doRedis does: on a worker, to its log.
#' @export
logger <- function(msg) {
  msg <- paste("@", format(Sys.time()), Sys.info()[["nodename"]], Sys.getpid(), msg)
  cat(msg, "\n", file = stderr())
  invisible(msg)
}

# Administrative command (tests, diagnostics): a character vector in, the
# reply as an R value out.
redis_command <- function(args, controller = NULL) {
  ctl <- get_controller(controller)
  rs_check(rs_controller_command(ctl$ptr, as.character(args)))
}

`%||%` <- function(a, b) if (is.null(a)) b else a
