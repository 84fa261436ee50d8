test_that("worker_spawn registers workers that report their info", {
  ctl <- test_controller()
  ids <- worker_spawn(2)$id
  expect_length(ids, 2)
  expect_setequal(worker_list(), ids)
  st <- worker_status(ids)
  expect_true(all(st %in% c("IDLE", "BUSY")))
  info <- worker_info(ids)
  expect_equal(info[[1]]$host, Sys.info()[["nodename"]])
  expect_true(info[[1]]$alive)
  expect_equal(info[[1]]$queues, "default")
  expect_equal(info[[1]]$r_version, as.character(getRversion()))
})

test_that("worker_spawn's handle stops, kills, and reads the logs of its workers", {
  ctl <- test_controller()
  w <- worker_spawn(2)
  expect_s3_class(w, "redq_workers")
  expect_setequal(worker_list(), w$id)
  expect_equal(unname(w$is_alive()), c(TRUE, TRUE))
  expect_output(print(w), "2 started, 2 running")
  # the handle stands for its ids wherever ids are taken
  expect_equal(names(worker_status(w)), w$id)
  id <- task_create_expr({
    cat("hello from the task\n")
    1
  })
  task_wait(id, timeout = 20)
  runner <- task_info(id)$worker
  expect_true(wait_until(function() any(grepl("hello from the task", w$logs(runner))), timeout = 5))
  # a worker's temporary directory lies inside the session's, so that one
  # killed (which cannot remove it) is removed with the session's
  tmp <- task_create_expr(tempdir())
  task_wait(tmp, timeout = 20)
  expect_true(startsWith(task_result(tmp), file.path(tempdir(), "redq-workers")))
  expect_true(dir.exists(task_result(tmp)))
  expect_error(w$logs("somebody-else"), class = "redq_error_argument")
  w$kill(w$id[1])
  expect_true(wait_until(function() !w$is_alive(w$id[1]), timeout = 5))
  expect_true(w$is_alive(w$id[2]))
  w$stop(w$id[2])
  expect_equal(unname(worker_status(w$id[2])), "EXITED")
  expect_true(wait_until(function() !any(w$is_alive()), timeout = 5))
  expect_output(print(w), "0 running")
})

test_that("worker_log_tail reads each worker's events from any session", {
  ctl <- test_controller()
  quiet <- worker_spawn(1)
  logged <- worker_spawn(1, task_log = TRUE, queue = "logged")
  a <- task_create_expr(1)
  b <- task_create_expr(stop("no"), queue = "logged")
  task_wait(c(a, b), timeout = 20)
  quiet$stop()
  logged$stop()
  log <- worker_log_tail(c(quiet$id, logged$id), n = 10)
  expect_named(log, c("worker_id", "time", "event", "detail"))
  expect_s3_class(log$time, "POSIXct")
  # a worker without task logs logs only its own life; one with them, each task too
  expect_equal(log$event[log$worker_id == quiet$id], c("started", "stopped"))
  expect_equal(log$event[log$worker_id == logged$id], c("started", "began", "ended", "stopped"))
  expect_equal(log$detail[log$worker_id == logged$id][2], b)
  expect_match(log$detail[log$worker_id == logged$id][3], paste(b, "after .* s: an error"))
  expect_match(log$detail[log$worker_id == quiet$id][1], "serving default")
  # read from another R process; n takes the newest
  other <- callr::r(function(url, ns, id) {
    library(redq)
    worker_log_tail(id, n = 2, controller = redq_controller(ns, url = url))$event
  }, list(test_url(), ctl$namespace, logged$id))
  expect_equal(other, c("ended", "stopped"))
  expect_error(worker_log_tail(n = -1), class = "redq_error_argument")
})

test_that("worker_info and worker_status cope with no workers", {
  ctl <- test_controller()
  expect_equal(worker_list(), character())
  expect_equal(worker_info(), setNames(list(), character()))
  expect_equal(unname(worker_status("nobody")), "MISSING")
})

