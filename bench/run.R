# redq benchmarks against doParallel (registerDoParallel(cores = 2), FORK
# and PSOCK clusters) and sequential %do%; its future backend against
# plan(multicore) and plan(multisession); its parallel cluster against
# PSOCK and FORK clusters.
#
#   R_LIBS=.lib Rscript bench/run.R          full run (a few minutes)
#   R_LIBS=.lib Rscript bench/run.R quick    fewer repetitions, smaller scale case
#
# Progress goes to stderr, the results table to stdout. Everything runs
# against a private redis-server started here; it, every worker and every
# cluster are stopped when the script ends, also on error.

suppressPackageStartupMessages({
  library(redq)
  library(foreach)
})

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0L) return(getwd()) # sourced interactively from bench/
  dirname(normalizePath(sub("^--file=", "", arg[[1]])))
}

dir <- script_dir()
for (f in c("helpers.R", "cases-task.R", "cases-foreach.R", "cases-frontends.R",
            "cases-system.R")) {
  source(file.path(dir, f))
}

main <- function(args = commandArgs(trailingOnly = TRUE)) {
  bench$quick <- "quick" %in% args
  progress(sprintf("redq %s benchmarks%s", utils::packageVersion("redq"),
                   if (bench$quick) " (quick)" else ""))
  srv <- redq:::server_launch()
  old_url <- Sys.getenv("REDIS_URL", NA)
  Sys.setenv(REDIS_URL = srv$url)
  on.exit({
    progress("cleaning up")
    cleanup_processes()
    redq:::server_kill(srv)
    if (is.na(old_url)) Sys.unsetenv("REDIS_URL") else Sys.setenv(REDIS_URL = old_url)
  }, add = TRUE)
  progress("redis-server on port ", srv$port)
  # One queue per case, so workers a failed case left behind cannot take
  # another case's tasks.
  ctl <- function(queue) redq_controller("bench", queue = queue, default = FALSE)

  # Throughput-sensitive cases first, on a quiet server; the scale case
  # leaves the most behind and runs last.
  run_case("task throughput", case_task_throughput, ctl("throughput"))
  run_case("round trip", case_round_trip, ctl("round-trip"))
  run_case("signed payloads", case_signed, ctl)
  run_case("foreach redq", case_foreach_redq)
  run_case("foreach cores=2", case_foreach_mc)
  run_case("foreach FORK", case_foreach_cluster, "FORK")
  run_case("foreach PSOCK", case_foreach_cluster, "PSOCK")
  run_case("foreach sequential", case_foreach_seq)
  for (plan in c("redq", "multicore", "multisession", "sequential")) {
    run_case(paste("future", plan), case_future, plan)
  }
  for (type in c("redq", "PSOCK", "FORK")) run_case(paste("parallel", type), case_parallel, type)
  for (which in c("redq", "multicore", "snow")) {
    run_case(paste("BiocParallel", which), case_biocparallel, which)
  }
  run_case("rush", case_rush)
  run_case("worker start-up", case_startup, ctl("start-up"))
  run_case("idle worker memory", case_worker_memory, ctl("memory"))
  run_case("recovery", case_recovery, ctl("recovery"))
  run_case("large results", case_large_results, ctl("large"))
  run_case("scale", case_scale, ctl("scale"))

  note("doParallel on a cluster sends one iteration per message by default (no prescheduling),",
       " so its trivial-loop rows compare with both redq rows")
  print_results()
  length(bench$failures) == 0L
}

ok <- tryCatch(main(), error = function(e) {
  message("bench: ", conditionMessage(e))
  FALSE
})
if (!ok) quit(status = 1)
