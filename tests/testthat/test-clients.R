# Packages that call foreach (and BiocParallel through foreach) for their
# users, run on redq's foreach backend.

# A package of the test's own whose exported functions run foreach loops
# that call its internal helper and use the ... of the enclosing function.
local_client_package <- function(envir = parent.frame()) {
  src <- withr::local_tempdir(.local_envir = envir)
  lib <- withr::local_tempdir(.local_envir = envir)
  pkg <- file.path(src, "redqclient")
  dir.create(file.path(pkg, "R"), recursive = TRUE)
  writeLines(c("Package: redqclient", "Version: 0.0.1", "Title: Test Client",
               "Description: Calls foreach.", "License: MIT", "Imports: foreach",
               "Authors@R: person('A', 'B', email = 'a@b.c', role = c('aut', 'cre'))"),
             file.path(pkg, "DESCRIPTION"))
  writeLines(c("export(run_loop, run_dots)", "importFrom(foreach, foreach, '%dopar%')"),
             file.path(pkg, "NAMESPACE"))
  writeLines(c(
    "helper <- function(x) x * 100",
    "run_loop <- function(n) foreach(i = seq_len(n), .combine = c) %dopar% helper(i)",
    "run_dots <- function(n, ...) {",
    "  foreach(i = seq_len(n), .combine = c) %dopar% {",
    "    s <- 0",
    "    for (k in seq_len(i)) s <- s + helper(1)",
    "    s + sum(...)",
    "  }",
    "}"), file.path(pkg, "R", "client.R"))
  out <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-test-load", "-l", lib, pkg),
                 stdout = TRUE, stderr = TRUE)
  expect_true(dir.exists(file.path(lib, "redqclient")), label = paste(out, collapse = "\n"))
  withr::local_libpaths(lib, action = "prefix", .local_envir = envir)
  lib
}

test_that("a package's foreach loop calls the package's internal helper and its ...", {
  ctl <- test_controller(queue = "clients")
  local_client_package()
  registerDoRedis("clients", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  log <- withr::local_tempdir()
  worker_spawn(2, queue = "clients", log = log)
  expect_equal(redqclient::run_loop(4), c(100, 200, 300, 400))
  expect_equal(redqclient::run_dots(3, 1, 2), c(103, 203, 303))
  # the workers printed no warning the user's code did not cause
  logs <- unlist(lapply(list.files(log, full.names = TRUE), readLines))
  expect_false(any(grepl("incorrect context|Warning", logs)), label = paste(logs, collapse = "\n"))
})

test_that("plyr's .parallel = TRUE and BiocParallel's registered DoparParam run on redq", {
  ctl <- test_controller(queue = "clients")
  registerDoRedis("clients", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  worker_spawn(2, queue = "clients")
  # (doParallel on a PSOCK cluster warns here that '...' "may be used in an
  # incorrect context"; redq does not)
  expect_no_warning(got <- plyr::llply(1:6, function(i) i^2, .parallel = TRUE))
  expect_equal(got, as.list((1:6)^2))
  df <- data.frame(g = rep(c("a", "b", "c"), each = 4), v = 1:12)
  got <- plyr::ddply(df, "g", function(d) data.frame(total = sum(d$v), pid = Sys.getpid()),
                     .parallel = TRUE)
  expect_equal(got$total, c(10, 26, 42))
  expect_false(any(got$pid == Sys.getpid()))
  # arguments plyr passes on unevaluated (summarise's), whose variables
  # exist only in each piece of the data: they travel as expressions (on a
  # PSOCK cluster this fails, "'...' used in an incorrect context")
  got <- plyr::ddply(df, "g", plyr::summarise, s = sum(v), n = length(v), .parallel = TRUE)
  expect_equal(got, data.frame(g = c("a", "b", "c"), s = c(10, 26, 42), n = 4L))
  # and arguments that can be evaluated here are, once, as before
  offset <- 100
  got <- plyr::llply(1:3, function(i, k) i + k, k = offset, .parallel = TRUE)
  expect_equal(got, as.list(101:103))
  old <- BiocParallel::registered()
  withr::defer(for (p in rev(old)) BiocParallel::register(p))
  BiocParallel::register(BiocParallel::DoparParam())
  expect_equal(BiocParallel::bplapply(1:5, function(i) i + 0.5), as.list(1:5 + 0.5))
})

test_that("closeAllConnections() between two loops of every front end leaves the second working", {
  ctl <- test_controller()
  # in a session of its own: closing every connection here would close the
  # test runner's
  got <- callr::r(function(url, ns) {
    library(redq)
    library(foreach)
    loops <- function() {
      registerDoRedis("cac", url = url, namespace = ns)
      startLocalWorkers(1, queue = "cac", linger = 0, url = url, namespace = ns)
      a <- foreach(i = 1:3, .combine = c) %dopar% i
      removeQueue("cac")
      future::plan(redq_future, namespace = ns, url = url, workers = 1)
      b <- future::value(future::future(2))
      future::plan(future::sequential)
      cl <- redq_cluster(1, namespace = ns, url = url)
      d <- unlist(parallel::parLapply(cl, 1:2, function(i) i * 3))
      parallel::stopCluster(cl)
      p <- RedisParam(2, namespace = ns, url = url)
      e <- unlist(BiocParallel::bplapply(1:2, function(i) i + 10, BPPARAM = p))
      ctl <- redq_controller(ns, url = url, default = FALSE)
      w <- worker_spawn(1, controller = ctl)
      id <- task_create_expr(7, controller = ctl)
      task_wait(id, timeout = 30, controller = ctl)
      f <- task_result(id, controller = ctl)
      worker_stop(w, controller = ctl)
      list(a, b, d, e, f)
    }
    first <- loops()
    closeAllConnections()
    second <- loops()
    list(first = first, second = second)
  }, list(test_url(), ctl$namespace), env = c(callr::rcmd_safe_env(),
                                             REDQ_SECRET = Sys.getenv("REDQ_SECRET")))
  want <- list(1:3, 2, c(3, 6), c(11, 12), 7)
  expect_equal(got$first, want)
  expect_equal(got$second, want)
})
