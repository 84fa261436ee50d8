# The foreach backend against real workers: every foreach option.

foreach_setup <- function(n = 2, envir = parent.frame()) {
  ctl <- test_controller(envir = envir)
  registerDoRedis("jobs", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ(), envir = envir)
  startLocalWorkers(n, queue = "jobs", url = test_url(), namespace = ctl$namespace)
  ctl
}

test_that("registerDoRedis names redq and counts live workers", {
  ctl <- foreach_setup(2)
  expect_equal(getDoParName(), "redq")
  expect_equal(getDoParVersion(), as.character(packageVersion("redq")))
  expect_equal(getDoParWorkers(), 2L)
  expect_true(getDoParRegistered())
})

test_that(".combine, .init, .final, .multicombine and .inorder", {
  ctl <- foreach_setup(2)
  expect_equal(foreach(i = 1:10, .combine = c) %dopar% (i^2), (1:10)^2)
  expect_equal(foreach(i = 1:10, .combine = "+", .init = 100) %dopar% i, 155)
  expect_equal(foreach(i = 1:4, .combine = c, .final = rev) %dopar% i, 4:1)
  m <- foreach(i = 1:3, .combine = cbind, .multicombine = TRUE, .maxcombine = 2) %dopar% c(i, -i)
  expect_equal(unname(m), cbind(c(1, -1), c(2, -2), c(3, -3)))
  r <- foreach(i = 1:20, .combine = c, .inorder = FALSE,
               .options.redis = list(chunkSize = 1)) %dopar% {
    Sys.sleep(runif(1, 0, 0.02))
    i
  }
  expect_setequal(r, 1:20)
  expect_equal(foreach(i = 1:25) %dopar% i, as.list(1:25))
})

test_that("an ordered loop combines in order when later chunks end first", {
  ctl <- foreach_setup(2)
  # the first iterations are the slow ones, so the chunks after them end
  # first; the combine function sees every value in iteration order, and
  # failures keep their place
  seen <- new.env()
  seen$order <- integer()
  keep <- function(acc, ...) {
    v <- c(...)
    seen$order <- c(seen$order, v)
    c(acc, v)
  }
  r <- foreach(i = 1:40, .combine = keep, .init = integer(), .multicombine = TRUE,
               .errorhandling = "remove", .options.redis = list(chunkSize = 5)) %dopar% {
    if (i <= 5) Sys.sleep(0.5)
    if (i == 23) stop("bad 23")
    i
  }
  expect_equal(r, setdiff(1:40, 23))
  expect_equal(seen$order, setdiff(1:40, 23))
  r <- foreach(i = 1:40, .errorhandling = "pass", .options.redis = list(chunkSize = 5)) %dopar% {
    if (i <= 5) Sys.sleep(0.5)
    if (i == 23) stop("bad 23") else i
  }
  expect_equal(r[-23], as.list(setdiff(1:40, 23)))
  expect_s3_class(r[[23]], "simpleError")
})

test_that(".errorhandling stop, remove and pass behave as with doParallel", {
  ctl <- foreach_setup(2)
  body <- quote(if (i == 3) stop("bad three") else i)
  expect_error(foreach(i = 1:5) %dopar% if (i == 3) stop("bad three") else i,
               'task 3 failed - "bad three"')
  r <- foreach(i = 1:5, .combine = c, .errorhandling = "remove") %dopar%
    if (i == 3) stop("bad three") else i
  expect_equal(r, c(1, 2, 4, 5))
  r <- foreach(i = 1:5, .errorhandling = "pass") %dopar% if (i == 3) stop("bad three") else i
  expect_s3_class(r[[3]], "simpleError")
  expect_equal(conditionMessage(r[[3]]), "bad three")
  expect_equal(r[c(1, 2, 4, 5)], list(1L, 2L, 4L, 5L))
  # the session goes on working after a failed loop
  expect_equal(foreach(i = 1:3, .combine = c) %dopar% i, 1:3)
})

test_that("exports: automatic, .export, .noexport, setExport and '...' of a function", {
  ctl <- foreach_setup(1)
  big <- 1:10
  helper <- function(x) x * 100
  expect_equal(foreach(i = 1:3, .combine = c) %dopar% (helper(i) + sum(big)), c(155, 255, 355))
  f <- function(...) foreach(i = 1:2, .combine = c) %dopar% sum(i, ...)
  expect_equal(f(10, 20), c(31, 32))
  g <- function() {
    hidden <- 7
    foreach(i = 1:2, .combine = c, .export = "hidden") %dopar% (i + get("hidden"))
  }
  expect_equal(g(), c(8, 9))
  shared <- 5
  setExport("shared")
  expect_equal(foreach(i = 1:2, .combine = c) %dopar% (i + get("shared")), c(6, 7))
  setExport(c())
  expect_error(foreach(i = 1:2, .export = "no_such_var") %dopar% i, class = "redq_error_argument")
  expect_error(foreach(i = 1:2, .noexport = "big") %dopar% sum(big), "big")
})

