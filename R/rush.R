# A rush-compatible interface (rush 0.1.2): a network is a redq namespace,
# a rush task is a redq task whose payload holds its `xs` (and `xs_extra`,
# seed), and the rush tables are built from the tasks' records: state,
# worker, payload and result. The controller submits and waits through one
# engine job whose tasks stay listed (task_list()) until reset(), so that
# any session reaches them. Workers run either redq's own loop (for
# worker_loop_default: each task calls `fun`) or a loop of the user's,
# which claims and ends tasks through a RushWorker, one round trip each.

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
  host <- config$host %||% "127.0.0.1"
  port <- config$port %||% 6379
  pw <- config$password
  auth <- if (is.null(pw) || !nzchar(pw)) "" else paste0(":", utils::URLencode(pw, reserved = TRUE), "@")
  sprintf("redis://%s%s:%s/%s", auth, host, port, config$db %||% 0)
}

rush_connect <- function(url, network_id, large_objects_path = redq_env$rush_plan$large_objects_path) {
  tryCatch(redq_controller(network_id, url = url, default = FALSE, offload_path = large_objects_path),
           redq_error_connection = function(e) {
             redq_abort("connection", paste("Can't connect to Redis. Check the configuration:",
                                            conditionMessage(e)))
           })
}

# Names of the network's records among the namespace's user values.
RUSH_START <- "rush:start_args"
RUSH_ON_IDLE <- "rush:terminate_on_idle"
RUSH_WRITTEN <- "rush:written"
RUSH_FIELDS <- "rush:fields:"

# A network id shaped like rush's (a UUID), from the system's generator:
# drawing it with sample() would change the session's random numbers.
rush_new_id <- function() {
  h <- secure_token(16)
  paste(substring(h, c(1, 9, 13, 17, 21), c(8, 12, 16, 20, 32)), collapse = "-")
}

# A task's fields from its record: xs and xs_extra from the payload (or,
# once it completed, from the result, which repeats them), ys, ys_extra
# and the worker's pid from the result, the worker's id from the record,
# and for failed tasks a condition whose message says why.
rush_rows <- function(ctl, keys) {
  if (!length(keys)) return(list())
  rec <- rs_check(rs_task_records(ctl$ptr, keys))
  written <- rush_written(ctl, keys)
  rows <- lapply(seq_along(keys), function(i) {
    res <- if (!is.null(rec$result[[i]])) unserialize(rec$result[[i]])
    pay <- if (!is.null(rec$payload[[i]])) unserialize(rec$payload[[i]])
    src <- if (is.list(res) && !inherits(res, "condition")) res else pay
    row <- list(xs = src$xs, xs_extra = src$xs_extra, seed = pay$seed %||% src$seed,
                state = rec$state[[i]])
    if (nzchar(rec$worker[[i]])) {
      pid <- if (is.list(src)) src$pid
      row$worker_extra <- if (is.null(pid)) list(worker_id = rec$worker[[i]]) else
        list(pid = pid, worker_id = rec$worker[[i]])
    }
    if (identical(rec$state[[i]], "finished")) {
      row$ys <- res$ys
      row$ys_extra <- res$ys_extra
    } else if (identical(rec$state[[i]], "failed")) {
      msg <- if (inherits(res, "condition")) conditionMessage(res) else task_failure(keys[[i]], ctl)
      row$condition <- list(message = msg)
    }
    row
  })
  # fields written with write_hashes()
  for (i in which(!vapply(written, is.null, TRUE))) {
    extra <- unserialize(written[[i]])
    rows[[i]][names(extra)] <- extra
  }
  rows
}

# Fields write_hashes() stored for `keys` (a list of raw vectors or NULLs);
# one round trip to learn that there are none.
rush_written <- function(ctl, keys) {
  if (is.null(rs_check(rs_controller_data_get(ctl$ptr, RUSH_WRITTEN)))) {
    return(vector("list", length(keys)))
  }
  rs_check(rs_controller_data_mget(ctl$ptr, paste0(RUSH_FIELDS, keys)))
}

