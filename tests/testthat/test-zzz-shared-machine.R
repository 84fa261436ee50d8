# Another person on the same machine: a second local Unix account, which
# this test creates, tries to reach a redq user's servers, files and
# dashboard, as someone on a cluster login node or a lab server could.
# The victim's folders sit under a directory everyone may traverse (as
# home directories are on many systems), so that only what redq does
# stands between the two.

OTHER <- "redqother"

# The other account (created once; the test suite runs as root, as CI does).
other_user <- function() {
  if (!identical(unname(Sys.info()[["effective_user"]]), "root")) {
    stop("the shared-machine tests create a second Unix user: run the suite as root (make test does in CI)")
  }
  if (processx::run("id", OTHER, error_on_status = FALSE)$status != 0) {
    processx::run("useradd", c("--create-home", "--shell", "/bin/sh", OTHER))
  }
  OTHER
}

# Run a shell command as the other user: list(status, out).
as_other <- function(cmd, timeout = 30) {
  r <- processx::run("runuser", c("-u", other_user(), "--", "sh", "-c", cmd), timeout = timeout,
                     error_on_status = FALSE)
  list(status = r$status, out = paste(r$stdout, r$stderr))
}

# A folder the other user may enter and list (mode 0755 all the way down).
open_dir <- function(envir = parent.frame()) {
  d <- tempfile("redq-home-", tmpdir = "/tmp")
  dir.create(d, mode = "0755")
  Sys.chmod(d, "0755", use_umask = FALSE)
  withr::defer(unlink(d, recursive = TRUE), envir = envir)
  d
}

test_that("another local user cannot reach the user's own server, its files or its secrets", {
  home <- open_dir()
  # folders left loose by an earlier program are made private
  for (d in file.path(home, c("cache", "data"), "R", "redq")) {
    dir.create(d, recursive = TRUE)
    Sys.chmod(c(dirname(dirname(d)), dirname(d), d), "0755", use_umask = FALSE)
  }
  env <- c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SERVER = "user", REDQ_SECRET = "",
           R_USER_CACHE_DIR = file.path(home, "cache"), R_USER_DATA_DIR = file.path(home, "data"))
  withr::defer(try(callr::r(function() redq::redq_server_stop(), env = env), silent = TRUE))
  id <- callr::r(function() {
    library(redq)
    task_create_expr(secret_value <- "payload only the owner may read")
  }, env = env)
  cache <- file.path(home, "cache", "R", "redq")
  data <- file.path(home, "data", "R", "redq")
  expect_equal(file.info(c(cache, data))$mode, as.octmode(c("700", "700")))
  state <- readLines(file.path(cache, "server-url"))
  socket <- sub("^unix://([^?]*)\\?.*$", "\\1", state[[1]])
  password <- sub("^.*pass=", "", state[[1]])
  expect_true(file.exists(socket))

  # the socket, the state file, the configuration and the data
  r <- as_other(sprintf("redis-cli -s %s PING", socket))
  expect_false(grepl("PONG|NOAUTH", r$out))
  for (f in c(file.path(cache, c("server-url", "redis.conf")), data)) {
    r <- as_other(sprintf("cat %s; ls %s", f, f))
    expect_false(grepl(password, r$out, fixed = TRUE))
    expect_match(r$out, "Permission denied")
  }
  r <- as_other(sprintf("grep -r 'payload only' %s", data))
  expect_false(grepl("payload only", r$out, fixed = TRUE))
  # the server's command line (ps) names no password and no port
  r <- as_other("ps -eo args")
  expect_match(r$out, "redis-server", fixed = TRUE)
  expect_false(grepl(password, r$out, fixed = TRUE))
  expect_false(grepl(state[[2]], r$out, fixed = TRUE))
  # the owner's own sessions still reach it, and the task is there
  expect_equal(unname(callr::r(function(id) redq::task_status(id), list(id), env = env)), "PENDING")
})

