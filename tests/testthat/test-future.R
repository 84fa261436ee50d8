# The future backend, driven through future itself and the packages that
# call it for their users (future.apply, furrr, progressr).

# plan(redq_future) on the test's namespace, with `workers` started by the
# plan; the plan goes back to sequential when the calling test ends.
local_redq_plan <- function(ctl, workers = 2, ..., envir = parent.frame()) {
  future::plan(redq_future, namespace = ctl$namespace, url = test_url(), workers = workers, ...)
  withr::defer(future::plan(future::sequential), envir = envir)
}

test_that("futures and %<-% evaluate on the plan's workers", {
  ctl <- test_controller()
  local_redq_plan(ctl)
  f <- future::future(Sys.getpid())
  expect_s3_class(f, "RedqFuture")
  expect_match(f$task_id, "^[0-9A-Za-z]+$")
  pid <- future::value(f)
  expect_false(pid == Sys.getpid())
  expect_true(pid %in% vapply(worker_info(controller = ctl), function(i) as.integer(i$pid), 1L))
  expect_equal(future::nbrOfWorkers(), 2)
  `%<-%` <- future::`%<-%`
  a <- 20
  b %<-% {
    Sys.sleep(0.1)
    a + 22
  }
  expect_equal(b, 42)
  fs <- lapply(1:6, function(i) future::future(i * a))
  expect_equal(future::value(fs), as.list((1:6) * 20))
  # the plan keeps its own two workers; futures start none of their own
  expect_length(worker_list(ctl), 2)
})

test_that("%<-% in an environment eval() runs (local(), a script, a test harness) keeps its future", {
  ctl <- test_controller()
  local_redq_plan(ctl)
  # eval()'s frame records no value when it returns: the future must not
  # be taken for one abandoned by its caller and cancelled
  e <- new.env()
  eval(quote(future::`%<-%`(v, {
    x <- 1
    x
  })), envir = e)
  expect_false(exists("x", envir = e, inherits = FALSE))
  expect_identical(eval(quote(v), envir = e), 1)
  local(future::`%<-%`(w, 2))
  got <- local({
    future::`%<-%`(y, 40)
    future::`%->%`(2, z)
    y + z
  })
  expect_equal(got, 42)
})

test_that("plan(workers = 1), then 2, and a function giving the number, as future allows", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 1)
  expect_equal(future::nbrOfWorkers(), 1)
  expect_equal(future::value(future::future(42L)), 42L)
  local_redq_plan(ctl, workers = 2)
  expect_equal(future::nbrOfWorkers(), 2)
  expect_equal(future::value(future::future(43L)), 43L)
  expect_length(worker_list(ctl), 2)
  local_redq_plan(ctl, workers = function() 1L)
  expect_equal(future::nbrOfWorkers(), 1)
  expect_equal(future::value(future::future(44L)), 44L)
  expect_length(worker_list(ctl), 1)
  expect_error(local_redq_plan(ctl, workers = function() "two"), class = "redq_error_argument")
})

test_that("globals, packages and the global environment behave as on future's own workers", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 1)
  offset <- 100
  shift <- function(x) x + offset
  expect_equal(future::value(future::future(shift(1))), 101)
  # a function made at top level finds its globals in the global environment
  top <- local(function(x) x * k, envir = globalenv())
  k <- 3
  expect_equal(future::value(future::future(top(2), globals = list(top = top, k = 3))), 6)
  expect_equal(future::value(future::future(exists("k", envir = globalenv()))), FALSE)
  expect_equal(future::value(future::future(tools::toTitleCase("redq"))), "Redq")
  expect_true(future::value(future::future("tools" %in% loadedNamespaces(), packages = "tools")))
})

test_that("seeded futures give the same numbers as under plan(sequential)", {
  ctl <- test_controller()
  draw <- function() {
    set.seed(42)
    list(apply = future.apply::future_sapply(1:12, function(i) stats::runif(1), future.seed = TRUE),
         furrr = furrr::future_map_dbl(1:12, function(i) stats::rnorm(1),
                                       .options = furrr::furrr_options(seed = 7)),
         single = future::value(future::future(stats::runif(2), seed = TRUE)))
  }
  future::plan(future::sequential)
  expected <- draw()
  future::plan(future::multisession, workers = 2)
  expect_identical(draw(), expected)
  local_redq_plan(ctl)
  expect_identical(draw(), expected)
})

test_that("future.apply and furrr return what they return sequentially", {
  ctl <- test_controller()
  local_redq_plan(ctl)
  xs <- list(a = 1:3, b = letters, c = NULL, d = list(x = 1))
  expect_identical(future.apply::future_lapply(xs, length), lapply(xs, length))
  expect_identical(future.apply::future_sapply(1:50, function(i) i^2), (1:50)^2)
  expect_identical(future.apply::future_mapply(rep, 1:4, 4:1), mapply(rep, 1:4, 4:1))
  expect_identical(furrr::future_map_chr(c(x = "a", y = "b"), toupper), c(x = "A", y = "B"))
  expect_identical(furrr::future_map2_int(1:5, 6:10, `+`), 1:5 + 6:10)
  big <- future.apply::future_lapply(1:2000, identity)
  expect_identical(big, as.list(1:2000))
})

