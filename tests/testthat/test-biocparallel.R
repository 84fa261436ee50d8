# RedisParam(): BiocParallel's functions on redq workers, checked against
# BiocParallel's own SerialParam and SnowParam, and RedisParam's user guide.

bp <- function(name) getExportedValue("BiocParallel", name)

local_param <- function(ctl, ..., envir = parent.frame()) {
  p <- RedisParam(..., namespace = ctl$namespace, url = test_url())
  withr::defer(try(bp("bpstop")(p), silent = TRUE), envir = envir)
  p
}

server_stat <- function(ctl, field) {
  info <- redq:::redis_command(c("INFO", "stats"), controller = ctl)
  as.numeric(sub(".*:", "", grep(paste0("^", field, ":"), strsplit(info, "\r\n")[[1]], value = TRUE)))
}

test_that("RedisParam's user guide runs: local workers, bplapply, bpstart/bpstop", {
  # verbatim, in the default namespace: only the server comes from REDIS_URL
  ctl <- test_controller()
  dflt <- redq_controller("default", url = test_url(), default = FALSE)
  withr::defer(cleanup_namespace(dflt))
  p <- RedisParam(workers = 5)
  expect_s4_class(p, "BiocParallelParam")
  expect_false(bp("bpisup")(p))
  result <- bp("bplapply")(1:7, function(i) Sys.getpid(), BPPARAM = p)
  pids <- unlist(result)
  expect_length(pids, 7)
  expect_false(Sys.getpid() %in% pids)
  # the workers were started for the call and stopped after it
  expect_true(wait_until(function() length(worker_list(dflt)) == 0, timeout = 5))
  # what is left: the namespace's own records (queues, running totals),
  # and the stopped workers' records and logs, which expire
  left <- namespace_keys(dflt)
  ttl <- vapply(left, function(k) as.numeric(redq:::redis_command(c("PTTL", k), controller = dflt)), 1)
  expect_true(all(sub(".*:", "", left[ttl < 0]) %in% c("queues", "version", "counts", "failures")))
  expect_length(queue_list(dflt), 0)

  q <- local_param(ctl, workers = 2)
  bp("bpstart")(q)
  expect_true(bp("bpisup")(q))
  expect_equal(bp("bpworkers")(q), 2)
  expect_s3_class(bp("bpbackend")(q), "redq_controller")
  a <- unlist(bp("bplapply")(1:20, function(i) Sys.getpid(), BPPARAM = q))
  b <- unlist(bp("bplapply")(1:20, function(i) Sys.getpid(), BPPARAM = q))
  expect_setequal(union(a, b), vapply(worker_info(controller = ctl),
                                      function(i) as.integer(i$pid), 1L))
  bp("bpstop")(q)
  expect_false(bp("bpisup")(q))
  expect_true(wait_until(function() length(worker_list(ctl)) == 0, timeout = 5))
})

test_that("independently managed workers: is.worker = TRUE in one process, FALSE in another", {
  ctl <- test_controller()
  jobname <- "demo"
  wproc <- callr::r_bg(function(ns, url, jobname) {
    library(redq)
    p <- RedisParam(jobname = jobname, is.worker = TRUE, namespace = ns, url = url)
    BiocParallel::bpstart(p)
    "stopped"
  }, args = list(ctl$namespace, test_url(), jobname))
  withr::defer(if (wproc$is_alive()) wproc$kill())
  p <- local_param(ctl, jobname = jobname, is.worker = FALSE)
  expect_identical(rpisworker(p), FALSE)
  # the manager may start before the worker: its tasks wait for it
  result <- bp("bplapply")(1:7, function(i) Sys.getpid(), BPPARAM = p)
  expect_equal(unique(unlist(result)), wproc$get_pid())
  expect_equal(bp("bpworkers")(p), 1000) # expected, until started
  bp("bpstart")(p)
  expect_equal(bp("bpworkers")(p), 1) # live
  rpstopall(p)
  expect_true(wait_until(function() !wproc$is_alive(), timeout = 10))
  expect_equal(wproc$get_result(), "stopped")
})

