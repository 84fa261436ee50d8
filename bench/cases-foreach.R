# foreach cases: the same loops on redq (doRedis interface), doParallel
# with registerDoParallel(cores = 2) (mclapply, what most people use),
# doParallel FORK and PSOCK clusters of 2 workers, and sequential %do%.
# Workers and clusters are started before the loops are timed; their
# start-up is recorded separately.

FE_N <- 2000L # iterations of the trivial loop
FE_COMPUTE <- 10L # iterations of the compute-bound loop

# The loops, as functions of the operator so every system runs the same code.
loop_trivial <- function(`%op%`, opts = NULL) {
  r <- foreach(i = seq_len(FE_N), .options.redis = opts) %op% i
  stopifnot(length(r) == FE_N, identical(r[[FE_N]], FE_N))
}
loop_compute <- function(`%op%`) {
  r <- foreach(i = seq_len(FE_COMPUTE)) %op% sum(runif(2e6))
  stopifnot(length(r) == FE_COMPUTE)
}

# Compute-bound work without random numbers. It separates two costs the
# runif() loop mixes: redq gives every iteration its own L'Ecuyer-CMRG
# stream (reproducible whatever the workers), and runif() on that generator
# is about twice as slow as on the Mersenne-Twister the doParallel workers
# use. Being an R-level loop, it also shows whether a backend byte-compiles
# the loop body, as foreach's own backends (doSEQ, doParallel) do.
loop_compute_norng <- function(`%op%`) {
  r <- foreach(i = seq_len(FE_COMPUTE)) %op% {
    s <- 0
    for (j in seq_len(3e6)) s <- s + sqrt(j)
    s
  }
  stopifnot(length(r) == FE_COMPUTE)
}

time_loops <- function(system, `%op%`, chunk1 = FALSE) {
  loop_trivial(`%op%`) # warm-up: first loop loads packages, JIT-compiles
  t <- vapply(seq_len(reps(5, 2)), function(i) elapsed(loop_trivial(`%op%`)), 0)
  record(sprintf("foreach: %d trivial", FE_N), system, t, "s", group = "fe-trivial",
         baseline = baseline_of(system),
         target = if (system == "redq") target_ratio(1, "mc"))
  if (chunk1) {
    t1 <- vapply(seq_len(reps(3, 1)), function(i) {
      elapsed(loop_trivial(`%op%`, list(chunkSize = 1)))
    }, 0)
    record(sprintf("foreach: %d trivial, chunkSize=1", FE_N), system, t1, "s",
           group = "fe-trivial")
    record(sprintf("foreach: %d trivial, chunkSize=1", FE_N), system, FE_N / t1, "it/s",
           target = target_at_least(8000, "it/s"))
  }
  tc <- vapply(seq_len(reps(5, 2)), function(i) elapsed(loop_compute(`%op%`)), 0)
  record(sprintf("foreach: %d x sum(runif(2e6))", FE_COMPUTE), system, tc, "s",
         group = "fe-compute", baseline = baseline_of(system),
         target = if (system == "redq") target_ratio(1.15, "fork"))
  if (system == "redq") {
    # the same loop against doParallel with reproducible streams as well
    # (clusterSetRNGStream): the like-for-like comparison of the RNG cost
    record(sprintf("foreach: %d x sum(runif(2e6)), both L'Ecuyer", FE_COMPUTE), system, tc, "s",
           group = "fe-compute-lecuyer", target = target_ratio(1.15, "fork"))
  }
  tn <- vapply(seq_len(reps(3, 1)), function(i) elapsed(loop_compute_norng(`%op%`)), 0)
  record(sprintf("foreach: %d x 3e6 sqrt (no RNG)", FE_COMPUTE), system, tn, "s",
         group = "fe-compute-norng", baseline = baseline_of(system))
}

baseline_of <- function(system) {
  switch(system, "doParallel cores=2" = "mc", "doParallel FORK" = "fork",
         "doParallel PSOCK" = "psock", "sequential %do%" = "seq", NULL)
}

case_foreach_redq <- function() {
  queue <- "bench-fe"
  registerDoRedis(queue, namespace = "bench-fe")
  on.exit(foreach::registerDoSEQ(), add = TRUE)
  t <- elapsed(startLocalWorkers(2, queue, namespace = "bench-fe", linger = 0))
  on.exit(removeQueue(queue), add = TRUE, after = FALSE)
  progress(sprintf("  redq: 2 workers registered in %.3f s", t))
  stopifnot(foreach::getDoParWorkers() == 2L)
  time_loops("redq", `%dopar%`, chunk1 = TRUE)
}

# registerDoParallel(cores = 2): each loop forks its workers through
# mclapply (prescheduled: one chunk of iterations per worker).
case_foreach_mc <- function() {
  doParallel::registerDoParallel(cores = 2)
  on.exit({
    doParallel::stopImplicitCluster()
    foreach::registerDoSEQ()
  }, add = TRUE)
  time_loops("doParallel cores=2", `%dopar%`)
}

case_foreach_cluster <- function(type) {
  system <- paste("doParallel", type)
  make <- function() {
    cl <- if (type == "FORK") parallel::makeForkCluster(2) else parallel::makePSOCKcluster(2)
    bench$clusters[[type]] <- cl # stopped on exit should anything below fail
    cl
  }
  # start-up on spare clusters, stopped at once; the last one runs the loops
  t <- vapply(seq_len(reps(3, 1)), function(i) {
    dt <- elapsed(cl <- make())
    parallel::stopCluster(cl)
    bench$clusters[[type]] <- NULL
    dt
  }, 0)
  cl <- make()
  on.exit({
    parallel::stopCluster(cl)
    bench$clusters[[type]] <- NULL
    foreach::registerDoSEQ()
  }, add = TRUE)
  record("start-up: 2 workers", system, t, "s", group = "startup", baseline = baseline_of(system))
  doParallel::registerDoParallel(cl)
  time_loops(system, `%dopar%`)
  if (type == "FORK") {
    parallel::clusterSetRNGStream(cl, 1)
    tl <- vapply(seq_len(reps(5, 2)), function(i) elapsed(loop_compute(`%dopar%`)), 0)
    record(sprintf("foreach: %d x sum(runif(2e6)), both L'Ecuyer", FE_COMPUTE),
           "doParallel FORK", tl, "s", group = "fe-compute-lecuyer", baseline = "fork")
  }
  if (type == "PSOCK") {
    # a plain R worker, idle after the loops: the memory baseline for redq's
    pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
    record("memory: idle worker RSS (after loops)", system, vapply(pids, proc_status_mb, 0), "MB",
           group = "worker-rss", baseline = "psock")
  }
}

case_foreach_seq <- function() {
  foreach::registerDoSEQ()
  time_loops("sequential %do%", `%do%`)
}
