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
#' a server that went away, default 60 s), `redq.url` (the server, after
#' `REDIS_URL`), `redq.server` (`"user"` or `"session"`: which embedded
#' server, see [redq_url()]), `redq.no_worker_timeout` (how long a foreach
#' loop waits while no live worker serves its queue before it fails with
#' `redq_error_no_workers`, default 300 s; any wait warns after a lease
#' period). Environment variables: `REDIS_URL`, `REDQ_SECRET` (see
#' `vignette("security", "redq")`), `SSL_CERT_FILE`.
#'
#' While a wait runs, workers that this session started and whose
#' processes end in the middle of their work (a task called `quit()`, R
#' crashed, the process was killed) are declared lost at once, with how
#' they ended, and replaced with workers of the same settings; the task
#' they ran counts an attempt and, after its last one, ends `DIED` with
#' that reason.
#'
#' @keywords internal
#' @importFrom foreach foreach %dopar%
#' @importFrom iterators iter nextElem
#' @importFrom R6 R6Class
#' @importFrom parallel stopCluster
"_PACKAGE"
