# Every test run gets a private redis-server on a free loopback port, and
# every test a fresh namespace whose keys and workers are removed when the
# test ends, even when it fails.

if (is.null(getOption("redq.test_server")) || !getOption("redq.test_server")$process$is_alive()) {
  srv <- redq:::server_launch()
  options(redq.test_server = srv)
  withr::defer(redq:::server_kill(srv), envir = testthat::teardown_env())
}
Sys.setenv(REDIS_URL = getOption("redq.test_server")$url)
# as on the servers redq starts for its users, everything R unserializes
# is sealed with a secret (tests of unsealed values unset it)
if (!nzchar(Sys.getenv("REDQ_SECRET"))) Sys.setenv(REDQ_SECRET = redq:::secure_token())
# short leases so that fault tests run in seconds
options(redq.heartbeat = 0.2, redq.lease = 1, redq.reap_interval = 0.2, redq.grace = 1)

test_url <- function() getOption("redq.test_server")$url

# A controller on a new namespace, made the default; its workers and keys
# go away with the calling test.
test_controller <- function(queue = "default", envir = parent.frame()) {
  ns <- paste0("t", substr(basename(tempfile("")), 5, 14))
  ctl <- redq_controller(ns, url = test_url(), queue = queue)
  withr::defer(cleanup_namespace(ctl), envir = envir)
  ctl
}

cleanup_namespace <- function(ctl) {
  try(worker_stop(type = "kill", wait = 2, controller = ctl), silent = TRUE)
  env <- redq:::redq_env
  for (p in env$processes) {
    if (p$is_alive()) p$kill()
  }
  env$processes <- list()
  for (key in names(env$futures)) {
    if (endsWith(key, paste0(" ", ctl$namespace))) env$futures[[key]] <- NULL
  }
  # tests may scan; the package itself never does
  cursor <- "0"
  repeat {
    r <- redq:::redis_command(c("SCAN", cursor, "MATCH", sprintf("redq:{%s}:*", ctl$namespace),
                                "COUNT", "1000"), controller = ctl)
    cursor <- r[[1]]
    keys <- unlist(r[[2]])
    if (length(keys)) redq:::redis_command(c("DEL", keys), controller = ctl)
    if (identical(cursor, "0")) break
  }
}

namespace_keys <- function(ctl) {
  unlist(redq:::redis_command(c("KEYS", sprintf("redq:{%s}:*", ctl$namespace)), controller = ctl))
}

# The largest value any key of the namespace holds, in bytes.
largest_value <- function(ctl) {
  cmd <- function(...) redq:::redis_command(c(...), controller = ctl)
  sizes <- vapply(namespace_keys(ctl), function(k) {
    switch(cmd("TYPE", k),
           string = as.numeric(cmd("STRLEN", k)),
           hash = max(0, vapply(unlist(cmd("HKEYS", k)), function(f) as.numeric(cmd("HSTRLEN", k, f)), 1)),
           list = max(0, nchar(unlist(cmd("LRANGE", k, 0, -1)), type = "bytes")),
           0)
  }, 1)
  max(0, sizes)
}

wait_until <- function(cond, timeout = 10, interval = 0.02) {
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    if (isTRUE(cond())) return(TRUE)
    Sys.sleep(interval)
  }
  isTRUE(cond())
}

worker_pid <- function(id, ctl) {
  as.integer(worker_info(id, controller = ctl)[[1]]$pid)
}