test_that("bplapply, bpmapply, bpvec, bpiterate and bpaggregate agree with SerialParam", {
  ctl <- test_controller()
  p <- local_param(ctl, workers = 2)
  bp("bpstart")(p)
  serial <- bp("SerialParam")()
  x <- list(a = 1:3, b = letters, c = NULL, d = 4.5)
  f <- function(v, k) paste(length(v), k)
  expect_identical(bp("bplapply")(x, f, k = "z", BPPARAM = p),
                   bp("bplapply")(x, f, k = "z", BPPARAM = serial))
  expect_identical(bp("bplapply")(1:100, function(i) i^2, BPPARAM = p), as.list((1:100)^2))
  expect_identical(bp("bpmapply")(function(a, b) a * b, 1:9, 9:1, BPPARAM = p),
                   bp("bpmapply")(function(a, b) a * b, 1:9, 9:1, BPPARAM = serial))
  expect_identical(bp("bpmapply")(rep, 1:3, 3:1, SIMPLIFY = FALSE, BPPARAM = p),
                   mapply(rep, 1:3, 3:1, SIMPLIFY = FALSE))
  expect_identical(bp("bpvec")(1:1000, sqrt, BPPARAM = p), sqrt(1:1000))
  counter <- function(n) {
    i <- 0
    function() if (i >= n) NULL else { i <<- i + 1; i }
  }
  expect_identical(bp("bpiterate")(counter(12), function(v) v * 10, BPPARAM = p),
                   bp("bpiterate")(counter(12), function(v) v * 10, BPPARAM = serial))
  expect_identical(bp("bpiterate")(counter(12), function(v) v, REDUCE = `+`, BPPARAM = p), 78)
  df <- data.frame(g = rep(c("a", "b"), 5), v = 1:10)
  expect_equal(bp("bpaggregate")(v ~ g, df, FUN = sum, BPPARAM = p),
               stats::aggregate(v ~ g, df, FUN = sum))
  # globals and packages are found as BiocParallel finds them
  offset <- 1000
  g <- function(i) i + offset
  expect_identical(bp("bplapply")(1:3, function(i) g(i), BPPARAM = p), list(1001, 1002, 1003))
  expect_identical(unlist(bp("bplapply")(1:2, function(i) tools::file_ext("a.txt"), BPPARAM = p)),
                   c("txt", "txt"))
})

test_that("RNGseed gives SnowParam's numbers whatever the number of workers", {
  ctl <- test_controller()
  draw <- function(i) stats::runif(2)
  ref <- bp("bplapply")(1:10, draw, BPPARAM = bp("SnowParam")(2, RNGseed = 1))
  for (n in c(1, 2, 4)) {
    p <- local_param(ctl, workers = n, RNGseed = 1)
    expect_identical(bp("bplapply")(1:10, draw, BPPARAM = p), ref, label = sprintf("%d worker(s)", n))
  }
  # a started param continues its stream from call to call, as SnowParam does
  s <- bp("SnowParam")(2, RNGseed = 7)
  bp("bpstart")(s)
  withr::defer(bp("bpstop")(s))
  p <- local_param(ctl, workers = 2, RNGseed = 7)
  bp("bpstart")(p)
  for (k in 1:2) {
    expect_identical(bp("bplapply")(1:4, draw, BPPARAM = p), bp("bplapply")(1:4, draw, BPPARAM = s))
  }
})

