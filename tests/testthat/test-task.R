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
  w <- worker_spawn(1)$id
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
  w <- worker_spawn(1)$id
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

test_that("task_list is oldest first and a timed-out wait says what is pending and running", {
  ctl <- test_controller()
  ids <- vapply(1:5, function(i) task_create_expr(i), "")
  expect_equal(task_list(), ids)
  worker_spawn(1)
  long <- task_create_expr(Sys.sleep(30))
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  later <- task_create_bulk_expr(x, data.frame(x = 1:3))
  err <- tryCatch(task_wait(c(long, later), timeout = 0.3), error = identity)
  expect_s3_class(err, "redq_error_timeout")
  expect_match(conditionMessage(err), "4 of 4 tasks had not ended")
  expect_match(conditionMessage(err), "3 pending")
  expect_match(conditionMessage(err), "1 running")
  expect_match(conditionMessage(err), "task_cancel()", fixed = TRUE)
  task_cancel(c(long, later))
  expect_equal(unname(task_wait(c(long, later), timeout = 10)), rep("CANCELLED", 4))
})

test_that("seed = gives each task its own stream, whichever worker runs it", {
  ctl <- test_controller()
  draw <- function(i) stats::runif(2)
  ids1 <- task_create_bulk_call(draw, data.frame(i = 1:6), seed = 42)
  one <- task_create_call(draw, list(i = 1), seed = 42)
  expr <- task_create_expr(stats::rnorm(1), seed = 42)
  worker_spawn(1)
  task_wait(c(ids1, one, expr))
  ids2 <- task_create_bulk_call(draw, data.frame(i = 1:6), seed = 42)
  worker_spawn(1)
  task_wait(ids2)
  expect_identical(unname(task_results(ids1)), unname(task_results(ids2)))
  # task i runs with the i-th L'Ecuyer-CMRG stream after set.seed(42)
  withr::local_seed(42, .rng_kind = "L'Ecuyer-CMRG")
  s <- .Random.seed
  want <- list()
  for (i in 1:6) {
    s <- parallel::nextRNGStream(s)
    assign(".Random.seed", s, envir = globalenv())
    want[[i]] <- stats::runif(2)
  }
  expect_identical(unname(task_results(ids1)), want)
  expect_identical(task_result(one), want[[1]])
  expect_error(task_create_expr(1, seed = "a"), class = "redq_error_argument")
  expect_error(task_create_bulk_call(draw, data.frame(i = 1), seed = NA), class = "redq_error_argument")
})

test_that("rrq's questions: task_exists, task_position, task_times, task_overview, queue_tasks", {
  ctl <- test_controller()
  ids <- task_create_bulk_call(function(x) x, list(1, 2, 3), queue = "later")
  expect_equal(task_exists(c(ids, "nope")), c(TRUE, TRUE, TRUE, FALSE))
  expect_equal(unname(task_position(ids)), 1:3)
  expect_equal(queue_tasks("later"), ids)
  ov <- task_overview()
  expect_equal(ov[["PENDING"]], 3L)
  expect_equal(sum(ov), 3L)
  worker_spawn(1, queue = "later")
  task_wait(ids)
  expect_equal(unname(task_position(ids)), c(0L, 0L, 0L))
  tt <- task_times(ids)
  expect_named(tt, c("id", "queue", "worker", "attempt", "created", "started", "finished", "status"))
  expect_equal(tt$queue, rep("later", 3))
  expect_equal(tt$status, rep("COMPLETE", 3))
  expect_true(all(tt$created <= tt$started & tt$started <= tt$finished))
  expect_equal(task_list(status = "COMPLETE"), ids)
  expect_length(task_list(status = c("ERROR", "DIED")), 0)
  expect_error(task_list(status = "DONE"), class = "redq_error_argument")
})

test_that("worker_wait waits for workers started elsewhere; redq_destroy leaves nothing", {
  ctl <- test_controller()
  expect_error(worker_wait(1, timeout = 0.2), class = "redq_error_timeout")
  bg <- callr::r_bg(function(url, ns) {
    Sys.sleep(0.5)
    redq::worker_main(namespace = ns, url = url, queue = "w")
  }, list(test_url(), ctl$namespace))
  withr::defer(if (bg$is_alive()) bg$kill())
  ids <- worker_wait(1, queue = "w", timeout = 20)
  expect_length(ids, 1)
  task_create_expr(1, queue = "w")
  value_set("v", 1)
  expect_gt(length(namespace_keys(ctl)), 0)
  redq_destroy()
  expect_length(namespace_keys(ctl), 0)
  expect_true(wait_until(function() !bg$is_alive(), timeout = 10))
})

