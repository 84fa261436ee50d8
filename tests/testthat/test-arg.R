# Bad numbers for every duration and count a user can pass: a classed
# error at once, nothing queued is lost, no worker dies, and the pool then
# serves the next task.

bad_seconds <- list(1e19, -1, NaN, NA, NA_real_, "1", c(1, 2))
bad_counts <- list(0, -1, 2.5, NaN, NA, NA_integer_, Inf, 1e19, "3")
# more attempts or workers than any task or host needs
too_many <- c(bad_counts, list(.Machine$integer.max, 1e6))

expect_refused <- function(expr, what) {
  expect_error(expr, class = "redq_error_argument", info = what)
}

test_that("bad durations and counts are refused at once and the pool serves on", {
  ctl <- test_controller()
  workers <- worker_spawn(2)$id
  queued <- task_create_expr("queued before")
  id <- task_create_expr(1)
  task_wait(id, timeout = 20)
  for (x in bad_seconds) {
    what <- paste(deparse(x), collapse = "")
    expect_refused(task_create_expr(1, timeout = x), paste("task timeout", what))
    expect_refused(task_create_call(identity, list(1), timeout = x), paste("call timeout", what))
    expect_refused(task_create_bulk_call(identity, list(1, 2), timeout = x), paste("bulk timeout", what))
    expect_refused(task_wait(id, timeout = x), paste("task_wait timeout", what))
    expect_refused(worker_spawn(1, heartbeat = x), paste("heartbeat", what))
    expect_refused(worker_spawn(1, lease = x), paste("lease", what))
    expect_refused(worker_spawn(1, timeout = x), paste("spawn timeout", what))
    expect_refused(worker_stop("nobody", wait = x), paste("stop wait", what))
  }
  expect_refused(task_create_expr(1, timeout = 0), "zero timeout")
  expect_refused(worker_spawn(1, heartbeat = 2, lease = 1), "lease shorter than heartbeat")
  for (x in too_many) {
    what <- paste(deparse(x), collapse = "")
    expect_refused(task_create_expr(1, max_attempts = x), paste("max_attempts", what))
    expect_refused(task_create_bulk_expr(y, data.frame(y = 1:2), max_attempts = x),
                   paste("bulk max_attempts", what))
    expect_refused(worker_spawn(x), paste("n", what))
  }
  for (x in bad_counts) {
    what <- paste(deparse(x), collapse = "")
    # Inf: no limit
    if (!identical(x, Inf)) expect_refused(worker_spawn(1, max_tasks = x), paste("max_tasks", what))
  }
  # no worker started, nothing queued lost, the same two workers serve on
  expect_setequal(worker_list(), workers)
  expect_equal(unname(task_status(queued)), "COMPLETE")
  nxt <- task_create_expr(Sys.getpid())
  task_wait(nxt, timeout = 20)
  expect_true(task_result(nxt) %in% vapply(workers, worker_pid, 1L, ctl = ctl))
  expect_equal(queue_length(), 0)
})

test_that("bad foreach options are refused at once and the next loop runs", {
  ctl <- test_controller()
  registerDoRedis("jobs", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(2, queue = "jobs", url = test_url(), namespace = ctl$namespace)
  for (x in bad_seconds) {
    what <- paste(deparse(x), collapse = "")
    expect_refused(foreach(i = 1:2, .options.redis = list(timeout = x)) %dopar% i, paste("timeout", what))
    expect_refused(foreach(i = 1:2, .options.redis = list(ftinterval = x)) %dopar% i, paste("ftinterval", what))
    expect_refused(setFtinterval(x), paste("setFtinterval", what))
    expect_refused(registerDoRedis("jobs", url = test_url(), namespace = ctl$namespace, ftinterval = x),
                   paste("registerDoRedis ftinterval", what))
  }
  for (x in bad_counts) {
    what <- paste(deparse(x), collapse = "")
    expect_refused(foreach(i = 1:2, .options.redis = list(chunkSize = x)) %dopar% i, paste("chunkSize", what))
    expect_refused(setChunkSize(x), paste("setChunkSize", what))
  }
  for (x in too_many) {
    what <- paste(deparse(x), collapse = "")
    expect_refused(foreach(i = 1:2, .options.redis = list(max_attempts = x)) %dopar% i, paste("max_attempts", what))
    expect_refused(startLocalWorkers(x, queue = "jobs", url = test_url(), namespace = ctl$namespace),
                   paste("startLocalWorkers n", what))
  }
  expect_false(any(grepl(":job:|:task:", namespace_keys(ctl))))
  expect_equal(length(worker_list()), 2)
  expect_equal(foreach(i = 1:4, .combine = c) %dopar% (i * 2), c(2, 4, 6, 8))
})

test_that("the launcher and worker_main refuse bad numbers with a clear message", {
  ctl <- test_controller()
  script <- worker_script(tempfile("redq-worker-"))
  withr::defer(unlink(script))
  env <- c("current", REDIS_URL = test_url(), R_LIBS = paste(.libPaths(), collapse = ":"))
  for (args in list(c("--heartbeat", "1e19"), c("--lease", "-1"), c("--heartbeat", "abc"),
                    c("--max-tasks", "0"), c("--max-tasks", "2.5"))) {
    r <- processx::run(script, c(args, ctl$namespace), env = env, error_on_status = FALSE,
                       timeout = 60)
    expect_equal(r$status, 2L, info = paste(args, collapse = " "))
    expect_match(r$stderr, "^redq-worker: '", info = paste(args, collapse = " "))
  }
  out <- callr::r(function(url, ns) {
    library(redq)
    tryCatch(worker_main(namespace = ns, url = url, idle_timeout = -1), error = function(e) class(e))
  }, list(test_url(), ctl$namespace))
  expect_true("redq_error_argument" %in% out)
  expect_equal(worker_list(), character())
})
