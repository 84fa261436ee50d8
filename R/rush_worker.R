# The worker side of rush: the default worker loop (redq's own loop, with
# a payload kind of its own), the worker process of a network, and the
# RushWorker a loop of the user's claims and ends tasks through (the
# worker face, R/worker_face.R).

#' The default worker loop
#'
#' As in rush: each task calls `fun` with the task's `xs` as arguments and
#' the `constants`, and `fun` returns a named list (the task's `ys`). On
#' redq the loop is redq's own worker loop (tasks are claimed in batches).
#'
#' @param fun Function of the task's arguments, returning a named list.
#' @param constants Named list of further arguments.
#' @param rush A [RushWorker] (when called as a loop of its own).
#' @return `NULL`.
#' @export
worker_loop_default <- function(fun, constants = NULL, rush) {
  while (!rush$terminated && !rush$terminated_on_idle) {
    task <- rush$pop_task(fields = c("xs", "seed"))
    if (!is.null(task)) {
      tryCatch({
        if (!is.null(task$seed)) assign(".Random.seed", task$seed, envir = globalenv())
        ys <- do.call(fun, c(task$xs, constants))
        rush$push_results(task$key, yss = list(ys))
      }, error = function(e) {
        rush$push_failed(task$key, conditions = list(list(message = conditionMessage(e))))
      })
    }
  }
  invisible(NULL)
}

#' Start a worker of a rush network in this R process
#'
#' What the command of `Rush$create_worker_script()` runs on another
#' machine: it serves the network with the worker loop the controller
#' stored (`start_local_workers()` or `start_remote_workers()`).
#'
#' @param network_id The network.
#' @param worker_id Worker id (default: a new one).
#' @param remote Ignored.
#' @param ... A server given as `url`, or `host`, `port`, `password`;
#'   default `REDIS_URL`.
#' @return Invisibly, `NULL`.
#' @export
start_worker <- function(network_id, worker_id = NULL, remote = TRUE, ...) {
  cfg <- list(...)
  url <- if (length(cfg)) rush_url(cfg) else NULL
  rush_worker_main(network_id = network_id, url = url, name = worker_id)
  invisible(NULL)
}

RUSH_WORKER_COMMAND <- "suppressPackageStartupMessages(library(redq)); redq:::rush_worker_main()"

# A rush worker process: read what the controller stored, attach its
# packages and set its globals, then serve: redq's own loop for
# worker_loop_default, else the user's loop given a RushWorker.
rush_worker_main <- function(network_id = NULL, url = NULL, name = NULL) {
  cfg <- worker_settings(namespace = network_id, url = url, name = name)
  ctl <- redq_controller(cfg$namespace, url = cfg$url, default = FALSE)
  start <- NULL
  repeat {
    raw <- data_get(ctl, RUSH_START)
    if (!is.null(raw)) break
    Sys.sleep(1)
  }
  start <- unserialize(raw)
  # the network's large_objects_path, unless this machine names its own
  if (!is.null(start$large_objects_path) && !nzchar(Sys.getenv("REDQ_OFFLOAD_PATH"))) {
    Sys.setenv(REDQ_OFFLOAD_PATH = start$large_objects_path)
  }
  for (pkg in start$packages) library(pkg, character.only = TRUE)
  list2env(start$globals, envir = globalenv())
  loop <- start$worker_loop
  worker_serve(cfg, redq_default("max_batch"), function(w, state) {
    state$rush <- start
    if (identical(loop, worker_loop_default)) {
      return(worker_loop(w, state, cfg$max_tasks, Inf))
    }
    rush <- RushWorker$new(network_id = cfg$namespace, config = cfg$url, remote = TRUE,
                           worker_id = wf_id(w))
    do.call(loop, c(list(rush = rush), start$worker_loop_args))
    rush$n_done
  })
}

# On a worker: a task of worker_loop_default, through redq's own loop.
run_rush <- function(p, task, w, state) {
  start <- state$rush
  if (is.null(start)) stop("this worker was not started for a rush network")
  args <- start$worker_loop_args
  ys <- do.call(args$fun, c(p$xs, args$constants))
  list(xs = p$xs, xs_extra = p$xs_extra, ys = ys, pid = Sys.getpid())
}