# One table row of `fields` from a task's fields, as rush flattens them:
# the elements of each field in turn (longer values as list columns).
rush_flatten <- function(row, fields) {
  out <- list()
  for (f in fields) {
    v <- row[[f]]
    if (is.null(v)) next
    if (!is.list(v)) v <- stats::setNames(list(v), f)
    for (n in names(v)) {
      x <- v[[n]]
      out[[n]] <- if (is.atomic(x) && length(x) == 1L) x else list(x)
    }
  }
  out
}

rush_table <- function(rows, keys, fields, data_format = "data.table") {
  if (identical(data_format, "list")) {
    if (!length(keys)) return(list())
    return(stats::setNames(lapply(rows, function(r) r[intersect(fields, names(r))]), keys))
  }
  rush_need_datatable()
  if (!length(keys)) return(data.table::data.table())
  flat <- lapply(rows, rush_flatten, fields = fields)
  tab <- data.table::rbindlist(flat, use.names = TRUE, fill = TRUE)
  if (nrow(tab) == 0L) return(data.table::data.table(keys = keys))
  data.table::set(tab, j = "keys", value = keys)
  tab
}

rush_need_datatable <- function() {
  if (!requireNamespace("data.table", quietly = TRUE)) {
    redq_abort("dependency", paste("the rush interface returns data.tables: install data.table",
                                   "(Debian: apt install r-cran-data.table)"))
  }
}

RUSH_STATES <- c("queued", "running", "finished", "failed")

