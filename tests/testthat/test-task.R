test_that("a task created before any worker runs when one arrives", {
  ctl <- test_controller()
  id <- task_create_expr(1 + 1)
  expect_type(id, "character")
  expect_equal(unname(task_status(id)), "PENDING")
  worker_spawn(1)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 2)
  expect_equal(unname(task_status(id)), "COMPLETE")
})

test_that("task_create_expr captures the variables the expression uses", {
  ctl <- test_controller()
  worker_spawn(1)
  a <- 20
  f <- function(x) x + 1
  id <- task_create_expr(f(a) * 2)
  a <- 0
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 42)
})

test_that("task_create_call and the bulk forms run every task", {
  ctl <- test_controller()
  worker_spawn(2)
  id <- task_create_call(function(x, y) x * y, list(6, 7))
  ids <- task_create_bulk_call(function(x, y) x - y, data.frame(x = 1:5, y = 5:1))
  e <- 100
  ids2 <- task_create_bulk_expr(x + e, data.frame(x = 1:3))
  task_wait(c(id, ids, ids2), timeout = 20)
  expect_equal(task_result(id), 42)
  expect_equal(unname(unlist(task_results(ids))), (1:5) - (5:1))
  expect_equal(unname(unlist(task_results(ids2))), 101:103)
  expect_setequal(task_list(), c(id, ids, ids2))
})

test_that("a failing task ends ERROR with its message and the worker goes on", {
  ctl <- test_controller()
  w <- worker_spawn(1)
  id <- task_create_expr({
    warning("careful")
    stop("boom")
  })
  id2 <- task_create_expr(3)
  task_wait(c(id, id2), timeout = 20)
  expect_equal(unname(task_status(c(id, id2))), c("ERROR", "COMPLETE"))
  r <- task_result(id)
  expect_s3_class(r, "redq_task_error")
  expect_match(conditionMessage(r), "boom")
  expect_equal(r$warnings, "careful")
  expect_error(task_result(id, error = TRUE), "boom", class = "redq_task_error")
  expect_equal(task_result(id2), 3)
  expect_equal(task_info(id2)$worker, w)
})

test_that("wrong arguments raise classed errors at once", {
  ctl <- test_controller()
  expect_error(task_create_call("sqrt", list(1)), class = "redq_error_argument")
  expect_error(task_create_expr(1, timeout = -1), class = "redq_error_argument")
  expect_error(task_create_expr(1, max_attempts = 0), class = "redq_error_argument")
  expect_error(task_create_expr(1, queue = "bad queue"), class = "redq_error_argument")
  expect_error(task_wait(1), class = "redq_error_argument")
  expect_error(task_result("nosuchtask"), class = "redq_error_not_found")
  expect_equal(unname(task_status("nosuchtask")), "MISSING")
  id <- task_create_expr(1)
  expect_error(task_result(id), class = "redq_error_not_ready")
  t0 <- Sys.time()
  expect_error(task_wait(id, timeout = 0.3), class = "redq_error_timeout")
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 2)
  # the connection is still usable and nothing queued was lost
  expect_equal(queue_length(), 1)
})

test_that("an unreachable server is a connection error within seconds", {
  port <- redq:::free_port()
  t0 <- Sys.time()
  expect_error(redq_controller("x", url = sprintf("redis://127.0.0.1:%d/0", port)),
               class = "redq_error_connection")
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 3)
  expect_error(redq_controller("x", url = "http://nope"), class = "redq_error_argument")
})

test_that("a result can be read by id from another R process", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr(paste("from", "worker"))
  task_wait(id, timeout = 20)
  other <- callr::r(function(ns, url, id) {
    library(redq)
    redq_controller(ns, url = url)
    list(status = task_status(id), value = task_result(id))
  }, list(ctl$namespace, test_url(), id))
  expect_equal(unname(other$status), "COMPLETE")
  expect_equal(other$value, "from worker")
})

