# Tasks that kill their worker, and waits that no worker would ever end:
# the pool survives the one, the caller is told of the other.

# Warnings signalled while evaluating `expr`, muffled; the value is kept.
collect_warnings <- function(expr) {
  seen <- character()
  value <- withCallingHandlers(expr, warning = function(w) {
    seen <<- c(seen, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  list(value = value, warnings = seen)
}

test_that("a task that quits its worker's R ends DIED after its attempts, with the reason, and the pool has its workers again", {
  ctl <- test_controller()
  worker_spawn(2)
  id <- task_create_expr(quit(save = "no", status = 3))
  got <- collect_warnings(task_wait(id, timeout = 60))
  expect_equal(unname(got$value), "DIED")
  # each worker it ended was reported, with how its process ended
  expect_gte(sum(grepl("exited with status 3", got$warnings)), 3)
  err <- task_result(id)
  expect_s3_class(err, "redq_task_died")
  expect_match(conditionMessage(err), "exited with status 3")
  expect_equal(task_info(id)$attempt, 3)
  # the ended workers were replaced: two serve, and they work
  expect_true(wait_until(function() length(worker_list(ctl)) == 2, 20))
  id2 <- task_create_expr(1 + 1)
  task_wait(id2, timeout = 20)
  expect_equal(task_result(id2), 2)
})

test_that("a task whose worker is killed by a signal ends DIED naming the signal; a foreach loop stops with it", {
  ctl <- test_controller()
  worker_spawn(2)
  id <- task_create_expr(tools::pskill(Sys.getpid(), tools::SIGKILL), max_attempts = 1)
  got <- collect_warnings(task_wait(id, timeout = 60))
  expect_equal(unname(got$value), "DIED")
  expect_match(conditionMessage(task_result(id)), "killed by signal 9, SIGKILL")
  expect_true(wait_until(function() length(worker_list(ctl)) == 2, 20))
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  setChunkSize(1)
  withr::defer(setChunkSize(NULL))
  got <- collect_warnings(tryCatch(
    foreach(i = 1:4) %dopar% if (i == 2) quit(save = "no", status = 5) else i,
    error = function(e) e))
  expect_s3_class(got$value, "error")
  expect_match(conditionMessage(got$value), "exited with status 5")
  expect_true(wait_until(function() length(worker_list(ctl)) == 2, 20))
})

test_that("a wait whose queue no live worker serves says so within a lease period; a foreach loop fails after redq.no_worker_timeout", {
  ctl <- test_controller()
  worker_spawn(1) # serves "default" only
  id <- task_create_expr(1, queue = "nobody")
  t0 <- Sys.time()
  got <- collect_warnings(tryCatch(task_wait(id, timeout = 4), error = function(e) e))
  expect_s3_class(got$value, "redq_error_timeout")
  expect_length(got$warnings, 1)
  expect_match(got$warnings, "no live worker serves.*1 task\\(s\\) in queue 'nobody'")
  # the task is still queued, for a worker that comes later
  expect_equal(unname(task_status(id)), "PENDING")
  worker_spawn(1, queue = "nobody")
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 1)

  withr::local_options(redq.no_worker_timeout = 2)
  registerDoRedis("idle", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  t0 <- Sys.time()
  got <- collect_warnings(tryCatch(foreach(i = 1:3) %dopar% i, error = function(e) e))
  expect_s3_class(got$value, "redq_error_no_workers")
  expect_match(conditionMessage(got$value), "queue 'idle'")
  expect_match(got$warnings, "no live worker serves", all = TRUE)
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 20)
  # the loop's tasks went with it
  expect_equal(queue_length("idle"), 0)
})

test_that("a result R cannot serialize ends its task ERROR, and the worker goes on", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr({
    x <- quote(f())
    for (i in 1:50000) x <- call("f", x)
    x
  })
  task_wait(id, timeout = 60)
  expect_equal(unname(task_status(id)), "ERROR")
  expect_match(conditionMessage(task_result(id)), "could not serialize")
  id2 <- task_create_expr(2 * 21)
  task_wait(id2, timeout = 20)
  expect_equal(task_result(id2), 42)
})

test_that("a task timeout too short to act on is refused with a classed error", {
  ctl <- test_controller()
  expect_error(task_create_expr(1, timeout = 1e-9), class = "redq_error_argument")
  expect_error(task_create_expr(1, timeout = 1e-9), "at least 0.01")
  expect_length(task_list(), 0)
})
