# Task API cases: bulk throughput, single-task round trip, and scale
# (100,000 queued tasks: submission, Redis memory, per-task cost).
#
# Every call names its controller explicitly: registerDoRedis() (in the
# foreach cases) replaces the default controller.

# Tasks from one bulk submission until every result is back in R, with the
# two workers already idle and warm. `label` names the setting (signed).
case_task_throughput <- function(ctl, label = "") {
  ids <- worker_spawn(2, controller = ctl)$id
  on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl), add = TRUE)
  warm_up(ctl)

  for (n in c(2000L, 20000L)) {
    rates <- numeric()
    for (i in seq_len(if (n < 10000L) reps(5, 2) else reps(3, 1))) {
      invisible(gc())
      t <- elapsed({
        tid <- task_create_bulk_call(identity, as.list(seq_len(n)), controller = ctl)
        task_wait(tid, timeout = 600, progress = FALSE, controller = ctl)
        res <- task_results(tid, controller = ctl)
      })
      stopifnot(length(res) == n, identical(res[[n]], n))
      rates <- c(rates, n / t)
      task_delete(tid, controller = ctl)
    }
    case <- sprintf("tasks: bulk %s trivial%s", format(n, big.mark = ","), label)
    record(case, "redq", rates, "tasks/s", target = target_at_least(25000, "tasks/s"))
  }
  if (nzchar(label)) return(invisible())

  # a worker that has served ~70,000 tasks, idle again (past one wait for
  # work that found none)
  Sys.sleep(1.5)
  rss <- vapply(worker_info(ids, ctl), function(w) proc_status_mb(w$pid), 0)
  record("memory: worker RSS after work", "redq", rss, "MB", group = "worker-rss",
         target = target_at_most(80, "MB"))
}

# Latency of one task: create, wait, fetch, with two idle workers.
case_round_trip <- function(ctl, label = "") {
  ids <- worker_spawn(2, controller = ctl)$id
  on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl), add = TRUE)
  warm_up(ctl)
  one <- function() {
    t0 <- now()
    id <- task_create_expr(1, controller = ctl)
    task_wait(id, progress = FALSE, controller = ctl)
    v <- task_result(id, controller = ctl)
    dt <- now() - t0
    stopifnot(identical(v, 1))
    c(dt * 1000, id)
  }
  k <- 300L
  medians <- p99s <- numeric()
  for (i in seq_len(reps(3, 1))) {
    Sys.sleep(0.2) # let both workers go back to their blocking wait
    r <- vapply(seq_len(k), function(j) one(), character(2))
    ms <- as.numeric(r[1, ])
    medians <- c(medians, stats::median(ms))
    p99s <- c(p99s, stats::quantile(ms, 0.99, names = FALSE))
    task_delete(r[2, ], controller = ctl)
  }
  note(sprintf("round trip: %d repetitions of %d sequential tasks; min/median/max are over the repetitions' statistic",
               length(medians), k))
  record(paste0("round trip: median", label), "redq", medians, "ms",
         target = target_at_most(0.25, "ms"))
  record(paste0("round trip: p99", label), "redq", p99s, "ms", target = target_at_most(0.6, "ms"))
}

