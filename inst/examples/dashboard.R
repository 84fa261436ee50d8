# redq dashboard demo: workers busy with a stream of tasks (a few fail, one
# worker is killed mid-run), the dashboard serving them, and a screenshot of
# it taken by headless Chromium, written to dashboard.png (or the file named
# by the first argument). Then everything is stopped.
suppressPackageStartupMessages(library(redq))
options(redq.server = "session", redq.heartbeat = 0.5, redq.lease = 2)
out <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(out)) out <- "dashboard.png"

w <- worker_spawn(4, task_log = TRUE)
cat("workers:", w$id, sep = "\n  ")
ids <- task_create_bulk_call(function(i) {
  Sys.sleep(runif(1, 0.05, 0.4))
  if (i %% 17 == 0) stop(sprintf("input %d is not a valid sample sheet", i))
  cat("processed input", i, "\n")
  sqrt(i)
}, as.list(1:120))
Sys.sleep(2)
# a worker dies mid-run: its task runs again elsewhere
tools::pskill(worker_info(w$id[1])[[1]]$pid, tools::SIGKILL)
task_wait(ids[1:100], timeout = 120)

d <- redq_dashboard(port = redq:::free_port(), block = FALSE, interval = 1)
cat("dashboard:", d$url, "\n")
shot <- processx::process$new("chromium", c(
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
  paste0("--screenshot=", normalizePath(out, mustWork = FALSE)), "--window-size=1400,1100",
  "--virtual-time-budget=3000", d$url), stdout = "|", stderr = "|")
while (shot$is_alive()) httpuv::service(50)
if (!file.exists(out)) stop("no screenshot was written: ", shot$read_all_error())
cat("screenshot of the dashboard:", normalizePath(out), "\n\n")
cat(grep("^redq_(tasks_total|queue_length|workers)\\{", strsplit(redq_metrics(), "\n")[[1]],
         value = TRUE), sep = "\n")

d$stop()
task_cancel(ids)
worker_stop(type = "kill")
redq_server_stop()
cat("\ndone: dashboard, workers and embedded server stopped\n")
