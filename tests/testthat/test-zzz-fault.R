# Faults injected for real: SIGKILL of busy workers, tasks that kill their
# worker, timeouts, cancellation, server restarts and FLUSHALL. Slow, so last.

busy_worker <- function(ctl, task) {
  found <- NULL
  ok <- wait_until(function() {
    info <- worker_info(controller = ctl)
    hit <- Filter(function(i) identical(i$task, task), info)
    if (length(hit)) found <<- names(hit)[[1]]
    length(hit) > 0
  }, timeout = 20)
  expect_true(ok)
  found
}

kill_worker <- function(id, ctl) {
  tools::pskill(worker_pid(id, ctl), tools::SIGKILL)
}

# Worker w1 busy with task `id` (sleeps, then returns its worker's pid),
# and an idle worker w2 ready to take over.
busy_and_spare <- function(ctl, seconds = 1) {
  w1 <- worker_spawn(1)$id
  id <- task_create_expr({
    Sys.sleep(seconds)
    Sys.getpid()
  })
  expect_equal(busy_worker(ctl, id), w1)
  list(w1 = w1, w2 = worker_spawn(1)$id, id = id)
}

test_that("a task whose worker is killed runs again elsewhere, with one result", {
  ctl <- test_controller()
  p <- busy_and_spare(ctl, 1.5)
  w1 <- p$w1
  w2 <- p$w2
  id <- p$id
  kill_worker(w1, ctl)
  # this session started it and sees how it ended
  expect_warning(task_wait(id, timeout = 30), "was lost \\(its R process was killed by signal 9, SIGKILL\\)")
  expect_equal(task_result(id), worker_pid(w2, ctl))
  info <- task_info(id)
  expect_equal(info$attempt, 2L)
  expect_equal(info$attempts$outcome, c("LOST", "COMPLETE"))
  expect_equal(info$attempts$worker, c(w1, w2))
  expect_equal(worker_status(w1, controller = ctl)[[1]], "LOST")
  expect_equal(worker_detect_lost()$worker, character())
  log <- worker_log_tail(w1, controller = ctl)
  expect_equal(log$event, c("started", "lost"))
  expect_match(log$detail[[2]], "1 task(s) requeued", fixed = TRUE)
})

test_that("a task that kills its worker every time ends DIED and the queue moves on", {
  ctl <- test_controller()
  worker_spawn(3)
  bad <- task_create_expr(tools::pskill(Sys.getpid(), tools::SIGKILL), max_attempts = 2)
  task_wait(bad, timeout = 30) |> suppressWarnings()
  expect_equal(unname(task_status(bad)), "DIED")
  expect_s3_class(task_result(bad), "redq_task_died")
  expect_equal(task_info(bad)$attempts$outcome, c("LOST", "LOST"))
  ok <- task_create_expr("still serving")
  task_wait(ok, timeout = 30)
  expect_equal(task_result(ok), "still serving")
})

test_that("timeout ends a long task as TIMEOUT and the worker serves the next", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  t0 <- Sys.time()
  id <- task_create_expr(Sys.sleep(30), timeout = 1)
  task_wait(id, timeout = 20)
  elapsed <- as.numeric(Sys.time() - t0, units = "secs")
  expect_equal(unname(task_status(id)), "TIMEOUT")
  expect_lt(elapsed, 5)
  expect_s3_class(task_result(id), "redq_task_timeout")
  nxt <- task_create_expr(Sys.getpid())
  task_wait(nxt, timeout = 20)
  expect_equal(task_result(nxt), worker_pid(w, ctl))
  expect_equal(task_info(nxt)$worker, w)
})

test_that("task_cancel interrupts a running task and the worker goes on", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  id <- task_create_expr(Sys.sleep(30))
  busy_worker(ctl, id)
  t0 <- Sys.time()
  expect_equal(unname(task_cancel(id)), "RUNNING")
  task_wait(id, timeout = 10)
  expect_equal(unname(task_status(id)), "CANCELLED")
  nxt <- task_create_expr(1 + 2)
  task_wait(nxt, timeout = 10)
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 5)
  expect_equal(task_result(nxt), 3)
  expect_equal(task_info(nxt)$worker, w)
})

test_that("a task stuck where interrupts cannot reach ends TIMEOUT and its worker exits", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  # interrupts are held off for ever: only ending the process stops it
  id <- task_create_expr(suspendInterrupts(while (TRUE) NULL), timeout = 0.5)
  task_wait(id, timeout = 20)
  expect_equal(unname(task_status(id)), "TIMEOUT")
  proc <- redq:::redq_env$processes[[w]]
  expect_true(wait_until(function() !proc$is_alive(), timeout = 10))
  expect_equal(worker_status(w, controller = ctl)[[1]], "EXITED")
  expect_equal(worker_info(w, controller = ctl)[[1]]$how, "STUCK")
})

