#' redq: parallel R over Redis, fast and crash-safe
#'
#' redq spreads work over many R processes through a Redis server: a
#' `foreach` backend compatible with doRedis ([registerDoRedis()]) and a
#' task queue ([task_create_expr()], [task_wait()], [task_result()]). Workers
#' ([worker_spawn()], [worker_main()], the `redq-worker` launcher) hold a
#' heartbeat lease; when one dies its tasks run elsewhere. See
#' `vignette("foreach", "redq")`, `vignette("tasks", "redq")`,
#' `vignette("fault-tolerance", "redq")` and `vignette("cluster", "redq")`.
#'
#' Options: `redq.heartbeat` and `redq.lease` (seconds; defaults for
#' [worker_spawn()]), `redq.reap_interval` (how often a waiting controller
#' looks for lost workers, default 1 s), `redq.grace` (how long a worker's R
#' code gets to honour a timeout or cancel before the process ends, default
#' 3 s), `redq.reconnect_patience` (how long a waiting controller waits for
#' a server that went away, default 60 s). Environment variables: `REDIS_URL`,
#' `REDQ_SECRET`, `SSL_CERT_FILE`.
#'
#' @keywords internal
#' @importFrom foreach foreach %dopar%
#' @importFrom iterators iter nextElem
"_PACKAGE"
