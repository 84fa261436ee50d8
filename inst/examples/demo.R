# redq demo: local workers on the embedded Redis server (started and stopped
# by redq when nothing else is configured), a foreach loop and a few queued
# tasks.
suppressPackageStartupMessages(library(redq))
# a private server for this demo, stopped when it ends (by default redq
# starts your own server and leaves it running for later sessions)
options(redq.server = "session")

ctl <- redq_controller()
# its address, never its password
cat("Redis server:", ctl$address,
    if (is.null(redq:::redq_env$server)) "" else
      "(embedded, private to this session: a Unix socket only you can reach, a password, a secret)",
    "\n\n")

cat("== foreach %dopar% on 2 local workers\n")
registerDoRedis("jobs")
startLocalWorkers(n = 2, queue = "jobs")
cat("workers:", getDoParWorkers(), "\n")

set.seed(1)
t0 <- Sys.time()
pi_hat <- foreach(icount(8), .combine = sum, .inorder = FALSE) %dopar%
  4 * sum((runif(250000)^2 + runif(250000)^2) < 1) / 2e6
cat(sprintf("Monte Carlo pi: %.5f (%.2f s)\n", pi_hat, as.numeric(Sys.time() - t0, units = "secs")))

squares <- foreach(i = 1:10, .combine = c) %dopar% i^2
cat("squares:", squares, "\n")

pids <- foreach(i = 1:100, .combine = c) %dopar% Sys.getpid()
cat("iterations per worker process:", paste(table(pids), collapse = ", "), "\n\n")

cat("== queued tasks\n")
ids <- c(
  task_create_expr(sqrt(2)),
  task_create_call(function(n) sum(seq_len(n)), list(100)),
  task_create_expr(stop("this task fails on purpose")))
worker_spawn(1)
task_wait(ids, timeout = 60)
print(task_status(ids))
cat("sqrt(2) =", task_result(ids[1]), "\n")
cat("sum(1:100) =", task_result(ids[2]), "\n")
print(task_result(ids[3]))
info <- task_info(ids[1])
cat(sprintf("task %s ran on %s (attempt %d)\n", info$id, info$worker, info$attempt))

removeQueue("jobs")
worker_stop()
redq_server_stop()
cat("\ndone: workers stopped, embedded server stopped\n")