test_that("worker_stop kill sends the task back; graceful lets it finish", {
  ctl <- test_controller()
  p <- busy_and_spare(ctl)
  w1 <- p$w1
  w2 <- p$w2
  id <- p$id
  worker_stop(w1, type = "kill")
  task_wait(id, timeout = 30)
  expect_equal(task_result(id), worker_pid(w2, ctl))
  expect_equal(worker_info(w1, controller = ctl)[[1]]$how, "KILLED")

  id2 <- task_create_expr({
    Sys.sleep(1)
    "finished"
  })
  busy_worker(ctl, id2)
  worker_stop(w2, type = "graceful", wait = 10)
  expect_equal(unname(task_status(id2)), "COMPLETE")
  expect_equal(task_result(id2), "finished")
  expect_equal(worker_list(ctl), character())
  proc <- redq:::redq_env$processes[[w2]]
  expect_true(wait_until(function() !proc$is_alive(), timeout = 5))
  expect_equal(worker_info(w2, controller = ctl)[[1]]$exit_status, 0L)
})

test_that("with no controller waiting, the remaining worker recovers a killed worker's task", {
  ctl <- test_controller()
  p <- busy_and_spare(ctl)
  id <- p$id
  kill_worker(p$w1, ctl)
  # task_status does not reap; only the surviving worker's side thread can
  expect_true(wait_until(function() task_status(id) == "COMPLETE", timeout = 30))
  expect_equal(task_result(id), worker_pid(p$w2, ctl))
})

test_that("the doRedis fault example returns the right answer quickly", {
  # Workers that quit() in the first 2 s. This session sees each process
  # end and runs its task again at once, on another worker (the ended ones
  # are replaced), so a task may be started several times in that window:
  # doRedis, which has no limit, retries for ever; here the loop allows
  # ten attempts.
  withr::local_options(redq.lease = 3)
  ctl <- test_controller()
  registerDoRedis("RJOBS", url = test_url(), namespace = ctl$namespace, ftinterval = 1, chunkSize = 2)
  withr::defer({
    setChunkSize(NULL)
    setFtinterval(30)
  })
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(n = 4, queue = "RJOBS", url = test_url(), namespace = ctl$namespace)
  start <- Sys.time()
  x <- suppressWarnings(foreach(j = 1:4, .combine = sum, .options.redis = list(max_attempts = 10)) %dopar% {
    if (difftime(Sys.time(), start) < 2) quit(save = "no") else j
  })
  expect_equal(x, 10)
  expect_lt(as.numeric(Sys.time() - start, units = "secs"), 10)
  removeQueue("RJOBS")
})

# The loop has submitted its tasks and the workers are through some of them.
loop_under_way <- function(ctl) {
  n <- queue_length("jobs", controller = ctl)
  n > 0 && n < 180
}

# A foreach loop in a separate R process, on a server of its own that the
# test then restarts or flushes.
loop_in_background <- function(url, ns) {
  callr::r_bg(function(url, ns) {
    library(redq)
    options(redq.heartbeat = 0.2, redq.lease = 1, redq.reap_interval = 0.2)
    registerDoRedis("jobs", url = url, namespace = ns, ftinterval = 1)
    foreach(i = 1:200, .combine = c, .options.redis = list(chunkSize = 1)) %dopar% {
      Sys.sleep(0.02)
      i * 2
    }
  }, list(url, ns), supervise = TRUE)
}

# A server of the test's own, two workers on it, and a 200-iteration loop
# running in another R process; `fault(srv, ctl)` strikes once the loop is
# under way (and may return a new server to stop at the end), and the loop
# must still return the right answer. Everything lives until the test ends.
# The same with bplapply(): a manager sharing the workers' jobname.
bplapply_in_background <- function(url, ns) {
  callr::r_bg(function(url, ns) {
    library(redq)
    options(redq.heartbeat = 0.2, redq.lease = 1, redq.reap_interval = 0.2,
            redq.check_interval = 1)
    p <- RedisParam(jobname = "jobs", is.worker = FALSE, tasks = 200, namespace = ns, url = url)
    unlist(bplapply(1:200, function(i) {
      Sys.sleep(0.02)
      i * 2
    }, BPPARAM = p))
  }, list(url, ns), supervise = TRUE)
}