test_that("bptry and BPREDO rerun only the failed elements", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  p <- local_param(ctl, workers = 2, stop.on.error = FALSE)
  bp("bpstart")(p)
  f <- function(i, dir) {
    file.create(file.path(dir, paste0("ran-", i)))
    if (i %% 3 == 0 && !file.exists(file.path(dir, "fixed"))) stop("no good: ", i)
    i * 2
  }
  res <- bp("bptry")(bp("bplapply")(1:10, f, dir = dir, BPPARAM = p))
  expect_identical(which(!bp("bpok")(res)), c(3L, 6L, 9L))
  expect_match(conditionMessage(res[[3]]), "no good: 3")
  expect_equal(res[[4]], 8)
  expect_error(bp("bplapply")(1:10, f, dir = dir, BPPARAM = p), "no good")
  file.create(file.path(dir, "fixed"))
  unlink(list.files(dir, "^ran-", full.names = TRUE))
  redo <- bp("bplapply")(1:10, f, dir = dir, BPREDO = res, BPPARAM = p)
  expect_identical(redo, as.list((1:10) * 2))
  expect_setequal(list.files(dir, "^ran-"), c("ran-3", "ran-6", "ran-9"))
  # stop.on.error = TRUE stops with BiocParallel's error
  q <- local_param(ctl, workers = 1, stop.on.error = TRUE)
  expect_error(bp("bplapply")(1:4, function(i) if (i == 2) stop("halt") else i, BPPARAM = q),
               "halt")
})

test_that("two managers sharing a jobname and 2 workers both finish, interleaved", {
  ctl <- test_controller()
  jobname <- "shared"
  dir <- withr::local_tempdir()
  worker_spawn(2, queue = jobname, controller = ctl)
  param <- function(ns, url, jobname) {
    redq::RedisParam(jobname = jobname, is.worker = FALSE, tasks = 16, namespace = ns, url = url)
  }
  run <- function(p, name) {
    BiocParallel::bplapply(1:16, function(i, name) {
      started <- as.numeric(Sys.time())
      Sys.sleep(0.1)
      c(name = name, started = started)
    }, name = name, BPPARAM = p)
  }
  environment(param) <- environment(run) <- globalenv()
  other <- callr::r_bg(function(param, run, dir, ...) {
    p <- param(...)
    file.create(file.path(dir, "ready"))
    while (!file.exists(file.path(dir, "go"))) Sys.sleep(0.005)
    run(p, "B")
  }, args = list(param, run, dir, ctl$namespace, test_url(), jobname))
  withr::defer(if (other$is_alive()) other$kill())
  p <- param(ctl$namespace, test_url(), jobname)
  expect_true(wait_until(function() file.exists(file.path(dir, "ready")), timeout = 30))
  file.create(file.path(dir, "go"))
  mine <- run(p, "A")
  other$wait(30000)
  theirs <- other$get_result()
  expect_length(mine, 16)
  expect_length(theirs, 16)
  t <- rbind(do.call(rbind, mine), do.call(rbind, theirs))
  order <- t[order(as.numeric(t[, "started"])), "name"]
  # neither manager's tasks all ran before the other's began
  a <- which(order == "A")
  b <- which(order == "B")
  expect_true(min(b) < max(a) && min(a) < max(b))
  # each manager kept at most 2 x 2 tasks queued, so runs alternate well
  # before either manager is done
  expect_lt(min(b), 8)
  expect_lt(min(a), 8)
})

test_that("a worker SIGKILLed mid-task: its task runs elsewhere, the result is complete", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  p <- local_param(ctl, workers = 2, tasks = 40)
  bp("bpstart")(p)
  before <- worker_list(ctl)
  warnings <- character()
  res <- withCallingHandlers(
    bp("bplapply")(1:40, function(i, dir) {
      Sys.sleep(0.02)
      if (i == 10 && !file.exists(file.path(dir, "killed"))) {
        file.create(file.path(dir, "killed"))
        tools::pskill(Sys.getpid(), tools::SIGKILL)
      }
      i * 3
    }, dir = dir, BPPARAM = p),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_identical(res, as.list((1:40) * 3))
  expect_true(file.exists(file.path(dir, "killed")))
  lost <- setdiff(before, worker_list(ctl))
  expect_length(lost, 1)
  expect_true(any(grepl(lost, warnings, fixed = TRUE)))
})