#' A worker of a rush network, for loops of your own
#'
#' The `rush` object a worker loop receives: it claims tasks
#' (`pop_task()`), creates tasks it runs itself (`push_running_tasks()`),
#' and ends them (`push_results()`, `push_failed()`), each in one round
#' trip, as a redq worker whose lease the side thread keeps. It inherits
#' the controller's methods, so a loop can read the network's tables.
#'
#' @export
RushWorker <- R6::R6Class("RushWorker", inherit = Rush,
  public = list(
    worker_id = NULL,
    remote = NULL,
    n_done = 0,

    initialize = function(network_id, config = NULL, remote = TRUE, worker_id = NULL,
                          heartbeat_period = NULL, heartbeat_expire = NULL,
                          lgr_thresholds = NULL, lgr_buffer_size = 0, seed = NULL) {
      super$initialize(network_id, config, seed)
      self$remote <- remote
      private$.max_batch <- redq_default("max_batch")
      w <- redq_env$worker
      if (is.null(w) || !identical(redq_env$worker_namespace, self$network_id)) {
        cfg <- worker_settings(namespace = self$network_id, url = self$config, name = worker_id,
                             heartbeat = heartbeat_period, lease = heartbeat_expire)
        w <- wf_register(cfg, 1)
        private$.own <- w
        reg.finalizer(environment(), function(e) try(wf_exit(w), silent = TRUE), onexit = TRUE)
      }
      private$.w <- w
      self$worker_id <- wf_id(w)
      invisible(self)
    },

    pop_task = function(timeout = 1, fields = "xs") {
      # a step claims a few short tasks at once (as redq's own loop does);
      # the next pops take them without a round trip
      if (!length(private$.claimed)) {
        b <- wf_step(private$.w, private$.max_batch, timeout)
        private$.claimed <- b$id
        private$.payloads <- b$payload
      }
      private$.idle <- !length(private$.claimed)
      if (private$.idle) return(NULL)
      id <- private$.claimed[[1]]
      raw <- private$.payloads[[1]]
      private$.claimed <- private$.claimed[-1]
      private$.payloads <- private$.payloads[-1]
      wf_begin(private$.w, id)
      p <- unserialize(raw)
      private$.popped[[id]] <- p
      out <- list(xs = p$xs, xs_extra = p$xs_extra, seed = p$seed)[intersect(fields, c("xs", "xs_extra", "seed"))]
      c(out, list(key = id))
    },

    push_running_tasks = function(xss, extra = NULL) {
      rush_check_xss(xss, extra)
      q <- worker_queue(self$worker_id)
      keys <- character(length(xss))
      for (i in seq_along(xss)) {
        p <- list(type = "rush", xs = xss[[i]], xs_extra = extra[[i]])
        id <- job_submit(private$.engine(), q, list(serialize_fast(p)), max_attempts = 1)
        repeat {
          b <- wf_step(private$.w, 1, 0)
          if (length(b$id)) break
        }
        wf_begin(private$.w, b$id[[1]])
        private$.popped[[b$id[[1]]]] <- p
        keys[[i]] <- b$id[[1]]
      }
      invisible(keys)
    },

    push_results = function(keys, yss, extra = NULL) {
      for (i in seq_along(keys)) {
        p <- private$.popped[[keys[[i]]]]
        res <- list(xs = p$xs, xs_extra = p$xs_extra, ys = yss[[i]], ys_extra = extra[[i]],
                    pid = Sys.getpid())
        wf_end(private$.w, keys[[i]], wf_result(res))
        private$.popped[[keys[[i]]]] <- NULL
      }
      wf_report(private$.w)
      self$n_done <- self$n_done + length(keys)
      invisible(self)
    },

    push_failed = function(keys, conditions) {
      for (i in seq_along(keys)) {
        msg <- conditions[[i]]$message %||% "failed"
        wf_end(private$.w, keys[[i]], wf_error(msg, keys[[i]]))
        private$.popped[[keys[[i]]]] <- NULL
      }
      wf_report(private$.w)
      self$n_done <- self$n_done + length(keys)
      invisible(self)
    },

    set_terminated = function() {
      if (!is.null(private$.own)) {
        wf_exit(private$.own)
        private$.own <- NULL
      }
      invisible(self)
    }
  ),

  active = list(
    terminated = function() wf_stop_requested(private$.w),
    # (a worker whose last pop_task() found a task is not idle: no need to
    # ask the server)
    terminated_on_idle = function() {
      if (!private$.idle) return(FALSE)
      !is.null(data_get(self$connector, RUSH_ON_IDLE)) &&
        queue_length("default", controller = self$connector) == 0
    }
  ),

  private = list(
    .w = NULL,
    .own = NULL,
    .idle = TRUE,
    .claimed = character(),
    .payloads = list(),
    .max_batch = NULL,
    .popped = list()
  )
)