loop_survives <- function(ns, fault, envir = parent.frame(), run = loop_in_background) {
  srv <- redq:::server_launch()
  withr::defer(redq:::server_kill(srv), envir = envir)
  ctl <- redq_controller(ns, url = srv$url, default = FALSE)
  worker_spawn(2, queue = "jobs", controller = ctl)
  withr::defer(worker_stop(type = "kill", wait = 1, controller = ctl) |> try(silent = TRUE),
               envir = envir)
  bg <- run(srv$url, ns)
  expect_true(wait_until(function() loop_under_way(ctl), timeout = 30))
  new_server <- fault(srv, ctl)
  if (is.environment(new_server)) withr::defer(redq:::server_kill(new_server), envir = envir)
  bg$wait(60000)
  expect_false(bg$is_alive())
  expect_equal(bg$get_result(), (1:200) * 2)
  ctl
}

test_that("a foreach loop survives a redis-server restart", {
  ctl <- loop_survives("restart", function(srv, ctl) {
    srv$process$kill()
    Sys.sleep(0.5)
    redq:::server_launch(port = srv$port, password = srv$password)
  })
  # each worker's event log tells what happened to it (read by a new
  # session: ctl's connection went with the old server)
  ctl <- redq_controller(ctl$namespace, url = ctl$url, default = FALSE)
  log <- worker_log_tail(controller = ctl, n = 20)
  expect_setequal(unique(log$worker_id[log$event == "reconnected"]), worker_list(ctl))
  expect_setequal(unique(log$worker_id[log$event == "registered"]), worker_list(ctl))
  expect_match(log$detail[log$event == "reconnected"], "connection was lost")
})

test_that("a foreach loop begun while its server restarts waits for the server", {
  srv <- redq:::server_launch()
  withr::defer(redq:::server_kill(srv))
  ctl <- redq_controller("away", url = srv$url, default = FALSE)
  worker_spawn(2, queue = "jobs", controller = ctl)
  withr::defer(try(worker_stop(type = "kill", wait = 1, controller = ctl), silent = TRUE))
  ready <- tempfile()
  go <- tempfile()
  bg <- callr::r_bg(function(url, ready, go) {
    library(redq)
    options(redq.heartbeat = 0.2, redq.lease = 1, redq.reap_interval = 0.2)
    registerDoRedis("jobs", url = url, namespace = "away", ftinterval = 1)
    file.create(ready)
    while (!file.exists(go)) Sys.sleep(0.02)
    foreach(i = 1:50, .combine = c) %dopar% (i * 2)
  }, list(srv$url, ready, go), supervise = TRUE)
  withr::defer(bg$kill())
  expect_true(wait_until(function() file.exists(ready), timeout = 30))
  # the loop begins while the server is down; it is back 1.5 s later
  srv$process$kill()
  srv$process <- processx::process$new("sh", c("-c", paste(
    "sleep 1.5; exec", shQuote(srv$bin), paste(shQuote(srv$argv), collapse = " "))),
    cleanup = TRUE, supervise = TRUE)
  file.create(go)
  bg$wait(60000)
  expect_equal(bg$get_result(), (1:50) * 2)
})

test_that("a foreach loop survives FLUSHALL", {
  ctl <- loop_survives("flush", function(srv, ctl) {
    redq:::redis_command("FLUSHALL", controller = ctl)
    NULL
  })
  # the workers registered again, and say so in their event logs
  expect_true(wait_until(function() length(worker_list(ctl)) == 2, timeout = 10))
  log <- worker_log_tail(controller = ctl)
  expect_setequal(log$worker_id[log$event == "registered"], worker_list(ctl))
})

test_that("bplapply survives FLUSHALL and a redis-server restart", {
  ctl <- loop_survives("bioc-flush", function(srv, ctl) {
    redq:::redis_command("FLUSHALL", controller = ctl)
    NULL
  }, run = bplapply_in_background)
  expect_true(wait_until(function() length(worker_list(ctl)) == 2, timeout = 10))
  loop_survives("bioc-restart", function(srv, ctl) {
    srv$process$kill()
    Sys.sleep(0.5)
    redq:::server_launch(port = srv$port, password = srv$password)
  }, run = bplapply_in_background)
})

test_that("task_wait reports tasks the server lost instead of hanging", {
  ctl <- test_controller()
  id <- task_create_expr(1)
  redq:::redis_command(c("DEL", sprintf("redq:{%s}:task:%s", ctl$namespace, id)))
  st <- task_wait(id, timeout = 5)
  expect_equal(unname(st), "MISSING")
  expect_error(task_result(id), class = "redq_error_not_found")
})
