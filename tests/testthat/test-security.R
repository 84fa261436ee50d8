# Signed payloads: with REDQ_SECRET, workers run only what a controller with
# the same secret signed.

test_that("with a shared secret, signed tasks and loops run", {
  withr::local_envvar(REDQ_SECRET = "correct horse battery staple")
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr(sum(1:10))
  head <- redq:::redis_command(c("EVAL", "return string.sub(redis.call('HGET', KEYS[1], ARGV[1]), 1, 4)",
                                 "1", sprintf("redq:{%s}:payloads", ctl$namespace), id))
  expect_equal(head, "RQS1")
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 55)
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_equal(foreach(i = 1:4, .combine = c) %dopar% (i * 2), c(2, 4, 6, 8))
})

test_that("a worker with another secret refuses tasks and loops without running them", {
  withr::local_envvar(REDQ_SECRET = "controller secret")
  ctl <- test_controller()
  withr::with_envvar(c(REDQ_SECRET = "another secret"), worker_spawn(1))
  id <- task_create_expr(writeLines("ran", "/dev/stderr"))
  task_wait(id, timeout = 20)
  expect_equal(unname(task_status(id)), "ERROR")
  expect_match(conditionMessage(task_result(id)), "signature does not match")
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_error(foreach(i = 1:2) %dopar% i, "signature")
})

test_that("a worker with a secret refuses unsigned tasks", {
  ctl <- test_controller()
  withr::with_envvar(c(REDQ_SECRET = "worker secret"), worker_spawn(1))
  withr::local_envvar(REDQ_SECRET = "")
  id <- task_create_expr(1)
  task_wait(id, timeout = 20)
  expect_match(conditionMessage(task_result(id)), "unsigned")
})
