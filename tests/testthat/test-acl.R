# The least-privilege user shipped in inst/acl/redq.acl, on a server of the
# test's own: a foreach loop, the task API (large values and shared
# arguments included), a fault and the dashboard's snapshot, all as that
# user. A command redq sends that the file does not allow fails here.

acl_server <- function(envir = parent.frame()) {
  srv <- redq:::server_launch()
  withr::defer(redq:::server_kill(srv), envir = envir)
  line <- grep("^user redq ", readLines(system.file("acl", "redq.acl", package = "redq",
                                                    mustWork = TRUE)), value = TRUE)
  expect_length(line, 1)
  password <- redq:::secure_token(16)
  rules <- strsplit(sub("REDQ-PASSWORD", password, line, fixed = TRUE), " ")[[1]][-(1:2)]
  admin <- redq_controller("admin", url = srv$url, default = FALSE)
  redq:::redis_command(c("ACL", "SETUSER", "redq", "reset", rules), controller = admin)
  sub("redis://:[^@]*@", sprintf("redis://redq:%s@", password), srv$url)
}

test_that("the shipped ACL user runs foreach loops, tasks and a fault test", {
  url <- acl_server()
  ctl <- redq_controller("acl", url = url, default = FALSE)
  withr::defer(worker_stop(type = "kill", wait = 2, controller = ctl))
  # it is least privilege: no key outside redq's, no admin command
  expect_error(redq:::redis_command(c("SET", "elsewhere", "1"), controller = ctl), "NOPERM|permission")
  expect_error(redq:::redis_command(c("FLUSHALL"), controller = ctl), "NOPERM|permission")

  registerDoRedis("jobs", url = url, namespace = "acl")
  # the backend, and so doRedis' data functions, must not outlive this
  # test's server
  withr::defer({
    foreach::registerDoSEQ()
    rm("foreach", envir = redq:::redq_env)
  })
  startLocalWorkers(2, queue = "jobs", url = url, namespace = "acl", linger = 0)
  set.seed(1)
  r <- foreach(i = 1:40, .combine = c, .options.redis = list(chunkSize = 3)) %dopar% (i * 2)
  expect_equal(r, (1:40) * 2)
  removeQueue("jobs")

  w <- worker_spawn(2, controller = ctl, task_log = TRUE)
  big <- as.raw(sample.int(255, 2e6, replace = TRUE))
  f <- function(i, x) length(x) + i
  environment(f) <- globalenv() # as written at top level: it carries nothing along
  ids <- task_create_bulk_call(f, as.list(1:4), args = list(x = big), controller = ctl)
  large <- task_create_expr(raw(2e7), controller = ctl)
  bad <- task_create_expr(stop("no"), controller = ctl)
  task_wait(c(ids, large, bad), timeout = 60, controller = ctl)
  expect_equal(unname(unlist(task_results(ids, controller = ctl))), 2e6 + 1:4)
  expect_equal(length(task_result(large, controller = ctl)), 2e7)
  expect_equal(unname(task_status(bad, controller = ctl)), "ERROR")
  expect_equal(unname(task_retry(bad, controller = ctl)), "ERROR")
  expect_equal(worker_message_send_and_wait("PING", worker_ids = w, controller = ctl),
               stats::setNames(list("PONG", "PONG"), w$id))
  expect_match(redq_metrics(ctl), "redq_tasks_total")
  expect_gt(nrow(worker_log_tail(w, controller = ctl)), 0)

  # a busy worker killed: its task runs again on the other one
  slow <- task_create_expr({Sys.sleep(1); Sys.getpid()}, controller = ctl)
  expect_true(wait_until(function() task_status(slow, controller = ctl) == "RUNNING", timeout = 20))
  victim <- task_info(slow, controller = ctl)$worker
  tools::pskill(worker_info(victim, controller = ctl)[[1]]$pid, tools::SIGKILL)
  suppressWarnings(task_wait(slow, timeout = 30, controller = ctl))
  expect_equal(unname(task_status(slow, controller = ctl)), "COMPLETE")
  expect_equal(task_info(slow, controller = ctl)$attempts$outcome[[1]], "LOST")
  task_delete(c(ids, large, bad, slow), controller = ctl)
  redq_destroy(ctl)
  expect_length(worker_list(ctl), 0)
})
