# rush's plan (where and how many workers), rsh(), and how a rush
# configuration names a server.

#' rush's plan: where and how many workers
#'
#' `rush_plan()` records the server and the number of workers that
#' [rsh()] and `Rush$start_local_workers()` use, as in rush.
#' `rush_config()` returns it, `remove_rush_plan()` forgets it and
#' `rush_available()` tells whether one is set.
#'
#' @param n_workers Number of workers `start_local_workers()` starts.
#' @param config The server: a Redis URL, or a list with `url`, or `host`,
#'   `port` and `password` (as `redux::redis_config()` gives); `NULL` for
#'   `REDIS_URL` or redq's default server.
#' @param lgr_thresholds Accepted for rush compatibility.
#' @param large_objects_path A directory on a file system the workers
#'   share: task arguments and results over 1 MB (`offload_threshold` of
#'   [redq_controller()]) are stored there, in files named by their hash,
#'   instead of in Redis (rush's `store_large_object()`). The networks'
#'   controllers use it as their `offload_path` and give it to the workers
#'   they start; workers started elsewhere use it unless their
#'   `REDQ_OFFLOAD_PATH` names their own mount of it.
#' @param start_worker_timeout Seconds `wait_for_workers()` waits by default.
#' @return `rush_plan()`: invisibly, the plan. `rush_config()`: the plan.
#'   `remove_rush_plan()`: invisibly `TRUE`. `rush_available()`: logical.
#' @export
#' @examples
#' if (redq_available() && requireNamespace("data.table", quietly = TRUE)) {
#'   rush_plan(n_workers = 2)
#'   rush_config()$n_workers
#'   remove_rush_plan()
#' }
rush_plan <- function(n_workers = NULL, config = NULL, lgr_thresholds = NULL,
                      large_objects_path = NULL, start_worker_timeout = Inf) {
  if (!is.null(n_workers)) n_workers <- check_count(n_workers, "n_workers")
  url <- rush_url(config)
  start_worker_timeout <- check_seconds(start_worker_timeout, "start_worker_timeout",
                                        none_ok = TRUE)
  rush_connect(url, "default", large_objects_path)
  redq_env$rush_plan <- list(config = url, n_workers = n_workers,
                             lgr_thresholds = lgr_thresholds,
                             large_objects_path = large_objects_path,
                             start_worker_timeout = start_worker_timeout)
  invisible(redq_env$rush_plan)
}

#' @rdname rush_plan
#' @export
rush_config <- function() {
  p <- redq_env$rush_plan
  list(config = p$config, n_workers = p$n_workers, lgr_thresholds = p$lgr_thresholds,
       large_objects_path = p$large_objects_path, start_worker_timeout = p$start_worker_timeout)
}

#' @rdname rush_plan
#' @export
remove_rush_plan <- function() {
  redq_env$rush_plan <- NULL
  invisible(TRUE)
}

#' @rdname rush_plan
#' @export
rush_available <- function() !is.null(redq_env$rush_plan)

#' A rush network's controller
#'
#' `rsh(network_id)` is `Rush$new(network_id)`: the controller of a rush
#' network, whose tasks run on redq workers (see [Rush]).
#'
#' @param network_id Network name (a redq namespace); `NULL` for a new one.
#' @param config The server, as for [rush_plan()]; `NULL` for the plan's.
#' @param ... Passed to `Rush$new()` (`seed`).
#' @return A [Rush] object.
#' @export
#' @examples
#' if (redq_available() && requireNamespace("data.table", quietly = TRUE)) {
#'   rush <- rsh("example-network")
#'   rush$start_local_workers(fun = function(x1, x2, ...) list(y = x1 + x2), n_workers = 2)
#'   keys <- rush$push_tasks(list(list(x1 = 1, x2 = 2), list(x1 = 3, x2 = 4)))
#'   rush$wait_for_tasks(keys)
#'   rush$fetch_finished_tasks()
#'   rush$reset()
#' }
rsh <- function(network_id = NULL, config = NULL, ...) {
  Rush$new(network_id = network_id, config = config, ...)
}

# The server of a rush config: a URL string, a list with url or
# host/port/password (redux's redis_config()), or NULL (the plan's, else
# redq_url()).
rush_url <- function(config) {
  if (is.null(config)) return(redq_env$rush_plan$config %||% redq_url())
  if (is.character(config)) {
    check_string(config, "config")
    return(config)
  }
  if (!is.list(config)) {
    redq_abort("argument", "'config' must be a Redis URL, or a list with url or host, port and password")
  }
  if (!is.null(config$url) && nzchar(config$url)) return(config$url)
  pw <- config$password
  server_url(config$host %||% "127.0.0.1", config$port %||% 6379,
             if (!is.null(pw) && nzchar(pw)) pw, config$db %||% 0)
}

rush_connect <- function(url, network_id, large_objects_path = redq_env$rush_plan$large_objects_path) {
  tryCatch(redq_controller(network_id, url = url, default = FALSE, offload_path = large_objects_path),
           redq_error_connection = function(e) {
             redq_abort("connection", paste("Can't connect to Redis. Check the configuration:",
                                            conditionMessage(e)))
           })
}

# Names of the network's records among the namespace's user values.
