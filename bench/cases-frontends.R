# The future backend and the parallel cluster against what their users
# would otherwise pick: plan(multicore) and plan(multisession) with 2
# workers for future.apply, and PSOCK and FORK clusters of 2 for parLapply.

FUT_N <- 2000L

time_future <- function(system, baseline, target = NULL) {
  run <- function() {
    r <- future.apply::future_lapply(seq_len(FUT_N), identity)
    stopifnot(identical(r[[FUT_N]], FUT_N))
  }
  run() # warm-up: starts the workers of plans that start them lazily
  t <- vapply(seq_len(reps(5, 2)), function(i) elapsed(run()), 0)
  record(sprintf("future_lapply(1:%d, identity)", FUT_N), system, t, "s",
         group = "future-lapply", baseline = baseline, target = target)
  one <- function() stopifnot(is.null(future::value(future::future(NULL))))
  one()
  t1 <- vapply(seq_len(reps(200, 20)), function(i) elapsed(one()), 0)
  record("future: one future() + value()", system, t1 * 1000, "ms", group = "future-one",
         baseline = baseline)
}

case_future <- function(which) {
  on.exit(future::plan(future::sequential), add = TRUE)
  switch(which,
    redq = {
      future::plan(redq_future, namespace = "bench-future", queue = "bench-future", workers = 2)
      time_future("redq", NULL, target = list(
        label = "<= 1.2x mc, < 1x psock",
        ok = function(m, r) !is.na(r$mc) && !is.na(r$psock) && r$mc <= 1.2 && r$psock < 1))
    },
    multicore = {
      future::plan(future::multicore, workers = 2)
      time_future("plan(multicore)", "mc")
    },
    multisession = {
      future::plan(future::multisession, workers = 2)
      time_future("plan(multisession)", "psock")
    },
    sequential = {
      future::plan(future::sequential)
      time_future("plan(sequential)", "seq")
    })
}

time_parlapply <- function(cl, system, baseline, target = NULL) {
  run <- function() {
    r <- parallel::parLapply(cl, seq_len(FUT_N), identity)
    stopifnot(identical(r[[FUT_N]], FUT_N))
  }
  run()
  t <- vapply(seq_len(reps(5, 2)), function(i) elapsed(run()), 0)
  record(sprintf("parLapply(cl, 1:%d, identity)", FUT_N), system, t, "s", group = "parlapply",
         baseline = baseline, target = target)
  lb <- function() {
    r <- parallel::parLapplyLB(cl, seq_len(200), identity)
    stopifnot(identical(r[[200]], 200L))
  }
  lb()
  t <- vapply(seq_len(reps(5, 2)), function(i) elapsed(lb()), 0)
  record("parLapplyLB(cl, 1:200, identity)", system, t, "s", group = "parlapply-lb",
         baseline = baseline)
}

case_parallel <- function(type) {
  t <- elapsed(cl <- switch(type,
    redq = redq_cluster(2, namespace = "bench-cluster"),
    FORK = parallel::makeForkCluster(2),
    PSOCK = parallel::makePSOCKcluster(2)))
  bench$clusters[[paste("parallel", type)]] <- cl
  on.exit({
    parallel::stopCluster(cl)
    bench$clusters[[paste("parallel", type)]] <- NULL
  }, add = TRUE)
  if (type == "redq") {
    record("start-up: cluster of 2", "redq", t, "s", group = "cluster-startup")
    time_parlapply(cl, "redq", NULL, target = target_ratio(1, "psock"))
  } else {
    baseline <- if (type == "FORK") "fork" else "psock"
    record("start-up: cluster of 2", paste("parallel", type), t, "s", group = "cluster-startup",
           baseline = baseline)
    time_parlapply(cl, paste("parallel", type), baseline)
  }
}

# BiocParallel: RedisParam(2) against MulticoreParam(2) and SnowParam(2),
# each started once (workers kept between calls), and per call (a param
# that is not started starts and stops its workers around bplapply()).
time_bplapply <- function(make, system, baseline, target = NULL) {
  run <- function(p) {
    r <- BiocParallel::bplapply(seq_len(FUT_N), identity, BPPARAM = p)
    stopifnot(identical(r[[FUT_N]], FUT_N))
  }
  p <- make()
  BiocParallel::bpstart(p)
  on.exit(BiocParallel::bpstop(p), add = TRUE)
  run(p)
  t <- vapply(seq_len(reps(5, 2)), function(i) elapsed(run(p)), 0)
  record(sprintf("bplapply(1:%d, identity), started", FUT_N), system, t, "s",
         group = "bplapply", baseline = baseline, target = target)
  BiocParallel::bpstop(p)
  t <- vapply(seq_len(reps(3, 1)), function(i) elapsed(run(make())), 0)
  record(sprintf("bplapply(1:%d, identity), per call", FUT_N), system, t, "s",
         group = "bplapply-call", baseline = baseline)
}

case_biocparallel <- function(which) {
  switch(which,
    redq = time_bplapply(function() RedisParam(2, namespace = "bench-bioc"), "redq", NULL,
                         target = target_ratio(1.2, "mc")),
    multicore = time_bplapply(function() BiocParallel::MulticoreParam(2), "MulticoreParam", "mc"),
    snow = time_bplapply(function() BiocParallel::SnowParam(2), "SnowParam", "psock"))
}

# rush: 10,000 tasks through push_tasks() + wait_for_tasks() +
# fetch_finished_tasks() on 2 workers running worker_loop_default, and a
# decentralised loop's pop_task()/push_results() cycle on 2 workers.
RUSH_N <- 10000L

case_rush <- function() {
  rush <- rsh("bench-rush")
  on.exit(rush$reset(), add = TRUE)
  rush$start_local_workers(fun = function(x, ...) list(y = x), n_workers = 2)
  xss <- lapply(seq_len(RUSH_N), function(i) list(x = i))
  one <- function() {
    keys <- rush$push_tasks(xss)
    rush$wait_for_tasks(keys)
    tab <- rush$fetch_finished_tasks()
    stopifnot(nrow(tab) == RUSH_N)
    rush$reset(type = NULL)
  }
  t <- vapply(seq_len(reps(3, 1)), function(i) elapsed(one()), 0)
  record(sprintf("rush: push + wait + fetch %s tasks", format(RUSH_N, big.mark = ",")), "redq",
         RUSH_N / t, "tasks/s", target = target_at_least(5000, "tasks/s"))
  rush$reset()
  loop <- function(rush) {
    while (!rush$terminated_on_idle) {
      task <- rush$pop_task(timeout = 0.1)
      if (!is.null(task)) rush$push_results(task$key, list(list(y = task$xs$x)))
    }
  }
  cycle <- function() {
    keys <- rush$push_tasks(xss, terminate_workers = TRUE)
    rush$start_local_workers(worker_loop = loop, n_workers = 2)
    t0 <- proc.time()[["elapsed"]]
    rush$wait_for_tasks(keys)
    t <- proc.time()[["elapsed"]] - t0
    rush$reset()
    t
  }
  t <- vapply(seq_len(reps(3, 1)), function(i) cycle(), 0)
  record("rush: worker loop pop_task + push_results", "redq", RUSH_N / t, "tasks/s",
         target = target_at_least(5000, "tasks/s"))
}
