# What idle workers cost one Redis server: start N workers (default 100)
# with the default heartbeat and lease, keep a controller waiting (so its
# reaper runs), and measure, over a quiet minute, the server's commands per
# second by command and the CPU time it spent (INFO commandstats, INFO
# cpu). Usage: Rscript bench/scale.R [workers] [seconds]
suppressPackageStartupMessages(library(redq))
args <- commandArgs(trailingOnly = TRUE)
n <- if (length(args) >= 1) as.integer(args[[1]]) else 100L
window <- if (length(args) >= 2) as.numeric(args[[2]]) else 60

srv <- redq:::server_launch()
ctl <- redq_controller("scale", url = srv$url)
cmd <- function(...) redq:::redis_command(c(...), controller = ctl)
info <- function(section) {
  lines <- strsplit(cmd("INFO", section), "\r\n")[[1]]
  kv <- strsplit(grep(":", lines, value = TRUE), ":", fixed = TRUE)
  stats::setNames(vapply(kv, `[[`, "", 2L), vapply(kv, `[[`, "", 1L))
}
cpu <- function() {
  i <- info("cpu")
  as.numeric(i[["used_cpu_sys"]]) + as.numeric(i[["used_cpu_user"]])
}

cat(sprintf("starting %d workers (heartbeat %s s, lease %s s) ...\n", n,
            getOption("redq.heartbeat", 1), getOption("redq.lease", 5)))
t0 <- Sys.time()
w <- worker_spawn(n, timeout = 600)
cat(sprintf("%d workers registered in %.0f s; settling\n", length(w$id),
            as.numeric(Sys.time() - t0, units = "secs")))
Sys.sleep(10)

# one long task keeps this controller in a wait, whose reaper runs every
# redq.reap_interval seconds, as it does while a loop runs
long <- task_create_expr(Sys.sleep(window + 30))
Sys.sleep(2)
cmd("CONFIG", "RESETSTAT")
c0 <- cpu()
start <- Sys.time()
try(task_wait(long, timeout = window), silent = TRUE)
elapsed <- as.numeric(Sys.time() - start, units = "secs")
c1 <- cpu()
stats <- info("commandstats")
task_cancel(long)

rows <- do.call(rbind, lapply(names(stats), function(k) {
  f <- strsplit(stats[[k]], ",", fixed = TRUE)[[1]]
  v <- stats::setNames(as.numeric(sub(".*=", "", f)), sub("=.*", "", f))
  data.frame(command = sub("^cmdstat_", "", k), per_s = v[["calls"]] / elapsed,
             usec_per_call = v[["usec_per_call"]],
             cpu_share = v[["usec"]] / 1e6 / elapsed)
}))
rows <- rows[order(-rows$per_s), ]
rows <- rows[rows$command != "config", ]
cat(sprintf("\n%d idle workers, one waiting controller, %.0f s:\n", n, elapsed))
print(format(rows, digits = 3), row.names = FALSE)
cat(sprintf("\ntotal: %.0f commands/s, %.2f per worker per second; commands took %.2f%% of a core\n",
            sum(rows$per_s), sum(rows$per_s) / n, 100 * sum(rows$cpu_share)))
cat(sprintf("redis-server process CPU (user + sys): %.2f%% of a core\n", 100 * (c1 - c0) / elapsed))

worker_stop(w, type = "kill", wait = 30)
redq_destroy(controller = ctl)
redq:::server_kill(srv)