test_that("timeout interrupts one element in its worker; the worker goes on", {
  ctl <- test_controller()
  p <- local_param(ctl, workers = 1, timeout = 1, stop.on.error = FALSE)
  bp("bpstart")(p)
  w <- worker_list(ctl)
  t0 <- Sys.time()
  res <- bp("bptry")(bp("bplapply")(1:3, function(i) {
    if (i == 2) Sys.sleep(60)
    i
  }, BPPARAM = p, BPOPTIONS = bp("bpoptions")(tasks = 1)))
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 10)
  expect_identical(bp("bpok")(res), c(TRUE, FALSE, TRUE))
  expect_match(conditionMessage(res[[2]]), "time limit")
  expect_equal(res[[3]], 3)
  expect_identical(worker_list(ctl), w)
  expect_identical(bp("bplapply")(1:2, function(i) i, BPPARAM = p), list(1L, 2L))
})

test_that("log = TRUE collects the workers' log lines and output in the manager", {
  ctl <- test_controller()
  p <- local_param(ctl, workers = 1, log = TRUE, threshold = "INFO", fallback = FALSE)
  out <- capture.output(type = "message", res <- bp("bplapply")(1:2, function(i) {
    cat("printed", i, "\n")
    i
  }, BPPARAM = p))
  expect_identical(res, list(1L, 2L))
  expect_true(any(grepl("LOG OUTPUT", out)))
  expect_true(any(grepl("printed 2", out)))
  expect_true(any(grepl("^Node: .+", out)))
  bp("bplog<-")(p, FALSE)
  expect_false(bp("bplog")(p))
  q <- local_param(ctl, workers = 1, progressbar = TRUE, fallback = FALSE)
  out <- capture.output(res <- bp("bplapply")(1:4, sqrt, BPPARAM = q))
  expect_identical(res, as.list(sqrt(1:4)))
  expect_true(any(grepl("100%", out, fixed = TRUE)))
})

test_that("the constant part of a call is stored once and each worker fetches it once", {
  ctl <- test_controller()
  # exportglobals = FALSE: under testthat, options() (which BiocParallel
  # sends along by default) hold some 10 MB of their own
  p <- local_param(ctl, workers = 2, tasks = 20, exportglobals = FALSE)
  bp("bpstart")(p)
  big <- stats::runif(1e6) # 8 MB
  sent <- server_stat(ctl, "total_net_input_bytes")
  read <- server_stat(ctl, "total_net_output_bytes")
  f <- function(i, big) i + length(big)
  environment(f) <- globalenv() # a closure would carry this test's frame, big included
  res <- bp("bplapply")(1:20, f, big = big, BPPARAM = p)
  expect_identical(unlist(res), 1:20 + 1000000L)
  expect_lt(server_stat(ctl, "total_net_input_bytes") - sent, 1.5 * 8e6)
  expect_lt(server_stat(ctl, "total_net_output_bytes") - read, 2.5 * 8e6)
})