# 100,000 trivial tasks. With no worker running: bulk submission time and
# Redis memory per queued task. Then per-task cost (submit + run + fetch,
# divided by n) at 1k, 10k and, if it fits the time budget, 100k.
case_scale <- function(ctl, n_big = if (isTRUE(bench$quick)) 20000L else 100000L,
                       budget = 180) {
  queue <- "bench-scale"
  batch <- 10000L
  invisible(gc(reset = TRUE))
  peak_reset <- reset_peak_rss()
  mem0 <- redis_used_memory(ctl)
  rss0 <- proc_status_mb()
  big <- character()
  t_submit <- elapsed({
    for (start in seq(1L, n_big, by = batch)) {
      rows <- lapply(start:min(n_big, start + batch - 1L), function(i) list(x = i))
      big <- c(big, task_create_bulk_expr(x, rows, queue = queue, controller = ctl))
    }
  })
  stopifnot(length(big) == n_big, queue_length(queue, controller = ctl) == n_big)
  mem1 <- redis_used_memory(ctl)
  per_task <- (mem1 - mem0) / n_big
  payload <- length(redq:::task_payload_expr(quote(x), list(x = 1L)))
  nk <- sprintf("%dk", n_big %/% 1000L)
  record(sprintf("scale: submit %s (bulk of 10k)", nk), "redq", n_big / t_submit, "tasks/s")
  record("scale: payload of one task", "redq", payload, "bytes")
  record(sprintf("scale: Redis per queued task (%s)", nk), "redq", per_task, "bytes")
  record("scale: Redis per task beyond payload", "redq", per_task - payload, "bytes",
         target = target_at_most(200, "bytes"))
  note(sprintf("scale: payload = serialized expression + variables of one trivial task; Redis used_memory grew %.1f MB for %s queued tasks",
               (mem1 - mem0) / 2^20, format(n_big, big.mark = ",")))

  # per-task cost at small sizes: workers on a separate queue, so the big
  # backlog stays untouched until its own run
  small_q <- "bench-scale-small"
  ids <- worker_spawn(2, queue = small_q, controller = ctl)$id
  on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl), add = TRUE)
  warm_up(ctl, queue = small_q)
  cost <- list()
  for (n in c(1000L, 10000L)) {
    cost[[as.character(n)]] <- vapply(seq_len(reps(3, 1)), function(i) {
      t <- elapsed({
        tid <- task_create_bulk_expr(x, lapply(seq_len(n), function(i) list(x = i)),
                                     queue = small_q, controller = ctl)
        task_wait(tid, timeout = 600, progress = FALSE, controller = ctl)
        res <- task_results(tid, controller = ctl)
      })
      stopifnot(length(res) == n)
      task_delete(tid, controller = ctl)
      t / n
    }, 0)
  }
  worker_stop(ids, type = "kill", wait = 5, controller = ctl)
  record("scale: per-task cost, 1k", "redq", cost[["1000"]] * 1e6, "us/task")
  record("scale: per-task cost, 10k", "redq", cost[["10000"]] * 1e6, "us/task")

  projected <- stats::median(cost[["10000"]]) * n_big
  if (isTRUE(bench$quick) || projected > budget) {
    note(sprintf("scale: %s run skipped (%s; projected %.0f s)", nk,
                 if (isTRUE(bench$quick)) "quick mode" else "over budget", projected))
  } else {
    # the backlog is already queued: its cost is submission + drain + fetch
    ids <- worker_spawn(2, queue = queue, controller = ctl)$id
    on.exit(worker_stop(ids, type = "kill", wait = 5, controller = ctl), add = TRUE)
    t_run <- elapsed({
      task_wait(big, timeout = 2 * budget, progress = FALSE, controller = ctl)
      res <- task_results(big, controller = ctl)
    })
    stopifnot(length(res) == n_big, identical(res[[n_big]], n_big))
    rm(res)
    record(sprintf("scale: per-task cost, %s", nk), "redq", (t_submit + t_run) / n_big * 1e6,
           "us/task")
  }
  # the wait itself blocks in Rust, so the controller's memory is read as
  # peaks over submit + wait + fetch of the whole case
  heap_peak <- sum(gc()[, 6])
  record("scale: controller R heap peak", "redq", heap_peak, "MB")
  if (peak_reset) {
    record("scale: controller RSS peak", "redq", proc_status_mb(field = "VmHWM"), "MB")
  }
  note(sprintf("scale: controller RSS before the case %.0f MB; R heap and RSS peaks cover submitting, waiting for and fetching the tasks",
               rss0))
  # Deleting tasks still queued costs time quadratic in the queue length
  # (each is removed from the queue list one by one); removing the queue
  # first cancels them all in one go.
  t_del <- elapsed({
    queue_remove(queue, controller = ctl)
    for (s in seq(1L, n_big, by = batch)) {
      task_delete(big[s:min(n_big, s + batch - 1L)], controller = ctl)
    }
  })
  progress(sprintf("  deleted %d tasks in %.1f s", n_big, t_del))
}