#' The controller of a rush network
#'
#' `Rush` implements the controller of rush 0.1.2 on redq: a network is a
#' redq namespace, its tasks are redq tasks run by redq workers, and the
#' tables are `data.table`s with one row per task (columns from the names
#' inside `xs`, `ys`, `xs_extra`, `worker_extra` (`pid`, `worker_id`),
#' `ys_extra` and `condition` (`message`), and `keys`).
#'
#' Workers run `worker_loop_default` (each task calls `fun` with the task's
#' `xs` and the `constants`) on redq's own worker loop, or a loop of yours,
#' `worker_loop(rush, ...)`, given a [RushWorker]. With `seed`, each task
#' gets its own L'Ecuyer-CMRG stream, so results do not depend on which
#' worker ran it. A task whose worker dies runs again on another worker,
#' up to `max_retries` more times; then it is failed with a message naming
#' the lost worker.
#'
#' Methods (as in rush): `start_local_workers()`, `start_remote_workers()`,
#' `create_worker_script()`, `wait_for_workers()`, `stop_workers()`,
#' `restart_local_workers()`, `detect_lost_workers()`, `reset()`,
#' `push_tasks()`, `push_priority_tasks()`, `push_failed()`,
#' `retry_tasks()`, `fetch_queued_tasks()`, `fetch_priority_tasks()`,
#' `fetch_running_tasks()`, `fetch_finished_tasks()`, `fetch_failed_tasks()`,
#' `fetch_tasks()`, `fetch_new_tasks()`, `fetch_tasks_with_state()`,
#' `wait_for_finished_tasks()`, `wait_for_new_tasks()`, `wait_for_tasks()`,
#' `write_hashes()` (fields of existing tasks, shown as columns),
#' `read_hashes()`, `read_hash()`, `is_running_task()`, `is_failed_task()`,
#' `tasks_with_state()`, `read_log()`, `print_log()`; active bindings
#' `n_workers`, `n_running_workers`, `n_terminated_workers`,
#' `n_killed_workers`, `n_lost_workers`, `worker_ids`, `running_worker_ids`,
#' `tasks`, `queued_tasks`, `running_tasks`, `finished_tasks`,
#' `failed_tasks`, `n_queued_tasks`, `n_queued_priority_tasks`,
#' `n_running_tasks`, `n_finished_tasks`, `n_failed_tasks`, `n_tasks`,
#' `worker_info`, `worker_states`, `priority_info`.
#'
#' @export
Rush <- R6::R6Class("Rush",
  public = list(
    network_id = NULL,
    config = NULL,
    connector = NULL,
    processes = NULL,

    initialize = function(network_id = NULL, config = NULL, seed = NULL) {
      self$network_id <- network_id %||% rush_new_id()
      check_string(self$network_id, "network_id")
      self$config <- rush_url(config)
      self$connector <- rush_connect(self$config, self$network_id)
      if (!is.null(seed)) private$.seed <- lecuyer_seed(seed)
      invisible(self)
    },

    format = function(...) sprintf("<%s>", class(self)[[1L]]),

    print = function() {
      counts <- private$.counts()
      cat(self$format(), "\n", sep = "")
      cat("* Running Workers: ", self$n_running_workers, "\n",
          "* Queued Tasks: ", counts[["queued"]], "\n",
          "* Queued Priority Tasks: ", self$n_queued_priority_tasks, "\n",
          "* Running Tasks: ", counts[["running"]], "\n",
          "* Finished Tasks: ", counts[["finished"]], "\n",
          "* Failed Tasks: ", counts[["failed"]], "\n", sep = "")
      invisible(self)
    },

    reconnect = function() {
      self$connector <- rush_connect(self$config, self$network_id)
      private$.job <- NULL
      invisible(self)
    },

    start_local_workers = function(n_workers = NULL, wait_for_workers = TRUE, timeout = Inf,
                                   globals = NULL, packages = NULL, heartbeat_period = NULL,
                                   heartbeat_expire = NULL, lgr_thresholds = NULL,
                                   lgr_buffer_size = 0, supervise = TRUE,
                                   worker_loop = worker_loop_default, ...) {
      n_workers <- check_count(n_workers %||% rush_config()$n_workers %||% 1, "n_workers")
      private$.push_start_args(globals, packages, worker_loop, list(...))
      heartbeat <- heartbeat_period %||% getOption("redq.heartbeat", 1)
      lease <- heartbeat_expire %||% max(getOption("redq.lease", 5), 3 * heartbeat)
      timeout <- if (is.infinite(timeout)) rush_config()$start_worker_timeout %||% 60 else timeout
      if (is.infinite(timeout)) timeout <- 60
      ids <- spawn_workers(n_workers, "default", timeout, heartbeat, lease, NULL, Inf,
                           self$connector, command = RUSH_WORKER_COMMAND,
                           wait = isTRUE(wait_for_workers))
      self$processes <- c(self$processes, redq_env$processes[ids])
      private$.seen <- union(private$.seen, ids)
      invisible(ids)
    },

    start_remote_workers = function(globals = NULL, packages = NULL, heartbeat_period = NULL,
                                    heartbeat_expire = NULL, lgr_thresholds = NULL,
                                    lgr_buffer_size = 0, worker_loop = worker_loop_default, ...) {
      private$.push_start_args(globals, packages, worker_loop, list(...))
      invisible(self)
    },

    create_worker_script = function() {
      script <- sprintf("REDIS_URL='<url>' Rscript -e \"redq::start_worker(network_id = '%s')\"",
                        self$network_id)
      message(script)
      invisible(script)
    },

    wait_for_workers = function(n, timeout = Inf) {
      timeout <- if (is.infinite(timeout)) rush_config()$start_worker_timeout %||% Inf else timeout
      deadline <- Sys.time() + timeout
      while (self$n_workers < n) {
        if (Sys.time() > deadline) redq_abort("timeout", sprintf("Timeout waiting for %i worker(s)", n))
        Sys.sleep(0.01)
      }
      invisible(self)
    },

    stop_workers = function(type = "terminate", worker_ids = NULL) {
      type <- match.arg(type, c("terminate", "kill"))
      ids <- worker_ids %||% self$running_worker_ids
      if (length(ids)) {
        worker_stop(ids, type = if (type == "kill") "kill" else "graceful", wait = 0,
                    controller = self$connector)
      }
      invisible(self)
    },

    restart_local_workers = function(worker_ids, supervise = TRUE) {
      worker_stop(intersect(worker_ids, self$running_worker_ids), type = "kill", wait = 2,
                  controller = self$connector)
      ids <- spawn_workers(length(worker_ids), "default", 60, NULL, NULL, NULL, Inf,
                           self$connector, command = RUSH_WORKER_COMMAND)
      self$processes <- c(self$processes[setdiff(names(self$processes), worker_ids)],
                          redq_env$processes[ids])
      invisible(ids)
    },

    detect_lost_workers = function(restart_local_workers = FALSE) {
      lost <- worker_detect_lost(self$connector)
      ids <- lost$id %||% character()
      if (restart_local_workers && length(ids)) {
        local <- intersect(ids, names(self$processes))
        if (length(local)) self$restart_local_workers(local)
      }
      invisible(self)
    },

    reset = function(type = "kill") {
      if (!is.null(type)) {
        ids <- self$running_worker_ids
        if (length(ids)) {
          worker_stop(ids, type = if (type == "kill") "kill" else "graceful", wait = 2,
                      controller = self$connector)
        }
      }
      self$processes <- NULL
      ids <- task_list(controller = self$connector)
      if (!is.null(rs_check(rs_controller_data_get(self$connector$ptr, RUSH_WRITTEN)))) {
        for (k in c(paste0(RUSH_FIELDS, ids), RUSH_WRITTEN)) {
          rs_controller_data_delete(self$connector$ptr, k)
        }
      }
      if (length(ids)) task_delete(ids, controller = self$connector)
      if (!is.null(private$.job)) try(job_remove(private$.job), silent = TRUE)
      private$.job <- NULL
      for (k in c(RUSH_START, RUSH_ON_IDLE)) rs_controller_data_delete(self$connector$ptr, k)
      private$.cache <- list()
      private$.cache_fields <- NULL
      private$.n_seen <- 0L
      invisible(self)
    },

    read_log = function(worker_ids = NULL) {
      rush_need_datatable()
      data.table::data.table(worker_id = character(), level = integer(),
                             timestamp = as.POSIXct(character()), logger = character(),
                             caller = character(), msg = character())
    },

    print_log = function() invisible(self),

    push_tasks = function(xss, extra = NULL, seeds = NULL, timeouts = NULL, max_retries = NULL,
                          terminate_workers = FALSE) {
      rush_check_xss(xss, extra)
      n <- length(xss)
      if (is.null(seeds) && !is.null(private$.seed) && n > 0) {
        seeds <- seed_streams(private$.seed, n)
        private$.seed <- seeds[[n]]
      }
      if (!is.null(seeds) && length(seeds) != n) {
        redq_abort("argument", "'seeds' must have one seed per task")
      }
      timeouts <- if (is.null(timeouts)) rep(Inf, n) else rep_len(timeouts, n)
      attempts <- if (is.null(max_retries)) NULL else check_count(max_retries + 1, "max_retries")
      payloads <- lapply(seq_len(n), function(i) {
        serialize_fast(list(type = "rush", xs = xss[[i]], xs_extra = extra[[i]],
                            seed = seeds[[i]]))
      })
      keys <- character(n)
      for (t in unique(timeouts)) {
        at <- which(timeouts == t)
        keys[at] <- job_submit(private$.engine(), "default", payloads[at],
                               timeout = if (is.infinite(t)) NULL else t, max_attempts = attempts)
      }
      if (isTRUE(terminate_workers)) {
        rs_check(rs_controller_data_set(self$connector$ptr, RUSH_ON_IDLE, as.raw(1)))
      }
      invisible(keys)
    },

    push_priority_tasks = function(xss, extra = NULL, priority = NULL) {
      rush_check_xss(xss, extra)
      priority <- rep_len(priority %||% NA_character_, length(xss))
      running <- self$running_worker_ids
      keys <- character(length(xss))
      for (i in seq_along(xss)) {
        q <- if (!is.na(priority[[i]]) && priority[[i]] %in% running) {
          rs_private_queue(priority[[i]])
        } else "default"
        keys[[i]] <- job_submit(private$.engine(), q, list(serialize_fast(list(
          type = "rush", xs = xss[[i]], xs_extra = extra[[i]]))))
      }
      invisible(keys)
    },

    push_failed = function(keys, conditions) {
      task_cancel(keys, controller = self$connector)
      self$write_hashes(condition = conditions, keys = keys)
      invisible(self)
    },

    retry_tasks = function(keys, ignore_max_retries = FALSE, next_seed = FALSE) {
      keys <- keys[self$is_failed_task(keys)]
      if (length(keys)) task_retry(keys, controller = self$connector)
      invisible(self)
    },

    fetch_queued_tasks = function(fields = c("xs", "xs_extra"), data_format = "data.table") {
      private$.fetch(self$queued_tasks, fields, data_format)
    },

    fetch_priority_tasks = function(fields = c("xs", "xs_extra"), data_format = "data.table") {
      private$.fetch(character(), fields, data_format)
    },

    fetch_running_tasks = function(fields = c("xs", "xs_extra", "worker_extra"),
                                   data_format = "data.table") {
      private$.fetch(self$running_tasks, fields, data_format)
    },

    fetch_finished_tasks = function(fields = c("xs", "ys", "xs_extra", "worker_extra", "ys_extra",
                                               "condition"),
                                    reset_cache = FALSE, data_format = "data.table") {
      if (reset_cache || !identical(private$.cache_fields, fields)) {
        private$.cache <- list()
        private$.cache_fields <- fields
      }
      private$.update_cache()
      rush_table(private$.cache, names(private$.cache), fields, data_format)
    },

    wait_for_finished_tasks = function(fields = c("xs", "ys", "xs_extra", "worker_extra",
                                                  "ys_extra"),
                                       timeout = Inf, data_format = "data.table") {
      if (!private$.wait_new(length(private$.cache), timeout)) return(NULL)
      self$fetch_finished_tasks(fields, data_format = data_format)
    },

    fetch_new_tasks = function(fields = c("xs", "ys", "xs_extra", "worker_extra", "ys_extra",
                                          "condition"),
                               data_format = "data.table") {
      all <- self$fetch_finished_tasks(fields, data_format = "list")
      n_new <- length(all) - private$.n_seen
      if (n_new <= 0) return(rush_table(list(), character(), fields, data_format))
      new <- utils::tail(all, n_new)
      private$.n_seen <- length(all)
      rush_table(lapply(names(new), function(k) private$.cache[[k]]), names(new), fields,
                 data_format)
    },

    wait_for_new_tasks = function(fields = c("xs", "ys", "xs_extra", "worker_extra", "ys_extra",
                                             "condition"),
                                  timeout = Inf, data_format = "data.table") {
      if (!private$.wait_new(private$.n_seen, timeout)) {
        return(if (identical(data_format, "list")) NULL else rush_table(list(), character(), fields))
      }
      self$fetch_new_tasks(fields, data_format)
    },

    fetch_failed_tasks = function(fields = c("xs", "worker_extra", "condition"),
                                  data_format = "data.table") {
      private$.fetch(self$failed_tasks, fields, data_format)
    },

    fetch_tasks = function(fields = c("xs", "ys", "xs_extra", "worker_extra", "ys_extra",
                                      "condition"),
                           data_format = "data.table") {
      private$.fetch(self$tasks, fields, data_format)
    },

    fetch_tasks_with_state = function(fields = c("xs", "ys", "xs_extra", "worker_extra",
                                                 "ys_extra", "condition"),
                                      states = c("queued", "running", "finished", "failed"),
                                      reset_cache = FALSE, data_format = "data.table") {
      states <- rush_check_states(states)
      keys <- character()
      rows <- list()
      for (s in RUSH_STATES[RUSH_STATES %in% states]) {
        k <- private$.keys(s)
        r <- rush_rows(self$connector, k)
        for (i in seq_along(r)) r[[i]]$state <- s
        keys <- c(keys, k)
        rows <- c(rows, r)
      }
      if (identical(data_format, "list")) {
        st <- vapply(rows, function(r) r$state, "")
        return(lapply(split(seq_along(keys), factor(st, RUSH_STATES[RUSH_STATES %in% states])),
                      function(ix) rush_table(rows[ix], keys[ix], fields, "list")))
      }
      tab <- rush_table(rows, keys, c("state", fields))
      if (nrow(tab)) data.table::setcolorder(tab, "state")
      tab
    },

    wait_for_tasks = function(keys, detect_lost_workers = FALSE) {
      keys <- if (missing(keys)) self$tasks else keys
      if (length(keys)) task_wait(keys, controller = self$connector)
      invisible(self)
    },

    write_hashes = function(..., .values = list(), keys = NULL) {
      values <- c(list(...), .values)
      values <- values[lengths(values) > 0]
      if (!length(values)) return(invisible(keys))
      n <- max(lengths(values))
      if (is.null(keys) || length(keys) < n) {
        redq_abort("argument", paste("write_hashes() needs the keys of existing tasks, one per",
                                     "value (tasks are created with push_tasks())"))
      }
      old <- rush_written(self$connector, keys)
      for (i in seq_along(keys)) {
        fields <- if (is.null(old[[i]])) list() else unserialize(old[[i]])
        for (f in names(values)) {
          v <- values[[f]]
          fields[[f]] <- v[[(i - 1L) %% length(v) + 1L]]
        }
        rs_check(rs_controller_data_set(self$connector$ptr, paste0(RUSH_FIELDS, keys[[i]]),
                                        serialize_fast(fields)))
      }
      rs_check(rs_controller_data_set(self$connector$ptr, RUSH_WRITTEN, as.raw(1)))
      private$.cache <- list()
      invisible(keys)
    },

    read_hashes = function(keys, fields, flatten = TRUE) {
      rows <- rush_rows(self$connector, keys)
      lapply(rows, function(r) if (flatten) rush_flatten(r, fields) else r[fields])
    },

    read_hash = function(key, fields) {
      stats::setNames(rush_rows(self$connector, key)[[1]][fields], fields)
    },

    is_running_task = function(keys) {
      if (!length(keys)) return(logical(0))
      rs_check(rs_task_states(self$connector$ptr, keys)) == "running"
    },

    is_failed_task = function(keys) {
      if (!length(keys)) return(logical(0))
      rs_check(rs_task_states(self$connector$ptr, keys)) == "failed"
    },

    tasks_with_state = function(states) {
      states <- rush_check_states(states)
      st <- private$.states()
      out <- lapply(RUSH_STATES[RUSH_STATES %in% states], function(s) {
        k <- st$keys[st$state == s]
        if (length(k)) k else NULL
      })
      stats::setNames(out, RUSH_STATES[RUSH_STATES %in% states])
    }
  ),

  active = list(
    n_workers = function() length(self$worker_ids),
    n_running_workers = function() length(self$running_worker_ids),
    n_terminated_workers = function() length(self$terminated_worker_ids),
    n_killed_workers = function() length(self$killed_worker_ids),
    n_lost_workers = function() length(self$lost_worker_ids),
    worker_ids = function() private$.worker_ids(NULL),
    running_worker_ids = function() worker_list(self$connector) %||% NULL,
    terminated_worker_ids = function() private$.worker_ids("terminated"),
    killed_worker_ids = function() private$.worker_ids("killed"),
    lost_worker_ids = function() private$.worker_ids("lost"),
    tasks = function() task_list(controller = self$connector) %||% NULL,
    queued_tasks = function() private$.keys("queued"),
    running_tasks = function() private$.keys("running"),
    finished_tasks = function() private$.keys("finished"),
    failed_tasks = function() private$.keys("failed"),
    n_queued_tasks = function() private$.counts()[["queued"]],
    n_queued_priority_tasks = function() {
      ids <- self$running_worker_ids
      if (!length(ids)) return(0L)
      as.integer(sum(vapply(ids, function(w) {
        queue_length(rs_private_queue(w), controller = self$connector)
      }, 1)))
    },
    n_running_tasks = function() private$.counts()[["running"]],
    n_finished_tasks = function() private$.counts()[["finished"]],
    n_failed_tasks = function() private$.counts()[["failed"]],
    n_tasks = function() length(self$tasks),
    worker_info = function() {
      rush_need_datatable()
      info <- private$.workers()
      if (!length(info)) return(data.table::data.table())
      data.table::data.table(
        worker_id = names(info),
        pid = vapply(info, function(i) as.integer(i$pid %||% NA), 1L),
        remote = !names(info) %in% names(self$processes),
        hostname = vapply(info, function(i) i$host %||% NA_character_, ""),
        heartbeat = NA_character_)
    },
    worker_states = function() {
      rush_need_datatable()
      info <- private$.workers()
      if (!length(info)) return(data.table::data.table())
      data.table::data.table(state = vapply(info, function(i) i$state %||% "terminated", ""),
                             worker_id = names(info))
    },
    all_workers_terminated = function() self$n_running_workers == 0L,
    priority_info = function() {
      rush_need_datatable()
      ids <- self$running_worker_ids %||% character()
      data.table::data.table(worker_id = ids, n_tasks = vapply(ids, function(w) {
        as.integer(queue_length(rs_private_queue(w), controller = self$connector))
      }, 1L))
    }
  ),

  private = list(
    .seed = NULL,
    .job = NULL,
    .cache = list(),
    .cache_fields = NULL,
    .n_seen = 0L,
    .seen = character(),

    # The engine job this controller submits through; its tasks stay
    # listed and are neither fetched nor deleted by the engine.
    .engine = function() {
      if (is.null(private$.job) || !identical(private$.job$ctl$pid, Sys.getpid())) {
        private$.job <- job_open(self$connector, fetch = FALSE, consume = FALSE,
                                 register = TRUE)
      }
      private$.job
    },

    .states = function() {
      keys <- task_list(controller = self$connector)
      state <- if (length(keys)) rs_check(rs_task_states(self$connector$ptr, keys)) else character()
      list(keys = keys, state = state)
    },

    .keys = function(state) {
      st <- private$.states()
      k <- st$keys[st$state == state]
      if (length(k)) k else NULL
    },

    .counts = function() {
      st <- private$.states()
      vapply(RUSH_STATES, function(s) sum(st$state == s), 1L)
    },

    .fetch = function(keys, fields, data_format) {
      rush_table(rush_rows(self$connector, keys), keys %||% character(), fields, data_format)
    },

    # Read the rows of tasks that finished since the cache was filled.
    .update_cache = function() {
      fin <- private$.keys("finished")
      new <- setdiff(fin, names(private$.cache))
      if (length(new)) {
        rows <- rush_rows(self$connector, new)
        private$.cache <- c(private$.cache, stats::setNames(rows, new))
      }
    },

    # Wait until more than `seen` tasks have finished; FALSE after timeout.
    .wait_new = function(seen, timeout) {
      deadline <- Sys.time() + timeout
      repeat {
        if (private$.counts()[["finished"]] > seen) return(TRUE)
        if (Sys.time() >= deadline) return(FALSE)
        if (!is.null(private$.job)) {
          try(job_wait(private$.job, n = NA, timeout = min(0.2, max(0, as.numeric(
            deadline - Sys.time(), units = "secs")))), silent = TRUE)
        } else {
          Sys.sleep(0.01)
        }
      }
    },

    # Workers of the network: the live ones and those this controller saw
    # before (records of workers that left stay for a day).
    .workers = function() {
      ids <- union(private$.seen, worker_list(self$connector))
      private$.seen <- ids
      if (!length(ids)) return(list())
      worker_info(ids, controller = self$connector)
    },

    .worker_ids = function(which) {
      info <- private$.workers()
      state <- vapply(info, function(i) i$state %||% "terminated", "")
      ids <- if (is.null(which)) names(info) else names(info)[state == which]
      if (length(ids)) ids else NULL
    },

    .push_start_args = function(globals, packages, worker_loop, args) {
      g <- list()
      for (i in seq_along(globals)) {
        from <- globals[[i]]
        to <- names(globals)[i]
        if (is.null(to) || !nzchar(to)) to <- from
        if (!exists(from, envir = globalenv())) {
          redq_abort("argument", sprintf("Global `%s` not found", from))
        }
        g[[to]] <- get(from, envir = globalenv())
      }
      if (!is.function(worker_loop)) redq_abort("argument", "'worker_loop' must be a function")
      start <- list(worker_loop = worker_loop, worker_loop_args = args, globals = g,
                    packages = as.character(packages),
                    large_objects_path = self$connector$offload$path)
      rs_check(rs_controller_data_set(self$connector$ptr, RUSH_START, serialize_fast(start)))
    }
  )
)