test_that("errors keep their class; output, messages and warnings reach value()", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 1)
  f <- future::future(stop(structure(class = c("my_error", "error", "condition"),
                                     list(message = "bad input here", call = NULL))))
  err <- tryCatch(future::value(f), error = identity)
  expect_s3_class(err, "my_error")
  expect_equal(conditionMessage(err), "bad input here")
  g <- future::future({
    cat("printed on the worker\n")
    message("note from the worker")
    warning("careful now")
    7
  })
  expect_output(
    expect_message(expect_warning(v <- future::value(g), "careful now"), "note from the worker"),
    "printed on the worker")
  expect_equal(v, 7)
  # the worker and the connection go on serving
  expect_equal(future::value(future::future(1 + 1)), 2)
})

test_that("a progressr bar moves while future_lapply() runs 20 one-second tasks on 2 workers", {
  ctl <- test_controller()
  local_redq_plan(ctl)
  withr::local_options(progressr.enable = TRUE)
  future::value(future::future(NULL))
  seen <- numeric()
  record <- progressr::make_progression_handler("record", reporter = list(
    update = function(config, state, progression, ...) seen <<- c(seen, as.numeric(Sys.time()))))
  t0 <- as.numeric(Sys.time())
  progressr::with_progress({
    p <- progressr::progressor(20)
    r <- future.apply::future_lapply(1:20, function(i) {
      Sys.sleep(1)
      p()
      i
    })
  }, handlers = record)
  done <- as.numeric(Sys.time())
  expect_equal(unlist(r), 1:20)
  expect_length(seen, 20)
  at <- seen - t0
  # two updates a second from the start, not twenty at the end
  expect_lt(min(at), 2)
  expect_gt(sum(at < done - t0 - 1), 15)
  expect_gt(diff(range(at)), 7)
})

test_that("a future whose worker is killed runs again; too many losses give a FutureError", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 2)
  marker <- tempfile()
  withr::defer(unlink(marker))
  f <- future::future({
    if (!file.exists(marker)) {
      file.create(marker)
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    Sys.getpid()
  })
  pid <- suppressWarnings(future::value(f))
  expect_true(file.exists(marker))
  expect_equal(task_info(f$task_id, controller = ctl)$attempts$outcome, c("LOST", "COMPLETE"))
  expect_true(pid %in% vapply(worker_info(controller = ctl), function(i) as.integer(i$pid), 1L))

  local_redq_plan(ctl, workers = 2, max_attempts = 2)
  g <- future::future(tools::pskill(Sys.getpid(), tools::SIGKILL))
  err <- tryCatch(suppressWarnings(future::value(g)), error = identity)
  expect_s3_class(err, "FutureError")
  expect_match(conditionMessage(err), "lost")
  lost <- task_info(g$task_id, controller = ctl)$attempts$worker
  expect_length(lost, 2)
  for (w in lost) expect_match(conditionMessage(err), w, fixed = TRUE)
  # the plan replaces the workers it lost
  expect_equal(future::value(future::future("still serving")), "still serving")
  expect_equal(sum(worker_status(controller = ctl) == "IDLE" |
                     worker_status(controller = ctl) == "BUSY"), 2)
})

test_that("a future's task is visible to the task API until its value is collected", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 1)
  f <- future::future({
    Sys.sleep(0.5)
    "slow"
  })
  expect_true(unname(task_status(f$task_id, controller = ctl)) %in% c("PENDING", "RUNNING"))
  expect_false(future::resolved(f))
  expect_equal(future::value(f), "slow")
  expect_true(future::resolved(f))
  # collected: the session's next wait deletes it
  expect_equal(future::value(future::future(1)), 1)
  expect_equal(unname(task_status(f$task_id, controller = ctl)), "MISSING")
})

test_that("bad plan settings fail with a classed error, before anything runs", {
  ctl <- test_controller()
  expect_error(future::plan(redq_future, namespace = ctl$namespace, url = test_url(),
                            workers = -1),
               class = "redq_error_argument")
  expect_error(redq_future(1, namespace = 3), class = "redq_error_argument")
  expect_error(redq_future(1, timeout = "soon"), class = "redq_error_argument")
  local_redq_plan(ctl, workers = 1)
  expect_equal(future::value(future::future(3)), 3)
})

test_that("futures a function created are cancelled if it fails, kept if it returns", {
  ctl <- test_controller()
  local_redq_plan(ctl, workers = 1)
  make <- function() future::future({
    Sys.sleep(0.5)
    "kept"
  })
  f <- make()
  expect_equal(future::value(f), "kept")
  fail_after_start <- function() {
    g <- future::future(Sys.sleep(30))
    Sys.sleep(0.5)
    stop("failed after starting a future")
  }
  expect_error(fail_after_start(), "failed after starting")
  expect_true(wait_until(function() all(worker_status(controller = ctl) == "IDLE"), timeout = 5))
  expect_equal(future::value(future::future("next")), "next")
})