test_that("DoparParam over registerDoRedis runs BiocParallel's loop on redq", {
  ctl <- test_controller()
  registerDoRedis("bioc", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  worker_spawn(2, queue = "bioc", controller = ctl)
  res <- bp("bplapply")(1:5, function(i) i * 7, BPPARAM = bp("DoparParam")())
  expect_identical(res, as.list((1:5) * 7))
})

test_that("server settings: arguments, then REDISPARAM_*, then REDIS_*, then REDIS_URL", {
  withr::local_envvar(REDISPARAM_HOST = NA, REDISPARAM_PORT = NA, REDISPARAM_PASSWORD = NA,
                      REDIS_HOST = NA, REDIS_PORT = NA, REDIS_PASSWORD = NA)
  url <- function(...) RedisParam(is.worker = FALSE, ...)$url
  # nothing set: REDIS_URL (the test server), else redq's default
  expect_true(is.na(url()))
  expect_null(rphost())
  withr::local_envvar(REDIS_HOST = "10.1.2.3", REDIS_PORT = "7000")
  expect_equal(url(), "redis://10.1.2.3:7000/0")
  expect_equal(rphost(), "10.1.2.3")
  expect_identical(rpport(), 7000L)
  withr::local_envvar(REDISPARAM_HOST = "10.9.9.9", REDIS_PASSWORD = "s3cret/x")
  expect_equal(url(), "redis://:s3cret%2Fx@10.9.9.9:7000/0")
  expect_equal(rppassword(), "s3cret/x")
  expect_equal(url(redis.hostname = "h1", redis.port = 6390, redis.password = "pw"),
               "redis://:pw@h1:6390/0")
  expect_equal(url(url = "redis://elsewhere:1/0"), "redis://elsewhere:1/0")
  p <- RedisParam(is.worker = FALSE)
  expect_equal(rphost(p), "10.9.9.9")
  expect_identical(rpport(p), 7000L)
  expect_output(print(p), "redis://\\*\\*\\*@10.9.9.9")
  # malformed values say which variable is wrong
  withr::local_envvar(REDIS_PORT = "tcp://10.0.0.1:6379")
  expect_error(RedisParam(is.worker = FALSE), class = "redq_error_argument")
  expect_error(RedisParam(is.worker = FALSE), "REDIS_PORT is 'tcp://10.0.0.1:6379'")
  withr::local_envvar(REDISPARAM_PORT = "99999")
  expect_error(RedisParam(is.worker = FALSE), "REDISPARAM_PORT is '99999'")
  expect_error(RedisParam(is.worker = FALSE, redis.port = 6379, redis.hostname = "redis://x"),
               "redis.hostname is 'redis://x'")
})

test_that("REDIS_HOST and REDIS_PORT reach a real server; REDIS_URL is used when they are unset", {
  ctl <- test_controller()
  port <- sub(".*:([0-9]+).*", "\\1", test_url())
  withr::local_envvar(REDISPARAM_HOST = NA, REDISPARAM_PORT = NA, REDISPARAM_PASSWORD = NA,
                      REDIS_HOST = "127.0.0.1", REDIS_PORT = port,
                      REDIS_PASSWORD = getOption("redq.test_server")$password,
                      REDIS_URL = "redis://127.0.0.1:1/0")
  p <- RedisParam(workers = 1, namespace = ctl$namespace, fallback = FALSE)
  expect_true(rpalive(p))
  expect_identical(bp("bplapply")(1:3, function(i) i + 1, BPPARAM = p), list(2, 3, 4))
  withr::local_envvar(REDIS_HOST = NA, REDIS_PORT = NA, REDIS_PASSWORD = NA, REDIS_URL = test_url())
  q <- RedisParam(workers = 1, namespace = ctl$namespace, fallback = FALSE)
  expect_identical(bp("bplapply")(1:2, function(i) -i, BPPARAM = q), list(-1L, -2L))
  expect_false(rpalive(RedisParam(is.worker = FALSE, url = "redis://127.0.0.1:1/0")))
})

test_that("SnowParam's own construction tests: fallback, force.GC, logdir, progress bar tasks, host names", {
  ctl <- test_controller()
  # one local worker, not started: the call runs in this session, as any
  # BiocParallel param's does, unless fallback is off
  p <- local_param(ctl, workers = 1)
  expect_equal(bp("bplapply")(1, function(x) Sys.getpid(), BPPARAM = p)[[1]], Sys.getpid())
  bp("bpfallback<-")(p, FALSE)
  expect_false(bp("bplapply")(1, function(x) Sys.getpid(), BPPARAM = p)[[1]] == Sys.getpid())
  bp("bpfallback<-")(p, TRUE)
  expect_equal(bp("bplapply")(1, function(x) Sys.getpid(), BPPARAM = p)[[1]], Sys.getpid())
  q <- local_param(ctl, workers = 2)
  expect_false(bp("bplapply")(1, function(x) Sys.getpid(), BPPARAM = q)[[1]] == Sys.getpid())
  # a manager's workers are elsewhere: never in this session
  expect_false(bp("bpfallback")(RedisParam(workers = 1, is.worker = FALSE, url = test_url())))
  expect_false(bp("bpforceGC")(RedisParam(url = test_url())))
  expect_true(bp("bpforceGC")(RedisParam(force.GC = TRUE, url = test_url())))
  expect_error(RedisParam(force.GC = NA), class = "redq_error_argument")
  expect_error(RedisParam(fallback = 1:2), class = "redq_error_argument")
  expect_error(RedisParam(logdir = tempdir()), class = "redq_error_argument")
  expect_identical(bp("bptasks")(RedisParam(url = test_url())), 0L)
  expect_identical(bp("bptasks")(RedisParam(tasks = 0L, progressbar = TRUE, url = test_url())), 0L)
  expect_identical(bp("bptasks")(RedisParam(progressbar = TRUE, url = test_url())),
                   .Machine$integer.max)
  # host names, as SnowParam takes them: this machine's
  h <- local_param(ctl, workers = c("localhost", "localhost"))
  expect_identical(bp("bpnworkers")(h), 2L)
  bp("bpstop")(bp("bpstart")(h))
  expect_error(RedisParam(c("localhost", "node7.example.org")), "redq-worker",
               class = "redq_error_argument")
})

test_that("bad arguments give classed errors and leave the param usable", {
  ctl <- test_controller()
  for (bad in list(list(workers = -1), list(workers = NA), list(timeout = -5),
                   list(timeout = NaN), list(queue.multiplier = 0), list(is.worker = "yes"),
                   list(jobname = ""), list(jobname = "@w"), list(max_attempts = 1e19),
                   list(tasks = -2))) {
    expect_error(do.call(RedisParam, bad), class = "redq_error_argument",
                 label = paste(names(bad), format(bad[[1]])))
  }
  p <- local_param(ctl, workers = 1)
  bp("bpstart")(p)
  expect_error(bp("bpstart")(p), class = "redq_error_state")
  expect_identical(bp("bplapply")(1:2, function(i) i, BPPARAM = p), list(1L, 2L))
})

test_that("a Bioconductor package's BPPARAM (BiocNeighbors::findKNN) runs on redq workers", {
  ctl <- test_controller()
  p <- local_param(ctl, workers = 2, log = TRUE)
  bp("bpstart")(p)
  set.seed(1)
  x <- matrix(stats::runif(3000 * 4), ncol = 4)
  log <- capture.output(type = "message",
                        got <- BiocNeighbors::findKNN(x, k = 5, BPPARAM = p))
  want <- BiocNeighbors::findKNN(x, k = 5, BPPARAM = bp("SerialParam")())
  expect_identical(got, want)
  nodes <- unique(sub("^Node: ", "", grep("^Node: ", log, value = TRUE)))
  expect_setequal(nodes, worker_list(ctl))
})

test_that(".manager_send_all and .manager_recv_all reach every live worker once", {
  ctl <- test_controller()
  p <- local_param(ctl, workers = 2)
  bp("bpstart")(p)
  m <- BiocParallel::.manager(p)
  withr::defer(BiocParallel::.manager_cleanup(m))
  msg <- list(type = "EXEC", data = list(tag = 1L, fun = function() Sys.getpid(), args = list()),
              static.fun = FALSE, static.args = NULL)
  BiocParallel::.manager_send_all(m, msg)
  got <- BiocParallel::.manager_recv_all(m)
  pids <- vapply(got, function(d) d$value$value, 1L)
  expect_setequal(pids, vapply(worker_info(controller = ctl), function(i) as.integer(i$pid), 1L))
})
