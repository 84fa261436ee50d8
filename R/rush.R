# A rush-compatible interface (rush 0.1.2): a network is a redq namespace,
# a rush task is a redq task whose payload holds its `xs` (and `xs_extra`,
# seed), and the rush tables are built from the tasks' records: state,
# worker, payload and result. The controller submits and waits through one
# engine job whose tasks stay listed (task_list()) until reset(), so that
# any session reaches them. Workers run either redq's own loop (for
# worker_loop_default: each task calls `fun`) or a loop of the user's,
# which claims and ends tasks through a RushWorker, one round trip each.

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
      timing <- worker_timing(heartbeat_period, heartbeat_expire)
      heartbeat <- timing$heartbeat
      lease <- timing$lease
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
      tryCatch(worker_wait(n, timeout = timeout, controller = self$connector),
               redq_error_timeout = function(e) {
                 redq_abort("timeout", sprintf("Timeout waiting for %i worker(s)", n))
               })
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
      if (!is.null(data_get(self$connector, RUSH_WRITTEN))) {
        for (k in c(paste0(RUSH_FIELDS, ids), RUSH_WRITTEN)) {
          data_delete(self$connector, k)
        }
      }
      if (length(ids)) task_delete(ids, controller = self$connector)
      if (!is.null(private$.job)) try(job_remove(private$.job), silent = TRUE)
      private$.job <- NULL
      for (k in c(RUSH_START, RUSH_ON_IDLE)) data_delete(self$connector, k)
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
        data_set(self$connector, RUSH_ON_IDLE, as.raw(1))
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
          worker_queue(priority[[i]])
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
        data_set(self$connector, paste0(RUSH_FIELDS, keys[[i]]), serialize_fast(fields))
      }
      data_set(self$connector, RUSH_WRITTEN, as.raw(1))
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
      task_states(self$connector, keys) == "running"
    },

    is_failed_task = function(keys) {
      if (!length(keys)) return(logical(0))
      task_states(self$connector, keys) == "failed"
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
        queue_length(worker_queue(w), controller = self$connector)
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
        as.integer(queue_length(worker_queue(w), controller = self$connector))
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
      state <- if (length(keys)) task_states(self$connector, keys) else character()
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
    # Tasks are created by this controller, by others and by workers alike,
    # and each completion adds one to the namespace's running total: the
    # core waits for as many more as are missing.
    .wait_new = function(seen, timeout) {
      finished <- private$.counts()[["finished"]]
      if (finished > seen) return(TRUE)
      total <- tasks_completed(self$connector, 0, 0)$found
      isTRUE(tasks_completed(self$connector, total + (seen - finished) + 1, timeout)$reached)
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
      data_set(self$connector, RUSH_START, serialize_fast(start))
    }
  )
)
