# doRedis' own listings and each doRedis worker argument, honoured.

alive <- function(ids, ctl) ids %in% worker_list(ctl)

test_that("the doRedis debugging listing: logger(), log and loglevel, removeQueue and linger", {
  # verbatim but for library() and the log's path, in the default namespace
  dflt <- redq_controller("default", url = test_url(), default = FALSE)
  withr::defer(cleanup_namespace(dflt))
  withr::defer(foreach::registerDoSEQ())
  logfile <- withr::local_tempfile(fileext = ".log")
  registerDoRedis("cazart")
  startLocalWorkers(n = 1, timeout = 1, queue = "cazart", log = logfile, loglevel = 1)
  x <- foreach(j = 1:3) %dopar% {
    logger(paste("hello from loop iteration ", j))
    j
  }
  expect_equal(x, list(1L, 2L, 3L))
  removeQueue("cazart")
  expect_true(wait_until(function() length(worker_list(dflt)) == 0, timeout = 5))
  log <- readLines(logfile)
  expect_length(grep("^Processing task\\(s\\)", log), 3)
  hello <- grep("^@ .* hello from loop iteration  [123]", log, value = TRUE)
  expect_length(hello, 3)
  expect_match(hello[[1]], paste0(" ", Sys.info()[["nodename"]], " [0-9]+ "))
  expect_true(any(grepl("exiting after 3 task", log)))
})

test_that("doRedis' own tests/test.R: setters before registering, setExport over .noexport, redisConnect()", {
  # verbatim but for require() and compare() turned into expectations, in
  # the default namespace of the server redq_url() names (REDIS_URL here)
  dflt <- redq_controller("default", url = test_url(), default = FALSE)
  withr::defer(cleanup_namespace(dflt))
  withr::defer(foreach::registerDoSEQ())
  withr::defer({
    setProgress(FALSE)
    setFtinterval(30)
    setExport(c())
    setChunkSize(NULL)
    redisClose()
  })
  setProgress(TRUE)
  setFtinterval(10)
  queue <- "jobs"
  redisConnect() # need to connect to Redis before removing a queue
  removeQueue(queue)
  startLocalWorkers(n = 2, queue, timeout = 1)
  registerDoRedis(queue)
  ans <- foreach(j = 1:10, .combine = sum) %dopar% j
  expect_equal(ans, 55)
  # the settings made before registering stand
  opts <- redq:::loop_options(list(options = list()), redq:::redq_env$foreach)
  expect_equal(opts$ftinterval, 10)
  expect_true(opts$progress)
  x <- 0
  setExport("x")
  setChunkSize(5)
  ans <- foreach(j = 1:10, .combine = sum, .noexport = "x") %dopar% {
    j + x
  }
  expect_equal(ans, 55)
  expect_equal(getDoParWorkers(), 2)
  removeQueue(queue)
  expect_true(wait_until(function() length(worker_list(dflt)) == 0, timeout = 10))
  # redisConnect() with no arguments chose redq_url()'s server, as
  # registerDoRedis() did, not whatever may answer on port 6379
  expect_identical(redq:::redq_env$redis_ctl$url, dflt$url)
  redisClose()
  expect_null(redq:::redq_env$redis_ctl)
})