test_that("a worker serves its queues in priority order", {
  ctl <- test_controller()
  low <- task_create_expr("low", queue = "low")
  high <- task_create_expr("high", queue = "high")
  w <- worker_spawn(1, queue = c("high", "low"))$id
  task_wait(c(low, high), timeout = 20)
  expect_lt(task_info(high)$started, task_info(low)$started + 0.001)
  expect_setequal(queue_list(), c("high", "low"))
})

test_that("a graceful stop unregisters the worker and ends its process", {
  ctl <- test_controller()
  id <- worker_spawn(1)$id
  worker_stop(id)
  expect_equal(worker_list(), character())
  expect_equal(unname(worker_status(id)), "EXITED")
  proc <- redq:::redq_env$processes[[id]]
  expect_true(wait_until(function() !proc$is_alive(), timeout = 5))
})

test_that("max_tasks ends a worker after that many tasks", {
  ctl <- test_controller()
  id <- worker_spawn(1, max_tasks = 2)$id
  ids <- task_create_bulk_expr(x, data.frame(x = 1:3))
  expect_true(wait_until(function() sum(task_status(ids) == "COMPLETE") == 2, timeout = 20))
  expect_true(wait_until(function() length(worker_list()) == 0, timeout = 10))
  expect_equal(unname(task_status(ids[3])), "PENDING")
})

test_that("the launcher script serves tasks from a shell, password via REDIS_URL", {
  ctl <- test_controller()
  script <- worker_script(tempdir())
  withr::defer(unlink(script))
  expect_true(file.exists(script))
  help <- processx::run(script, "--help", error_on_status = FALSE,
                        env = c("current", R_LIBS = paste(.libPaths(), collapse = ":")))
  expect_match(help$stdout, "usage: redq-worker")
  procs <- lapply(1:2, function(i) {
    processx::process$new(script, c("--url-from-env", "--queue", "shell", "--name",
                                    paste0("shell-", i), "--heartbeat", "0.2", "--lease", "1",
                                    ctl$namespace),
                          env = c("current", REDIS_URL = test_url(),
                                  R_LIBS = paste(.libPaths(), collapse = ":")),
                          supervise = TRUE, cleanup = TRUE)
  })
  withr::defer(for (p in procs) p$kill())
  expect_true(wait_until(function() length(worker_list()) == 2, timeout = 20))
  ids <- task_create_bulk_call(function(x) Sys.getpid(), as.list(1:20), queue = "shell")
  task_wait(ids, timeout = 20)
  pids <- unique(unlist(task_results(ids)))
  expect_true(all(pids %in% vapply(procs, function(p) p$get_pid(), 1L)))
  expect_equal(sort(worker_list()), c("shell-1", "shell-2"))
  # the command line shows no server address or password
  expect_false(any(grepl("redis://", procs[[1]]$get_cmdline())))
  worker_stop()
})

test_that("a second worker with a live worker's name is refused", {
  ctl <- test_controller()
  id <- worker_spawn(1)$id
  out <- callr::r(function(url, ns, id) {
    library(redq)
    tryCatch(worker_main(namespace = ns, url = url, name = id), error = function(e) class(e))
  }, list(test_url(), ctl$namespace, id))
  expect_true("redq_error_argument" %in% out)
})

list2 <- function(name, value) stats::setNames(list(value), name)

