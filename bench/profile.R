# Where the time of a task goes: for the bulk path (submit n trivial
# tasks, wait, fetch) and the one-task path (create, wait, fetch, one at
# a time), the CPU time each process spends per task (redis-server, the
# controller, each worker; all threads, from /proc/<pid>/task/*/schedstat)
# and the Redis commands per task (INFO commandstats: calls and the
# server's microseconds in each).
#
#   make profile, or R_LIBS=.lib Rscript bench/profile.R [n_bulk] [n_single]
#
# On 2 cores the sum of the CPU columns bounds throughput: 4 busy
# processes (server, controller, 2 workers) share 2 cores.

suppressPackageStartupMessages(library(redq))
args <- as.integer(commandArgs(trailingOnly = TRUE))
n_bulk <- if (length(args) >= 1) args[[1]] else 20000L
n_single <- if (length(args) >= 2) args[[2]] else 2000L

cpu_ns <- function(pid) {
  files <- Sys.glob(sprintf("/proc/%d/task/*/schedstat", pid))
  sum(vapply(files, function(f) {
    x <- tryCatch(scan(f, quiet = TRUE, n = 1), error = function(e) 0)
    if (length(x)) x[[1]] else 0
  }, 0))
}

commandstats <- function(ctl) {
  info <- redq:::redis_command(c("INFO", "commandstats"), controller = ctl)
  lines <- grep("^cmdstat_", strsplit(info, "\r\n")[[1]], value = TRUE)
  name <- sub("^cmdstat_([^:]+):.*", "\\1", lines)
  calls <- as.numeric(sub("^[^:]+:calls=([0-9]+).*", "\\1", lines))
  usec <- as.numeric(sub(".*usec=([0-9]+).*", "\\1", lines))
  data.frame(command = name, calls = calls, usec = usec)
}

# Scripts by their SHA: server microseconds and calls, from the slow log
# (every command logged), with the arguments of one call to tell which.
scripts_report <- function(port, n) {
  # the server's password reaches redis-cli through its environment
  out <- redq:::node_command(port, "--raw", "SLOWLOG", "GET", "1000000")
  at <- which(toupper(out) == "EVALSHA")
  if (!length(at)) return(invisible())
  us <- as.numeric(out[at - 1])
  sha <- out[at + 1]
  example <- vapply(at, function(i) paste(utils::head(out[(i + 5):(i + 9)], 5), collapse = " "), "")
  tab <- do.call(rbind, lapply(split(seq_along(sha), sha), function(k) {
    data.frame(sha = substr(sha[k[1]], 1, 8), calls_per_task = round(length(k) / n, 3),
               us_per_task = round(sum(us[k]) / n, 2), us_per_call = round(mean(us[k]), 1),
               args = substr(example[k[1]], 1, 60))
  }))
  cat("Scripts (EVALSHA) by SHA:\n")
  print(tab[order(-tab$us_per_task), ], row.names = FALSE)
}

profile <- function(label, n, run, ctl, pids, port) {
  redq:::redis_command(c("CONFIG", "RESETSTAT"), controller = ctl)
  redq:::redis_command(c("CONFIG", "SET", "slowlog-log-slower-than", "0"), controller = ctl)
  redq:::redis_command(c("CONFIG", "SET", "slowlog-max-len", "1000000"), controller = ctl)
  redq:::redis_command(c("SLOWLOG", "RESET"), controller = ctl)
  before <- vapply(pids, cpu_ns, 0)
  t0 <- Sys.time()
  run()
  wall <- as.numeric(Sys.time() - t0, units = "secs")
  after <- vapply(pids, cpu_ns, 0)
  cs <- commandstats(ctl)
  cs <- cs[!cs$command %in% c("info", "config|resetstat", "config|set", "slowlog|reset"), ]
  cat(sprintf("\n== %s: %d tasks in %.2f s, %.0f tasks/s, %.1f us of wall time per task\n",
              label, n, wall, n / wall, wall / n * 1e6))
  cpu <- (after - before) / 1e3 / n
  cat("CPU per task (us):\n")
  print(data.frame(process = names(pids), us = round(cpu, 1)), row.names = FALSE)
  cat(sprintf("  all processes: %.1f us per task (%.0f%% of 2 cores over the run)\n", sum(cpu),
              100 * sum(after - before) / 1e9 / wall / 2))
  cs$per_task <- round(cs$calls / n, 2)
  cs$us_per_task <- round(cs$usec / n, 2)
  cs <- cs[order(-cs$usec), c("command", "per_task", "us_per_task")]
  cat("Redis commands per task (calls, server us):\n")
  print(cs, row.names = FALSE)
  cat(sprintf("  all commands: %.2f calls, %.1f us per task\n", sum(cs$per_task), sum(cs$us_per_task)))
  redq:::redis_command(c("CONFIG", "SET", "slowlog-log-slower-than", "-1"), controller = ctl)
  scripts_report(port, n)
}

main <- function() {
  srv <- redq:::server_launch()
  on.exit(redq:::server_kill(srv), add = TRUE)
  ctl <- redq_controller("profile", url = srv$url, default = FALSE)
  w <- worker_spawn(2, controller = ctl)
  on.exit(worker_stop(w$id, type = "kill", wait = 5, controller = ctl), add = TRUE, after = FALSE)
  pids <- c(`redis-server` = srv$process$get_pid(), controller = Sys.getpid(),
            stats::setNames(vapply(worker_info(w$id, ctl), function(i) as.integer(i$pid), 1L),
                            paste("worker", 1:2)))
  warm <- task_create_bulk_call(identity, as.list(1:500), controller = ctl)
  task_wait(warm, progress = FALSE, controller = ctl)
  task_delete(warm, controller = ctl)

  profile("bulk", n_bulk, function() {
    ids <- task_create_bulk_call(identity, as.list(seq_len(n_bulk)), controller = ctl)
    task_wait(ids, progress = FALSE, controller = ctl)
    res <- task_results(ids, controller = ctl)
    stopifnot(identical(res[[n_bulk]], n_bulk))
    task_delete(ids, controller = ctl)
  }, ctl, pids, srv$port)

  Sys.sleep(1.5)
  profile("one at a time", n_single, function() {
    ids <- character(n_single)
    for (i in seq_len(n_single)) {
      id <- task_create_expr(1, controller = ctl)
      task_wait(id, progress = FALSE, controller = ctl)
      stopifnot(identical(task_result(id, controller = ctl), 1))
      ids[[i]] <- id
    }
    task_delete(ids, controller = ctl)
  }, ctl, pids, srv$port)
}

main()