rush_check_xss <- function(xss, extra) {
  if (!is.list(xss) || !all(vapply(xss, is.list, TRUE))) {
    redq_abort("argument", "'xss' must be a list of lists, one per task, e.g. list(list(x1 = 1, x2 = 2))")
  }
  if (!is.null(extra) && (!is.list(extra) || length(extra) != length(xss))) {
    redq_abort("argument", "'extra' must be a list of lists, one per task")
  }
}

rush_check_states <- function(states) {
  bad <- setdiff(states, RUSH_STATES)
  if (length(bad)) {
    redq_abort("argument", sprintf("unknown state(s) %s; use queued, running, finished or failed",
                                   paste(bad, collapse = ", ")))
  }
  states
}

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
    raw <- rs_check(rs_controller_data_get(ctl$ptr, RUSH_START))
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
  worker_serve(cfg, 16, function(w, state) {
    state$rush <- start
    if (identical(loop, worker_loop_default)) {
      return(worker_loop(w, state, cfg$max_tasks, Inf))
    }
    rush <- RushWorker$new(network_id = cfg$namespace, config = cfg$url, remote = TRUE,
                           worker_id = rs_worker_id(w))
    do.call(loop, c(list(rush = rush), start$worker_loop_args))
    rush$n_done
  })
}