test_that("another local user cannot reach a session's private server or a test server", {
  other_user()
  got <- callr::r(function() {
    library(redq)
    options(redq.server = "session")
    url <- redq_url()
    list(url = url, socket = redq:::redq_env$server$socket, pid = Sys.getpid(),
         check = {
           # the other user tries while this session still runs
           r <- processx::run("runuser", c("-u", "redqother", "--", "redis-cli", "-s",
                                           redq:::redq_env$server$socket, "PING"),
                              error_on_status = FALSE)
           paste(r$stdout, r$stderr)
         })
  }, env = c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SECRET = ""))
  expect_match(got$url, "^unix://")
  expect_false(grepl("PONG|NOAUTH", got$check))
  # a server started for the tests listens on a port, with a password
  port <- getOption("redq.test_server")$port
  r <- as_other(sprintf("redis-cli -p %d SET owned yes; redis-cli -p %d KEYS '*'", port, port))
  expect_match(r$out, "NOAUTH")
  expect_false(grepl("redq:", r$out, fixed = TRUE))
})

test_that("a server another user starts on 127.0.0.1:6379 is not used unless named", {
  home <- open_dir()
  spoof <- NULL
  if (!redq:::node_answers(6379)) {
    dir.create(file.path(home, "spoof"), mode = "0777")
    Sys.chmod(file.path(home, "spoof"), "0777", use_umask = FALSE)
    spoof <- processx::process$new("runuser", c("-u", other_user(), "--", "redis-server", "--port", "6379",
                                                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                                "--dir", file.path(home, "spoof")),
                                   supervise = TRUE, cleanup = TRUE)
    # runuser's child is the server: shut it down itself, then the tree
    withr::defer({
      try(redq:::node_command(6379, "SHUTDOWN", "NOSAVE", password = ""), silent = TRUE)
      spoof$kill_tree()
    })
    expect_true(wait_until(function() redq:::node_answers(6379), 10))
  }
  env <- c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SERVER = "user", REDQ_SECRET = "",
           R_USER_CACHE_DIR = file.path(home, "cache"), R_USER_DATA_DIR = file.path(home, "data"))
  withr::defer(try(callr::r(function() redq::redq_server_stop(), env = env), silent = TRUE))
  url <- callr::r(function() {
    library(redq)
    task_create_expr(1)
    redq_url()
  }, env = env)
  expect_false(grepl(":6379", url, fixed = TRUE))
  expect_match(url, "^unix://")
  if (!is.null(spoof)) {
    keys <- redq:::node_command(6379, "KEYS", "*", password = "")
    expect_false(any(grepl("redq", keys)))
  }
})

test_that("another local user gets neither the dashboard's token nor anything through it", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr(Sys.sleep(30))
  expect_true(wait_until(function() task_status(id) == "RUNNING", 20))
  port <- redq:::free_port()
  bg <- callr::r_bg(function(url, ns, port) {
    library(redq)
    redq_dashboard(port = port, controller = redq_controller(ns, url = url), block = TRUE)
  }, list(test_url(), ctl$namespace, port), supervise = TRUE)
  withr::defer(bg$kill())
  said <- ""
  expect_true(wait_until(function() {
    said <<- paste0(said, bg$read_error())
    grepl("?token=", said, fixed = TRUE)
  }, 30, 0.2))
  token <- sub("^.*[?]token=([0-9a-f]+).*$", "\\1", said)
  base <- sprintf("http://127.0.0.1:%d", port)
  # what the other user can try: every page, the metrics, an action, and
  # the dashboard's process (its command line, its environment)
  r <- as_other(paste(
    sprintf("curl -s -w ' %%{http_code}\\n' %s/", base),
    sprintf("curl -s -w ' %%{http_code}\\n' %s/api/state", base),
    sprintf("curl -s -w ' %%{http_code}\\n' %s/metrics", base),
    sprintf("curl -s -w ' %%{http_code}\\n' -X POST -H 'X-Requested-With: redq' -d '{\"id\":\"%s\"}' %s/api/cancel", id, base),
    sprintf("ps -eo args; cat /proc/%d/environ", bg$get_pid()), sep = "; "))
  expect_equal(lengths(regmatches(r$out, gregexpr(" 401\n", r$out))), 4)
  expect_false(grepl(token, r$out, fixed = TRUE))
  expect_false(grepl(ctl$namespace, r$out, fixed = TRUE))
  expect_equal(unname(task_status(id)), "RUNNING")
  # the owner, with the token, is let in
  out <- processx::run("curl", c("-s", "-H", paste("Authorization: Bearer", token),
                                 paste0(base, "/metrics")))$stdout
  expect_match(out, ctl$namespace, fixed = TRUE)
})