test_that("messages: PING answered by every idle worker within 100 ms, EVAL, PAUSE/RESUME, TIMEOUT_SET", {
  ctl <- test_controller()
  ids <- worker_spawn(2)$id
  pids <- vapply(ids, worker_pid, 1L, ctl = ctl)
  # both answer once (started), then, idle and waiting for work, within 100 ms
  expect_length(worker_message_send_and_wait("PING", timeout = 30), 2)
  Sys.sleep(0.5)
  t0 <- Sys.time()
  r <- worker_message_send_and_wait("PING", timeout = 5)
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 0.1)
  expect_identical(r, stats::setNames(list("PONG", "PONG"), ids))
  expect_equal(worker_message_send_and_wait("ECHO", "hello", worker_ids = ids[1]), list2(ids[1], "hello"))
  got <- worker_message_send_and_wait("EVAL", quote(Sys.getpid()))
  expect_setequal(unname(unlist(got)), unname(pids))
  expect_equal(worker_message_send_and_wait("EVAL", "1 + 1", worker_ids = ids[1])[[1]], 2)
  expect_s3_class(worker_message_send_and_wait("EVAL", "stop('no')", worker_ids = ids[1])[[1]], "error")
  info <- worker_message_send_and_wait("INFO", worker_ids = ids[2])[[1]]
  expect_equal(info$pid, pids[[2]])
  # PAUSE: no task is taken until RESUME; PING is still answered
  worker_message_send_and_wait("PAUSE")
  id <- task_create_expr(6 * 7)
  Sys.sleep(1)
  expect_equal(unname(task_status(id)), "PENDING")
  expect_length(unlist(worker_message_send_and_wait("PING", timeout = 2)), 2)
  worker_message_send_and_wait("RESUME")
  task_wait(id, timeout = 10)
  expect_equal(task_result(id), 42)
  # TIMEOUT_SET: the worker leaves after that long idle
  expect_equal(worker_message_send_and_wait("TIMEOUT_GET", worker_ids = ids[1])[[1]], Inf)
  worker_message_send_and_wait("TIMEOUT_SET", 1, worker_ids = ids[1])
  expect_equal(worker_message_send_and_wait("TIMEOUT_GET", worker_ids = ids[1])[[1]], 1)
  expect_true(wait_until(function() !ids[1] %in% worker_list(ctl), timeout = 5))
  expect_true(ids[2] %in% worker_list(ctl))
  expect_error(worker_message_send("DANCE"), class = "redq_error_argument")
})

test_that("worker_envir_set reaches running workers and workers started later", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  src <- file.path(dir, "helpers.R")
  writeLines("helper <- function(x) x * 1000", src)
  first <- worker_spawn(1)$id
  worker_envir_set(packages = "stats4", sources = src,
                   init = function() assign("initialised", TRUE, envir = globalenv()))
  later <- worker_spawn(1)$id
  got <- worker_message_send_and_wait("EVAL", quote(list(exists("mle"), helper(2), initialised)))
  expect_named(got, c(first, later), ignore.order = TRUE)
  for (g in got) expect_equal(g, list(TRUE, 2000, TRUE))
  # and tasks see them
  ids <- task_create_bulk_expr(helper(x) + is.function(mle), data.frame(x = 1:4))
  task_wait(ids)
  expect_equal(unname(unlist(task_results(ids))), (1:4) * 1000 + 1)
  expect_error(worker_envir_set(sources = file.path(dir, "nope.R")), class = "redq_error_argument")
  expect_equal(worker_envir_get()$packages, "stats4")
})

test_that("named worker configurations: worker_spawn(config =) and the launcher's --config", {
  ctl <- test_controller()
  worker_config_save("one-shot", queue = "cfg", max_tasks = 1, heartbeat = 0.2, lease = 1)
  expect_equal(worker_config_list(), "one-shot")
  expect_equal(worker_config_read("one-shot")$queue, "cfg")
  expect_error(worker_config_read("nope"), class = "redq_error_not_found")
  expect_error(worker_config_save("one-shot", overwrite = FALSE), class = "redq_error_argument")
  expect_error(worker_config_save("bad", lease = -1), class = "redq_error_argument")
  id <- worker_spawn(config = "one-shot")$id
  expect_equal(worker_info(id)[[id]]$queues, "cfg")
  t1 <- task_create_expr(1, queue = "cfg")
  task_wait(t1, timeout = 10)
  # max_tasks = 1 from the configuration: the worker has left
  expect_true(wait_until(function() !id %in% worker_list(ctl), timeout = 5))
  script <- worker_script(tempdir())
  withr::defer(unlink(script))
  p <- processx::process$new(script, c("--config", "one-shot", ctl$namespace),
                             env = c("current", REDIS_URL = test_url(),
                                     R_LIBS = paste(.libPaths(), collapse = ":")),
                             supervise = TRUE, cleanup = TRUE)
  withr::defer(p$kill())
  t2 <- task_create_expr(Sys.getpid(), queue = "cfg")
  task_wait(t2, timeout = 20)
  expect_equal(task_result(t2), p$get_pid())
  expect_true(wait_until(function() !p$is_alive(), timeout = 10))
})