test_that(".packages loads a package the controller has not attached", {
  ctl <- foreach_setup(1)
  r <- foreach(i = 1:2, .packages = "tools", .combine = c) %dopar% {
    "package:tools" %in% search()
  }
  expect_equal(r, c(TRUE, TRUE))
  setPackages("parallel")
  r <- foreach(i = 1, .combine = c) %dopar% exists("detectCores")
  setPackages(c())
  expect_true(r)
})

test_that("nested loops with %:% and when()", {
  ctl <- foreach_setup(2)
  m <- foreach(i = 1:3, .combine = rbind) %:% foreach(j = 1:4, .combine = c) %dopar% (i * 10 + j)
  expect_equal(unname(m), outer(1:3, 1:4, function(i, j) i * 10 + j))
  r <- foreach(i = 1:10, .combine = c) %:% when(i %% 2 == 0) %dopar% i
  expect_equal(r, c(2, 4, 6, 8, 10))
})

test_that("iterators of unknown length are consumed in windows", {
  ctl <- foreach_setup(2)
  old <- redq:::FOREACH_WINDOW
  ns <- asNamespace("redq")
  unlockBinding("FOREACH_WINDOW", ns)
  assign("FOREACH_WINDOW", 50L, envir = ns)
  withr::defer({
    assign("FOREACH_WINDOW", old, envir = ns)
    lockBinding("FOREACH_WINDOW", ns)
  })
  n <- 0
  it <- iterators::iter(function() {
    n <<- n + 1
    if (n > 237) stop("StopIteration")
    n
  })
  r <- foreach(x = it, .combine = c) %dopar% (x * 2)
  expect_equal(r, (1:237) * 2)
  expect_equal(foreach(i = iterators::icount(130), .combine = "+") %dopar% i, sum(1:130))
})

test_that("set.seed gives the same numbers for 1, 2 and 4 workers and any chunk size", {
  ctl <- foreach_setup(1)
  draw <- function(chunk) {
    set.seed(42)
    foreach(i = 1:30, .combine = c, .options.redis = list(chunkSize = chunk)) %dopar% runif(1)
  }
  more_workers <- function(n, total) {
    startLocalWorkers(n, queue = "jobs", url = test_url(), namespace = ctl$namespace)
    expect_equal(getDoParWorkers(), total)
  }
  one <- list(draw(NULL), draw(7), draw(1))
  more_workers(1, 2L)
  two <- list(draw(NULL), draw(7), draw(1))
  more_workers(2, 4L)
  four <- list(draw(NULL), draw(7), draw(1))
  for (x in c(one[-1], two, four)) expect_identical(x, one[[1]])
  expect_equal(length(unique(one[[1]])), 30)
  set.seed(43)
  other <- foreach(i = 1:30, .combine = c) %dopar% runif(1)
  expect_false(identical(one[[1]], other))
})

test_that("set.seed.worker and worker.init work as in doRedis", {
  ctl <- foreach_setup(2)
  set.seed.worker <- function(n) {
    RNGkind("Super-Duper")
    set.seed(55)
  }
  r <- foreach(j = 1:5, .combine = "c", .export = "set.seed.worker") %dopar% runif(1)
  expect_equal(length(unique(r)), 1L)
  worker.init <- function() assign("initialised", TRUE, envir = globalenv())
  r <- foreach(j = 1:3, .combine = c, .export = "worker.init") %dopar% exists("initialised")
  expect_equal(r, c(TRUE, TRUE, TRUE))
})

test_that("%dorng% from doRNG works on top", {
  ctl <- foreach_setup(2)
  library(doRNG)
  set.seed(3)
  a <- foreach(i = 1:6, .combine = c) %dorng% runif(1)
  set.seed(3)
  b <- foreach(i = 1:6, .combine = c) %dorng% runif(1)
  expect_identical(a, b)
})

test_that("the doRedis vignette examples run unchanged", {
  ctl <- foreach_setup(2)
  pi_hat <- foreach(icount(10), .combine = sum, .multicombine = TRUE, .inorder = FALSE) %dopar%
    4 * sum((runif(100000)^2 + runif(100000)^2) < 1) / 1000000
  expect_equal(pi_hat, pi, tolerance = 0.02)

  set.seed(1)
  A <- matrix(rnorm(100), nrow = 10)
  redisSet("A1", A[1:5, ])
  redisSet("A2", A[6:10, ])
  ans <- foreach(j = 1:2, .combine = c) %dopar% {
    chunk <- sprintf("A%d", j)
    mychunk <- redisGet(chunk)
    sum(mychunk)
  }
  expect_equal(ans, c(sum(A[1:5, ]), sum(A[6:10, ])))

  x <- iris[which(iris[, 5] != "setosa"), c(1, 5)]
  setChunkSize(10)
  r <- foreach(icount(40), .combine = cbind, .inorder = FALSE) %dopar% {
    ind <- sample(100, 100, replace = TRUE)
    estimate <- glm(x[ind, 2] ~ x[ind, 1], family = binomial(logit))
    coefficients(estimate)
  }
  setChunkSize(NULL)
  expect_equal(dim(r), c(2L, 40L))
})