# On a worker: a task of worker_loop_default, through redq's own loop.
rush_exec <- function(p, w, state) {
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
      w <- redq_env$worker
      if (is.null(w) || !identical(redq_env$worker_namespace, self$network_id)) {
        cfg <- worker_settings(namespace = self$network_id, url = self$config, name = worker_id,
                             heartbeat = heartbeat_period, lease = heartbeat_expire)
        w <- worker_register(cfg, 1)
        private$.own <- w
        reg.finalizer(environment(), function(e) try(rs_worker_exit(w), silent = TRUE),
                      onexit = TRUE)
      }
      private$.w <- w
      self$worker_id <- rs_worker_id(w)
      invisible(self)
    },

    pop_task = function(timeout = 1, fields = "xs") {
      # a step claims a few short tasks at once (as redq's own loop does);
      # the next pops take them without a round trip
      if (!length(private$.claimed)) {
        b <- rs_check(rs_worker_step(private$.w, private$.max_batch, timeout))
        private$.claimed <- b$id
        private$.payloads <- b$payload
      }
      private$.idle <- !length(private$.claimed)
      if (private$.idle) return(NULL)
      id <- private$.claimed[[1]]
      raw <- private$.payloads[[1]]
      private$.claimed <- private$.claimed[-1]
      private$.payloads <- private$.payloads[-1]
      rs_worker_begin(private$.w, id)
      p <- unserialize(raw)
      private$.popped[[id]] <- p
      out <- list(xs = p$xs, xs_extra = p$xs_extra, seed = p$seed)[intersect(fields, c("xs", "xs_extra", "seed"))]
      c(out, list(key = id))
    },

    push_running_tasks = function(xss, extra = NULL) {
      rush_check_xss(xss, extra)
      q <- rs_private_queue(self$worker_id)
      keys <- character(length(xss))
      for (i in seq_along(xss)) {
        p <- list(type = "rush", xs = xss[[i]], xs_extra = extra[[i]])
        id <- job_submit(private$.engine(), q, list(serialize_fast(p)), max_attempts = 1)
        repeat {
          b <- rs_check(rs_worker_step(private$.w, 1, 0))
          if (length(b$id)) break
        }
        rs_worker_begin(private$.w, b$id[[1]])
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
        end_task(private$.w, keys[[i]], list(outcome = OUTCOME_VALUE, result = serialize_fast(res)))
        private$.popped[[keys[[i]]]] <- NULL
      }
      rs_check(rs_worker_step(private$.w, 0, 0))
      self$n_done <- self$n_done + length(keys)
      invisible(self)
    },

    push_failed = function(keys, conditions) {
      for (i in seq_along(keys)) {
        msg <- conditions[[i]]$message %||% "failed"
        rs_worker_end(private$.w, keys[[i]], OUTCOME_ERROR,
                      serialize_fast(redq_task_error(msg, id = keys[[i]])))
        private$.popped[[keys[[i]]]] <- NULL
      }
      rs_check(rs_worker_step(private$.w, 0, 0))
      self$n_done <- self$n_done + length(keys)
      invisible(self)
    },

    set_terminated = function() {
      if (!is.null(private$.own)) {
        rs_worker_exit(private$.own)
        private$.own <- NULL
      }
      invisible(self)
    }
  ),

  active = list(
    terminated = function() isTRUE(rs_worker_stop_requested(private$.w)),
    # (a worker whose last pop_task() found a task is not idle: no need to
    # ask the server)
    terminated_on_idle = function() {
      if (!private$.idle) return(FALSE)
      !is.null(rs_check(rs_controller_data_get(self$connector$ptr, RUSH_ON_IDLE))) &&
        queue_length("default", controller = self$connector) == 0
    }
  ),

  private = list(
    .w = NULL,
    .own = NULL,
    .idle = TRUE,
    .claimed = character(),
    .payloads = list(),
    .max_batch = 16,
    .popped = list()
  )
)