test_that("the doRedis counter listing: redisIncrBy from loop bodies, read as a number", {
  ctl <- test_controller(queue = "jobs")
  registerDoRedis("jobs", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  key <- paste0("count-", ctl$namespace)
  withr::defer(redisDelete(key))
  redisDelete(key)
  data(iris, envir = environment())
  x <- iris[which(iris[, 5] != "setosa"), c(1, 5)]
  trials <- 200
  chunkSize <- 20
  startLocalWorkers(n = 2, queue = "jobs", url = test_url(), namespace = ctl$namespace)
  setChunkSize(chunkSize)
  withr::defer(setChunkSize(NULL))
  r <- foreach(icount(trials), .combine = cbind, .inorder = FALSE) %dopar% {
    redisIncrBy(key, chunkSize)
    ind <- sample(100, 100, replace = TRUE)
    estimate <- glm(x[ind, 2] ~ x[ind, 1], family = binomial(logit))
    coefficients(estimate)
  }
  expect_equal(dim(r), c(2, trials))
  # the rate monitor's reads
  redisIncrBy(key, 0)
  expect_equal(as.numeric(redisGet(key)), trials * chunkSize)
  removeQueue("jobs")
})

test_that("linger: a worker stays that long after its queue is removed", {
  ctl <- test_controller(queue = "lq")
  registerDoRedis("lq", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  id <- startLocalWorkers(1, queue = "lq", linger = 3, url = test_url(), namespace = ctl$namespace)
  removeQueue("lq")
  Sys.sleep(1.5)
  expect_true(alive(id, ctl))
  expect_true(wait_until(function() !alive(id, ctl), timeout = 6))
})

test_that("removeQueue: a worker of two queues leaves once both are removed", {
  ctl <- test_controller(queue = "qa")
  registerDoRedis("qa", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  id <- startLocalWorkers(1, queue = c("qa", "qb"), linger = 0, url = test_url(),
                          namespace = ctl$namespace)
  removeQueue("qa")
  Sys.sleep(1)
  expect_true(alive(id, ctl))
  removeQueue("qb")
  expect_true(wait_until(function() !alive(id, ctl), timeout = 5))
  # registering a removed queue again brings it back for new workers
  registerDoRedis("qa", url = test_url(), namespace = ctl$namespace)
  id2 <- startLocalWorkers(1, queue = "qa", linger = 0, url = test_url(), namespace = ctl$namespace)
  expect_equal(foreach(i = 1:2, .combine = c) %dopar% i, 1:2)
  expect_true(alive(id2, ctl))
})

test_that("timelimit ends a task that runs too long; the worker goes on", {
  ctl <- test_controller(queue = "tl")
  registerDoRedis("tl", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  id <- startLocalWorkers(1, queue = "tl", timelimit = 1, url = test_url(),
                          namespace = ctl$namespace)
  t0 <- Sys.time()
  r <- foreach(i = 1:2, .errorhandling = "pass", .options.redis = list(chunkSize = 1)) %dopar% {
    if (i == 1) Sys.sleep(30)
    i
  }
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 10)
  expect_s3_class(r[[1]], "error")
  expect_equal(r[[2]], 2L)
  expect_true(alive(id, ctl))
})

test_that("loglevel 0 writes no task lines; log = stdout() reaches the session's console", {
  ctl <- test_controller(queue = "ll")
  logfile <- withr::local_tempfile(fileext = ".log")
  registerDoRedis("ll", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(1, queue = "ll", log = logfile, url = test_url(), namespace = ctl$namespace)
  expect_equal(foreach(i = 1:3, .combine = c) %dopar% i, 1:3)
  expect_false(any(grepl("Processing", readLines(logfile))))
  expect_true(any(grepl("serving ll", readLines(logfile))))
  console <- withr::local_tempfile(fileext = ".out")
  callr::r(function(url, ns) {
    library(redq)
    ids <- startLocalWorkers(1, queue = "console", log = stdout(), loglevel = 1, linger = 0,
                             url = url, namespace = ns)
    ctl <- redq_controller(ns, url = url, queue = "console", default = FALSE)
    task_wait(task_create_expr(cat("from the task\n"), queue = "console", controller = ctl))
    worker_stop(ids, controller = ctl)
    invisible()
  }, list(test_url(), ctl$namespace), stdout = console, stderr = "2>&1")
  seen <- readLines(console)
  expect_true(any(grepl("serving console", seen)))
  expect_true(any(grepl("^Processing task\\(s\\)", seen)))
  expect_true(any(grepl("from the task", seen)))
})

test_that("Rbin runs the workers with the R given", {
  ctl <- test_controller(queue = "rb")
  dir <- withr::local_tempdir()
  marker <- file.path(dir, "used")
  rbin <- file.path(dir, "myR")
  writeLines(c("#!/bin/sh", sprintf("touch '%s'", marker),
               sprintf("exec '%s' \"$@\"", file.path(R.home("bin"), "R"))), rbin)
  Sys.chmod(rbin, "0755")
  registerDoRedis("rb", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(1, queue = "rb", Rbin = rbin, url = test_url(), namespace = ctl$namespace)
  expect_true(file.exists(marker))
  expect_equal(foreach(i = 1:2, .combine = c) %dopar% (i * 2), c(2, 4))
})

test_that("chunksize (lower case) sets the iterations per task, as in doRedis", {
  ctl <- test_controller(queue = "cs")
  registerDoRedis("cs", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(1, queue = "cs", url = test_url(), namespace = ctl$namespace)
  out <- capture.output(msgs <- capture.output(type = "message", {
    r <- foreach(j = 1:10, .combine = c, .verbose = TRUE,
                 .options.redis = list(chunksize = 5)) %dopar% j
  }))
  expect_equal(r, 1:10)
  expect_true(any(grepl("10 iteration\\(s\\) in 2 task\\(s\\) of up to 5", msgs)))
})

test_that("outlive = TRUE: workers keep serving after the session that started them ends", {
  ctl <- test_controller(queue = "ol")
  id <- callr::r(function(url, ns) {
    library(redq)
    startLocalWorkers(1, queue = "ol", outlive = TRUE, linger = 0, url = url, namespace = ns)
  }, list(test_url(), ctl$namespace))
  Sys.sleep(1)
  expect_true(alive(id, ctl))
  t <- task_create_expr(6 * 7, queue = "ol", controller = ctl)
  task_wait(t, timeout = 10, controller = ctl)
  expect_equal(task_result(t, controller = ctl), 42)
  registerDoRedis("ol", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  removeQueue("ol")
  expect_true(wait_until(function() !alive(id, ctl), timeout = 5))
})
