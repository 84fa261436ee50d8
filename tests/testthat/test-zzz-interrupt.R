# Ctrl+C for real: SIGINT to an R session in the middle of a wait or a loop.

session_with_redq <- function(ns, envir = parent.frame()) {
  rs <- callr::r_session$new(wait = TRUE)
  withr::defer(rs$kill(), envir = envir)
  rs$run(function(url, ns) {
    library(redq)
    options(redq.heartbeat = 0.2, redq.lease = 1)
    registerDoRedis("jobs", url = url, namespace = ns)
    invisible()
  }, list(test_url(), ns))
  rs
}

interrupt_when_busy <- function(rs, ctl) {
  ok <- wait_until(function() any(worker_status(controller = ctl) == "BUSY"), timeout = 20)
  expect_true(ok)
  rs$interrupt()
  res <- rs$read()
  while (is.null(res)) {
    rs$poll_process(2000)
    res <- rs$read()
  }
  res
}

test_that("Ctrl+C in a foreach loop removes its job and frees the workers", {
  ctl <- test_controller(queue = "jobs")
  worker_spawn(2, queue = "jobs")
  rs <- session_with_redq(ctl$namespace)
  rs$call(function() {
    foreach(i = 1:100, .options.redis = list(chunkSize = 1)) %dopar% {
      Sys.sleep(0.5)
      i
    }
  })
  res <- interrupt_when_busy(rs, ctl)
  expect_match(conditionMessage(res$error), "interrupted")
  t0 <- Sys.time()
  clean <- wait_until(function() {
    !any(grepl(":job:|:task:", namespace_keys(ctl))) &&
      all(worker_status(controller = ctl) == "IDLE")
  }, timeout = 2)
  expect_true(clean, info = paste(namespace_keys(ctl), collapse = " "))
  # the same session runs the next loop
  r <- rs$run(function() foreach(i = 1:5, .combine = c) %dopar% i)
  expect_equal(r, 1:5)
})

test_that("Ctrl+C in task_wait returns promptly and leaves the tasks and connection usable", {
  ctl <- test_controller(queue = "jobs")
  worker_spawn(1, queue = "jobs")
  id <- task_create_expr({
    Sys.sleep(1.5)
    "done"
  })
  rs <- session_with_redq(ctl$namespace)
  rs$call(function(id) task_wait(id), list(id))
  t0 <- Sys.time()
  res <- interrupt_when_busy(rs, ctl)
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 2)
  expect_match(conditionMessage(res$error), "interrupted")
  r <- rs$run(function(id) {
    task_wait(id, timeout = 20)
    task_result(id)
  }, list(id))
  expect_equal(r, "done")
})

test_that("Ctrl+C stops a worker cleanly and its task goes back to the queue", {
  ctl <- test_controller()
  w1 <- worker_spawn(1)$id
  id <- task_create_expr({
    Sys.sleep(2)
    Sys.getpid()
  })
  expect_true(wait_until(function() identical(worker_info(w1)[[1]]$task, id), timeout = 20))
  tools::pskill(worker_pid(w1, ctl), tools::SIGINT)
  proc <- redq:::redq_env$processes[[w1]]
  expect_true(wait_until(function() !proc$is_alive(), timeout = 10))
  expect_equal(unname(worker_status(w1)), "EXITED")
  expect_equal(unname(task_status(id)), "PENDING")
  w2 <- worker_spawn(1)$id
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), worker_pid(w2, ctl))
  expect_equal(task_info(id)$attempts$worker, c(w1, w2))
})

test_that("Ctrl+C in future_lapply cancels its futures' tasks, and the plan goes on", {
  ctl <- test_controller()
  worker_spawn(2)
  rs <- session_with_redq(ctl$namespace)
  rs$run(function(url, ns) future::plan(redq_future, namespace = ns, url = url), list(test_url(), ctl$namespace))
  rs$call(function() future.apply::future_lapply(1:4, function(i) Sys.sleep(30)))
  res <- interrupt_when_busy(rs, ctl)
  expect_match(conditionMessage(res$error), "interrupt")
  # the workers are free again long before the 30 s tasks would end
  expect_true(wait_until(function() all(worker_status(controller = ctl) == "IDLE"), timeout = 5))
  expect_equal(rs$run(function() future::value(future::future(6 * 7))), 42)
})

test_that("Ctrl+C while future_lapply still creates its futures cancels every one of them", {
  # the first workers begin tasks while the session still submits more,
  # and their cancels arrive around the moment the freed workers begin the
  # next ones: each must still end CANCELLED and free its worker
  ctl <- test_controller()
  worker_spawn(2)
  rs <- session_with_redq(ctl$namespace)
  rs$run(function(url, ns) future::plan(redq_future, namespace = ns, url = url), list(test_url(), ctl$namespace))
  rs$call(function() future.apply::future_lapply(1:60, function(i) Sys.sleep(30), future.chunk.size = 1))
  res <- interrupt_when_busy(rs, ctl)
  expect_match(conditionMessage(res$error), "interrupt")
  expect_true(wait_until(function() all(worker_status(controller = ctl) == "IDLE"), timeout = 5))
  expect_equal(queue_length(controller = ctl), 0)
  expect_equal(rs$run(function() future::value(future::future(6 * 7))), 42)
})

test_that("Ctrl+C in bplapply cancels its tasks, removes its job, and the param goes on", {
  ctl <- test_controller(queue = "bioc")
  worker_spawn(2, queue = "bioc")
  rs <- session_with_redq(ctl$namespace)
  rs$run(function(url, ns) {
    p <<- RedisParam(jobname = "bioc", is.worker = FALSE, namespace = ns, url = url)
    invisible()
  }, list(test_url(), ctl$namespace))
  rs$call(function() bplapply(1:20, function(i) Sys.sleep(30), BPPARAM = p))
  res <- interrupt_when_busy(rs, ctl)
  expect_match(conditionMessage(res$error), "interrupt")
  clean <- wait_until(function() {
    !any(grepl(":job:|:task:", namespace_keys(ctl))) &&
      all(worker_status(controller = ctl) == "IDLE")
  }, timeout = 5)
  expect_true(clean, info = paste(namespace_keys(ctl), collapse = " "))
  expect_equal(queue_length("bioc", controller = ctl), 0)
  expect_equal(rs$run(function() unlist(bplapply(1:3, function(i) i * 2, BPPARAM = p))), c(2, 4, 6))
})