# The first tasks a worker runs pay for lazy loading; keep that out of
# the steady-state numbers.
warm_up <- function(ctl, n = 200L, queue = NULL) {
  tid <- task_create_bulk_call(identity, as.list(seq_len(n)), queue = queue, controller = ctl)
  task_wait(tid, timeout = 60, progress = FALSE, controller = ctl)
  task_delete(tid, controller = ctl)
}

# The throughput and round-trip cases again with signed payloads
# (REDQ_SECRET): controllers sign every payload, workers verify before
# unserializing. Compared with the unsigned rows of the same run.
case_signed <- function(ctl_of) {
  old <- Sys.getenv("REDQ_SECRET", NA)
  Sys.setenv(REDQ_SECRET = "a long random secret shared by controllers and workers")
  on.exit(if (is.na(old)) Sys.unsetenv("REDQ_SECRET") else Sys.setenv(REDQ_SECRET = old),
          add = TRUE)
  # controllers read the secret when they connect, workers when they start
  case_task_throughput(ctl_of("signed"), label = ", signed")
  case_round_trip(ctl_of("signed-round-trip"), label = ", signed")
  for (i in seq_along(bench$rows)) {
    r <- bench$rows[[i]]
    if (!endsWith(r$case, ", signed")) next
    plain <- sub(", signed$", "", r$case)
    bench$rows[[i]]$target <- target_within(plain, 0.10, identical(r$unit, "tasks/s"))
  }
}

# Large results: a task returning raw(n) until the value is back in R, in
# MB/s, next to serialize() + unserialize() of the same object in this
# process; and the peak resident memory of the controller and of the
# worker while they move it, as a multiple of the object's size.
case_large_results <- function(ctl) {
  for (mb in c(100, 1000)) {
    n <- mb * 1e6
    x <- raw(n)
    base <- numeric()
    for (i in seq_len(reps(3, 1))) {
      t <- elapsed(y <- unserialize(serialize(x, NULL, xdr = FALSE)))
      stopifnot(length(y) == n)
      rm(y)
      base <- c(base, mb / t)
    }
    rm(x)
    case <- sprintf("large: %s MB result round trip", format(mb, big.mark = ","))
    record(case, "serialize+unserialize", base, "MB/s", group = case)
    rates <- ctl_peak <- worker_peak <- numeric()
    for (i in seq_len(reps(3, 1))) {
      # a fresh worker each time: its peak is this task's
      w <- worker_spawn(1, controller = ctl)
      pid <- worker_info(w$id, ctl)[[1]]$pid
      invisible(gc())
      reset_peak_rss()
      before <- proc_status_mb()
      t <- elapsed({
        id <- task_create_expr(raw(n), controller = ctl)
        task_wait(id, timeout = 600, progress = FALSE, controller = ctl)
        v <- task_result(id, controller = ctl)
      })
      stopifnot(length(v) == n)
      ctl_peak <- c(ctl_peak, (proc_status_mb(field = "VmHWM") - before) * 2^20 / n)
      worker_peak <- c(worker_peak, proc_status_mb(pid, field = "VmHWM") * 2^20 / n)
      rm(v)
      task_delete(id, controller = ctl)
      worker_stop(w, type = "kill", wait = 5, controller = ctl)
      rates <- c(rates, mb / t)
    }
    record(case, "redq", rates, "MB/s", group = case)
    if (mb >= 1000) {
      record(sprintf("large: %s MB result, controller peak RSS", mb), "redq", ctl_peak, "x size",
             target = target_at_most(2.5, "x size"))
      record(sprintf("large: %s MB result, worker peak RSS", mb), "redq", worker_peak, "x size",
             target = target_at_most(2.5, "x size"))
    }
  }
}
