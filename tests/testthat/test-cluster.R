# redq_cluster() driven through base R's parallel functions and the
# packages built on them (doParallel, future), compared with a real PSOCK
# cluster where results should agree.

local_cluster <- function(ctl, n = 2, ..., envir = parent.frame()) {
  cl <- redq_cluster(n, namespace = ctl$namespace, url = test_url(), ...)
  withr::defer(parallel::stopCluster(cl), envir = envir)
  cl
}

node_pids <- function(ctl) {
  vapply(worker_info(controller = ctl), function(i) as.integer(i$pid), 1L)
}

test_that("parLapply, parSapply and clusterCall run on the cluster's nodes", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  expect_s3_class(cl, "cluster")
  expect_length(cl, 2)
  pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  expect_length(unique(pids), 2)
  expect_setequal(pids, node_pids(ctl))
  expect_equal(parallel::parLapply(cl, 1:1000, sqrt), as.list(sqrt(1:1000)))
  expect_equal(parallel::parSapply(cl, c(a = 1, b = 4), sqrt), c(a = 1, b = 2))
  expect_equal(parallel::clusterApply(cl, 1:2, function(i) i * 10), list(10, 20))
})

test_that("clusterExport and clusterEvalQ reach every node and stay there", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  offset <- 100
  parallel::clusterExport(cl, "offset", envir = environment())
  parallel::clusterEvalQ(cl, library(tools))
  expect_equal(unlist(parallel::clusterEvalQ(cl, offset + 1)), c(101, 101))
  expect_equal(unlist(parallel::clusterEvalQ(cl, "tools" %in% .packages())), c(TRUE, TRUE))
  expect_equal(parallel::parSapply(cl, 1:6, function(i) i + offset), 101:106)
  expect_equal(parallel::parSapplyLB(cl, 1:6, function(i) file_ext("a.txt") == "txt"), rep(TRUE, 6))
})

test_that("clusterSetRNGStream gives the numbers a PSOCK cluster gives", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  draw <- function(cl) {
    parallel::clusterSetRNGStream(cl, 123)
    parallel::parSapply(cl, 1:8, function(i) stats::runif(1))
  }
  ours <- draw(cl)
  expect_identical(draw(cl), ours)
  ps <- parallel::makePSOCKcluster(2)
  withr::defer(parallel::stopCluster(ps))
  expect_identical(draw(ps), ours)
})

test_that("load-balanced calls spread over the nodes and keep their order", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  out <- parallel::clusterApplyLB(cl, 1:8, function(i) {
    Sys.sleep(0.1)
    c(i, Sys.getpid())
  })
  expect_equal(vapply(out, `[[`, 1, 1), 1:8)
  expect_setequal(unique(vapply(out, `[[`, 1, 2)), node_pids(ctl))
  expect_equal(parallel::parLapplyLB(cl, 1:50, function(i) i^2), as.list((1:50)^2))
})

test_that("foreach on registerDoParallel(cl) and plan(cluster, workers = cl) work", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  doParallel::registerDoParallel(cl)
  withr::defer(foreach::registerDoSEQ())
  expect_equal(foreach::getDoParWorkers(), 2)
  k <- 3
  expect_equal(foreach::foreach(i = 1:10, .combine = c) %dopar% (i * k), (1:10) * 3)
  future::plan(future::cluster, workers = cl)
  withr::defer(future::plan(future::sequential))
  # future 1.31 resolves futures on nodes other than its own socket nodes
  # by waiting for them, and says so
  r <- withCallingHandlers(
    future.apply::future_lapply(1:6, function(i) i * k),
    warning = function(w) {
      expect_match(conditionMessage(w), "resolved() is not yet implemented", fixed = TRUE)
      invokeRestart("muffleWarning")
    })
  expect_equal(r, as.list((1:6) * 3))
})

test_that("an error on a node is signalled as parallel signals it, and the cluster goes on", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  expect_error(parallel::parLapply(cl, 1:2, function(i) if (i == 2) stop("bad input ", i) else i),
               "one node produced an error: bad input 2")
  expect_error(parallel::clusterEvalQ(cl, stop("everywhere")), "2 nodes produced errors")
  expect_equal(parallel::parSapply(cl, 1:4, identity), 1:4)
})

test_that("a cluster of the workers already serving a queue", {
  ctl <- test_controller(queue = "shared")
  ids <- worker_spawn(2, queue = "shared")$id
  cl <- redq_cluster(namespace = ctl$namespace, url = test_url(), queue = "shared")
  expect_length(cl, 2)
  expect_setequal(unlist(parallel::clusterCall(cl, Sys.getpid)), node_pids(ctl))
  parallel::stopCluster(cl)
  # it stops only what it started
  expect_setequal(worker_list(ctl), ids)
  expect_error(redq_cluster(namespace = ctl$namespace, url = test_url(), queue = "nobody"),
               class = "redq_error_worker")
})

test_that("stopCluster stops the workers and removes the cluster's keys", {
  ctl <- test_controller()
  cl <- redq_cluster(2, namespace = ctl$namespace, url = test_url())
  ids <- redq:::serving_workers(ctl, cl[[1]]$cluster$queue)
  expect_length(ids, 2)
  expect_equal(parallel::parSapply(cl, 1:4, identity), 1:4)
  parallel::stopCluster(cl)
  expect_equal(worker_list(ctl), character())
  expect_false(any(grepl(":job:|:task:", namespace_keys(ctl))))
  expect_error(parallel::parLapply(cl, 1:2, identity), class = "redq_error_argument")
})

test_that("bad arguments fail with classed errors", {
  ctl <- test_controller()
  expect_error(redq_cluster(0, namespace = ctl$namespace, url = test_url()),
               class = "redq_error_argument")
  expect_error(redq_cluster(2, namespace = ctl$namespace, url = test_url(), queue = "@x"),
               class = "redq_error")
  expect_equal(worker_list(ctl), character())
})

test_that("a node whose worker is killed is replaced, set up again, and the call runs", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  secret <- 42
  parallel::clusterExport(cl, "secret", envir = environment())
  first <- unlist(parallel::clusterCall(cl, Sys.getpid))
  marker <- tempfile()
  withr::defer(unlink(marker))
  # node 1's worker dies in the middle of its chunk, once
  r <- suppressWarnings(parallel::clusterApply(cl, 1:2, function(i, marker) {
    if (i == 1 && !file.exists(marker)) {
      file.create(marker)
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    c(i + secret, Sys.getpid())
  }, marker))
  expect_equal(vapply(r, `[[`, 1, 1), c(43, 44))
  expect_false(r[[1]][[2]] == first[[1]])
  expect_equal(r[[2]][[2]], first[[2]])
  # the replacement got the export before anything else
  expect_equal(unlist(parallel::clusterEvalQ(cl, secret)), c(42, 42))
  expect_length(worker_list(ctl), 2)
})

test_that("a load-balanced call whose worker dies runs on another node", {
  ctl <- test_controller()
  cl <- local_cluster(ctl)
  marker <- tempfile()
  withr::defer(unlink(marker))
  r <- suppressWarnings(parallel::clusterApplyLB(cl, 1:6, function(i, marker) {
    if (i == 3 && !file.exists(marker)) {
      file.create(marker)
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    i * 2
  }, marker))
  expect_equal(unlist(r), (1:6) * 2)
})