test_that("task_wait in one process sees tasks created in another", {
  ctl <- test_controller()
  id <- callr::r(function(ns, url) {
    library(redq)
    redq_controller(ns, url = url)
    task_create_expr(Sys.getpid())
  }, list(ctl$namespace, test_url()))
  worker_spawn(1)
  task_wait(id, timeout = 20)
  expect_type(task_result(id), "integer")
})

test_that("task_info reports times, worker and attempts", {
  ctl <- test_controller()
  w <- worker_spawn(1)
  id <- task_create_expr(Sys.sleep(0.1))
  task_wait(id, timeout = 20)
  info <- task_info(id)
  expect_equal(info$status, "COMPLETE")
  expect_equal(info$worker, w)
  expect_equal(info$attempt, 1L)
  expect_true(info$finished >= info$started)
  expect_equal(nrow(info$attempts), 1L)
  expect_equal(info$attempts$outcome, "COMPLETE")
  expect_error(task_info("nope"), class = "redq_error_not_found")
})

test_that("cancelled and deleted tasks never run", {
  ctl <- test_controller()
  ids <- task_create_bulk_expr(x, data.frame(x = 1:3))
  task_cancel(ids[2])
  task_delete(ids[3])
  expect_equal(unname(task_status(ids)), c("PENDING", "CANCELLED", "MISSING"))
  expect_equal(queue_length(), 1)
  worker_spawn(1)
  task_wait(ids[1:2], timeout = 20)
  expect_equal(task_result(ids[1]), 1)
  expect_s3_class(task_result(ids[2]), "redq_task_cancelled")
  expect_false(ids[3] %in% task_list())
})

test_that("task_info reports max_attempts, default or chosen", {
  ctl <- test_controller()
  a <- task_create_expr(1)
  b <- task_create_expr(1, max_attempts = 5, timeout = 30)
  expect_equal(task_info(a)$max_attempts, 3L)
  expect_equal(task_info(b)$max_attempts, 5L)
  expect_equal(task_info(b)$timeout, 30)
  expect_equal(task_info(a)$timeout, Inf)
})

test_that("dependencies: a task runs after those it depends on, or never", {
  ctl <- test_controller()
  a <- task_create_expr({
    Sys.sleep(0.3)
    "a"
  })
  b <- task_create_expr(stop("b fails"))
  c <- task_create_call(function() Sys.time(), depends_on = a)
  d <- task_create_expr(1, depends_on = c(a, b))
  e <- task_create_bulk_call(function(x) x, list(1, 2), depends_on = d)
  expect_equal(unname(task_status(c(c, d, e))), rep("DEFERRED", 4))
  expect_error(task_result(c), class = "redq_error_not_ready")
  worker_spawn(1)
  task_wait(c(a, b, c, d, e), timeout = 20)
  expect_equal(unname(task_status(c(a, b, c, d, e))),
               c("COMPLETE", "ERROR", "COMPLETE", "IMPOSSIBLE", "IMPOSSIBLE", "IMPOSSIBLE"))
  expect_true(task_result(c) >= task_info(a)$finished)
  expect_s3_class(task_result(d), "redq_task_impossible")
  expect_equal(task_info(d)$depends_on, c(a, b))
  expect_equal(unname(task_status(task_create_expr(1, depends_on = "nosuchtask"))), "IMPOSSIBLE")
})

test_that("task_retry runs failed tasks again under the same id", {
  ctl <- test_controller()
  flag <- tempfile()
  withr::defer(unlink(flag))
  worker_spawn(1)
  id <- task_create_expr(if (file.exists(flag)) "worked" else stop("not yet"))
  ok <- task_create_expr("fine")
  task_wait(c(id, ok), timeout = 20)
  expect_equal(unname(task_status(id)), "ERROR")
  expect_error(task_retry(c(id, ok)), "only tasks that ended without completing",
               class = "redq_error_argument")
  expect_equal(unname(task_status(id)), "ERROR")
  file.create(flag)
  expect_equal(unname(task_retry(id)), "ERROR")
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), "worked")
  expect_equal(task_info(id)$attempts$outcome, c("ERROR", "RETRY", "COMPLETE"))
})