test_that("worker_spawn(idle_timeout =): a worker leaves after that long without a task", {
  ctl <- test_controller()
  id <- worker_spawn(1, idle_timeout = 1)$id
  expect_true(id %in% worker_list(ctl))
  expect_true(wait_until(function() !id %in% worker_list(ctl), timeout = 6))
  expect_error(worker_spawn(1, idle_timeout = -1), class = "redq_error_argument")
})

test_that("task_log: what a task prints on a launcher's worker, read from this session", {
  ctl <- test_controller()
  script <- worker_script(tempdir())
  withr::defer(unlink(script))
  elsewhere <- withr::local_tempdir()
  p <- processx::process$new(script, c("--task-log", "--queue", "logged", ctl$namespace),
                             wd = elsewhere,
                             env = c("current", REDIS_URL = test_url(),
                                     R_LIBS = paste(.libPaths(), collapse = ":")),
                             supervise = TRUE, cleanup = TRUE)
  withr::defer(p$kill())
  id <- task_create_expr({
    cat("printed by cat\n")
    message("a message")
    warning("a warning")
    6 * 7
  }, queue = "logged")
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 42)
  log <- task_log(id)[[id]]
  expect_match(log, "printed by cat")
  expect_match(log, "a message")
  expect_match(log, "a warning")
  # a worker that does not keep logs keeps none
  worker_spawn(1, queue = "plain")
  id2 <- task_create_expr(cat("not kept\n"), queue = "plain")
  task_wait(id2, timeout = 20)
  expect_true(is.na(task_log(id2)[[id2]]))
})

test_that("a session's workers leave when it is killed, and closeAllConnections() does not stop spawning", {
  ctl <- test_controller()
  # the session that starts them is killed with SIGKILL: nothing of it runs
  ids_file <- tempfile(fileext = ".ids")
  withr::defer(unlink(ids_file))
  bg <- callr::r_bg(function(url, ns, ids_file) {
    library(redq)
    redq_controller(ns, url = url, default = TRUE)
    w <- worker_spawn(2, heartbeat = 0.5)
    # as many scripts and tests do: the workers' start must not depend on
    # a connection of this session
    closeAllConnections()
    w2 <- worker_spawn(1, heartbeat = 0.5)
    writeLines(c(w$id, w2$id), ids_file)
    Sys.sleep(600)
  }, list(test_url(), ctl$namespace, ids_file), supervise = TRUE)
  withr::defer(bg$kill())
  expect_true(wait_until(function() file.exists(ids_file) && length(readLines(ids_file)) == 3,
                         timeout = 30))
  ids <- readLines(ids_file)
  expect_setequal(worker_list(ctl), ids)
  pids <- vapply(worker_info(ids, controller = ctl), function(i) as.integer(i$pid), 1L)
  bg$kill()
  # within a beat or two of losing their parent, they leave as if killed
  expect_true(wait_until(function() length(worker_list(ctl)) == 0L, timeout = 10))
  expect_equal(unname(worker_status(ids, controller = ctl)), rep("EXITED", 3))
  expect_true(wait_until(function() !any(vapply(pids, function(p) {
    isTRUE(tools::pskill(p, 0L))
  }, logical(1))), timeout = 10))
})