test_that(".verbose and progress print and the loop still returns", {
  ctl <- foreach_setup(1)
  expect_message(r <- foreach(i = 1:3, .combine = c, .verbose = TRUE) %dopar% i, "redq")
  expect_equal(r, 1:3)
  # (the progress bar itself: the test of cli bars below)
  r <- foreach(i = 1:8, .combine = c, .options.redis = list(progress = TRUE, chunkSize = 1)) %dopar% {
    Sys.sleep(0.05)
    i
  }
  expect_equal(r, 1:8)
})

test_that("a loop leaves no keys of its job behind", {
  ctl <- foreach_setup(2)
  r <- foreach(i = 1:50, .combine = c) %dopar% i
  expect_equal(r, 1:50)
  try(foreach(i = 1:5) %dopar% stop("x"), silent = TRUE)
  keys <- namespace_keys(ctl)
  expect_false(any(grepl(":job:|:task:", keys)), info = paste(keys, collapse = " "))
})

test_that("jobs(), tasks() and removeJob() see and stop a loop from another session", {
  ctl <- foreach_setup(2)
  bg <- callr::r_bg(function(url, ns) {
    library(redq)
    registerDoRedis("jobs", url = url, namespace = ns)
    foreach(i = 1:40, .options.redis = list(chunkSize = 1)) %dopar% {
      Sys.sleep(0.3)
      i
    }
  }, list(test_url(), ctl$namespace), supervise = TRUE)
  withr::defer(bg$kill())
  expect_true(wait_until(function() nrow(tasks()) == 2, timeout = 20))
  j <- jobs()
  expect_equal(nrow(j), 1L)
  expect_equal(j$queue, "jobs")
  expect_equal(j$pid, bg$get_pid())
  t <- tasks()
  expect_setequal(t$id, j$id)
  # each task knows the iteration it starts at
  expect_true(all(as.integer(t$iter) %in% 1:40))
  expect_setequal(t$pid, vapply(worker_info(), function(w) as.integer(w$pid), 1L))
  expect_gt(removeJob(j), 0)
  bg$wait(10000)
  expect_false(bg$is_alive())
  expect_error(bg$get_result(), "cancelled")
  expect_true(wait_until(function() nrow(jobs()) == 0L, timeout = 5))
})

test_that("iteration i runs on the stream nextRNGStream() gives after iteration i - 1", {
  ctl <- foreach_setup(2)
  seeds <- foreach(i = 1:9, .options.redis = list(chunkSize = 4)) %dopar%
    get(".Random.seed", envir = globalenv())
  expect_equal(seeds[[1]][[1]] %% 100L, 7L) # L'Ecuyer-CMRG
  for (i in 2:9) expect_identical(seeds[[i]], parallel::nextRNGStream(seeds[[i - 1]]))
})

test_that("NULL values and NULL iteration arguments survive batching and combining", {
  ctl <- foreach_setup(2)
  r <- foreach(i = 1:40, .options.redis = list(chunkSize = 3)) %dopar% if (i %% 2) NULL else i
  expect_length(r, 40)
  expect_equal(r[c(2, 40)], list(2L, 40L))
  expect_true(all(vapply(r[seq(1, 39, 2)], is.null, NA)))
  r <- foreach(x = list(NULL, 1, NULL, 2), .combine = c) %dopar% length(x)
  expect_equal(r, c(0L, 1L, 0L, 1L))
})

test_that("progress bars are cli bars with throughput and ETA, shown only when asked", {
  ctl <- foreach_setup(2)
  run <- function(progress) {
    err <- tempfile()
    withr::defer(unlink(err))
    callr::r(function(url, ns, progress) {
      library(redq)
      options(cli.progress_show_after = 0, cli.dynamic = FALSE)
      registerDoRedis("jobs", url = url, namespace = ns)
      r <- foreach(i = 1:12, .combine = c,
                   .options.redis = list(progress = progress, chunkSize = 1)) %dopar% {
        Sys.sleep(0.2)
        i
      }
      stopifnot(identical(r, 1:12))
      # a bar is drawn once the wait has lasted a moment
      ids <- task_create_bulk_expr({Sys.sleep(0.3); x}, data.frame(x = 1:8), queue = "jobs")
      task_wait(ids, progress = if (progress) TRUE) # the default: not interactive, no bar
    }, list(test_url(), ctl$namespace, progress), stderr = err)
    readLines(err, warn = FALSE)
  }
  shown <- run(TRUE)
  expect_true(any(grepl("^iterations .* 12/12 \\| [0-9.]+/s \\| ETA", shown)), info = shown)
  expect_true(any(grepl("^tasks .* 8/8 \\| [0-9.]+/s \\| ETA", shown)), info = shown)
  expect_false(any(grepl("ETA|/s", run(FALSE))))
})