test_that("task_progress_update from a running task is read by another session", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr({
    task_progress_update(0.5)
    Sys.sleep(3)
    task_progress_update(list(done = 1, note = "finished"))
  })
  seen <- callr::r(function(url, ns, id) {
    ctl <- redq::redq_controller(ns, url = url)
    deadline <- Sys.time() + 10
    repeat {
      p <- redq::task_progress(id)[[1]]
      if (!is.null(p) || Sys.time() > deadline) return(list(p, redq::task_status(id)[[1]]))
      Sys.sleep(0.05)
    }
  }, list(test_url(), ctl$namespace, id))
  expect_equal(seen[[1]], 0.5)
  expect_equal(seen[[2]], "RUNNING")
  task_wait(id)
  expect_equal(task_progress(id)[[id]], list(done = 1, note = "finished"))
  expect_false(task_progress_update(1)) # not on a worker: nothing recorded
})

test_that("plot(task_times()) draws a timeline that marks a lost worker and the retry", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  ws <- worker_spawn(4)$id
  ids <- task_create_bulk_call(function(i, dir) {
    if (i == 30 && !file.exists(file.path(dir, "killed"))) {
      file.create(file.path(dir, "killed"))
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    Sys.sleep(0.01)
    i
  }, lapply(1:200, function(i) list(i = i)), args = list(dir = dir))
  suppressWarnings(task_wait(ids, timeout = 60))
  tt <- task_times(ids)
  expect_equal(nrow(tt), 200)
  expect_true(all(tt$status == "COMPLETE"))
  a <- attr(tt, "attempts")
  expect_equal(nrow(a), 1)
  expect_equal(a$outcome, "LOST")
  expect_false(a$worker == tt$worker[tt$id == a$id])
  png <- file.path(dir, "timeline.png")
  grDevices::png(png, width = 900, height = 400)
  plot(tt)
  grDevices::dev.off()
  expect_gt(file.size(png), 5000)
  file.copy(png, file.path(tempdir(), "redq-timeline.png"), overwrite = TRUE)
})

test_that("task_data, task_preceeding and deferred_list answer as rrq's do", {
  ctl <- test_controller()
  k <- 3
  a <- task_create_expr(k + 1, queue = "later")
  b <- task_create_call(function(x, y) x + y, list(1, 2), queue = "later")
  c <- task_create_expr(2, depends_on = a, queue = "later")
  expect_equal(task_data(a)$expr, quote(k + 1))
  expect_equal(task_data(a)$vars, list(k = 3))
  expect_equal(task_data(b)$args, list(1, 2))
  expect_equal(task_preceeding(b), a)
  expect_equal(task_preceeding(a), character())
  d <- deferred_list()
  expect_named(d, c)
  expect_true(a %in% unlist(d[[c]]))
  worker_spawn(1, queue = "later")
  task_wait(c(a, b, c))
  expect_null(task_data(a)) # completed: its payload is gone
  expect_length(deferred_list(), 0)
})

test_that("a small result comes with the task's completion notice; a wait then fetch asks the server once", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  calls <- function(cmd) {
    info <- redq:::redis_command(c("INFO", "commandstats"), controller = ctl)
    m <- regmatches(info, regexpr(sprintf("cmdstat_%s:calls=[0-9]+", cmd), info))
    if (length(m)) as.numeric(sub(".*=", "", m)) else 0
  }
  ids <- task_create_bulk_call(function(i) if (i == 2) stop("no") else i * 10, as.list(1:3))
  big <- task_create_expr(seq_len(1000) + 0)
  task_wait(c(ids, big), timeout = 20)
  worker_stop(w, wait = 10) # nothing else talks to the server
  before <- calls("hmget")
  expect_equal(task_result(ids[[1]]), 10)
  expect_equal(unname(task_results(ids[c(3, 1)])), list(30, 10))
  expect_equal(calls("hmget"), before) # first read served by what the wait received
  # not small, or not completed: read from the server
  expect_equal(task_result(big), seq_len(1000) + 0)
  expect_s3_class(task_result(ids[[2]]), "redq_task_error")
  expect_gt(calls("hmget"), before)
  # a task deleted through this controller is gone, whatever it received
  worker_spawn(1)
  id <- task_create_expr(7)
  task_wait(id, timeout = 20)
  task_delete(id)
  expect_error(task_result(id), class = "redq_error_not_found")
})

test_that("an idle worker takes the next task after the server lost its scripts", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  id <- task_create_expr(1)
  task_wait(id, timeout = 20)
  Sys.sleep(0.3) # back in its blocking wait for work
  redq:::redis_command(c("SCRIPT", "FLUSH"), controller = ctl)
  id <- task_create_expr(2)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 2)
  info <- task_info(id)
  expect_equal(info$worker, w)
  expect_equal(info$attempt, 1)
  expect_equal(unname(worker_status(w)), "IDLE")
})
