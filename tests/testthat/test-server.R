# The embedded default server: with no REDIS_URL, a user's sessions share
# one server that outlives them (tasks are made, run and collected by three
# separate Rscripts), until redq_server_stop().

test_that("with no REDIS_URL, a task made by one Rscript is run by a second and read by a third", {
  home <- withr::local_tempdir()
  env <- c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SERVER = "user",
           R_USER_CACHE_DIR = file.path(home, "cache"), R_USER_DATA_DIR = file.path(home, "data"))
  stop_server <- function() callr::r(function() redq::redq_server_stop(), env = env)
  withr::defer(try(stop_server(), silent = TRUE))
  id <- callr::r(function() {
    suppressPackageStartupMessages(library(redq))
    task_create_expr(6 * 7)
  }, env = env)
  expect_match(id, "^[A-Za-z0-9]+$")
  state <- list.files(file.path(home, "cache"), "server-url", recursive = TRUE, full.names = TRUE)
  expect_length(state, 1)
  lines <- readLines(state)
  url <- lines[[1]]
  # a Unix socket with a password, and the secret that seals what is
  # stored, in a file only the user reads, in a folder only they enter
  expect_match(url, "^unix:///.*/redis\\.sock\\?pass=[0-9a-f]{64}$")
  expect_match(lines[[2]], "^[0-9a-f]{64}$")
  expect_equal(file.info(state)$mode, as.octmode("600"))
  expect_equal(file.info(dirname(state))$mode, as.octmode("700"))
  # the server runs on after the first Rscript ended
  status <- callr::r(function(id) {
    suppressPackageStartupMessages(library(redq))
    worker_spawn(1)
    task_wait(id, timeout = 30)
  }, list(id), env = env)
  expect_equal(unname(status), "COMPLETE")
  got <- callr::r(function(id) {
    suppressPackageStartupMessages(library(redq))
    task_result(id)
  }, list(id), env = env)
  expect_equal(got, 42)
  # its data is kept on disk (append-only file) in the user's data directory
  expect_true(length(list.files(file.path(home, "data"), recursive = TRUE)) > 0)
  expect_true(stop_server())
  expect_false(redq:::server_answers(url))
  expect_false(stop_server())
})

test_that("a bad redq.server option is a classed error", {
  withr::local_options(redq.server = "cluster")
  withr::local_envvar(REDIS_URL = "")
  e <- redq:::redq_env
  old <- e$local_default
  e$local_default <- FALSE
  withr::defer(e$local_default <- old)
  expect_error(redq_url(), class = "redq_error_argument")
})

test_that("unloading redq in one session stops what it owns and leaves another session's loop running", {
  home <- withr::local_tempdir()
  env <- c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SERVER = "user", REDQ_SECRET = "",
           R_USER_CACHE_DIR = file.path(home, "cache"), R_USER_DATA_DIR = file.path(home, "data"))
  withr::defer(try(callr::r(function() redq::redq_server_stop(), env = env), silent = TRUE))
  # session B: its own workers, a loop on the user's server
  b <- callr::r_bg(function() {
    suppressPackageStartupMessages(library(redq))
    registerDoRedis("b")
    startLocalWorkers(2, "b")
    writeLines("started", file.path(Sys.getenv("R_USER_CACHE_DIR"), "b-started"))
    foreach(i = 1:40, .combine = c) %dopar% {
      Sys.sleep(0.1)
      i
    }
  }, env = env, supervise = TRUE)
  withr::defer(b$kill())
  expect_true(wait_until(function() file.exists(file.path(home, "cache", "b-started")), 60))
  # session A: its own workers and controller, then unload, then gc()
  a <- callr::r(function() {
    suppressPackageStartupMessages(library(redq))
    ctl <- redq_controller("a")
    w <- worker_spawn(1)
    pid <- redq:::redq_env$processes[[1]]$get_pid()
    unloadNamespace("redq")
    for (i in 1:3) gc()
    Sys.sleep(0.5)
    list(worker_alive = tools::pskill(pid, 0))
  }, env = env)
  expect_false(a$worker_alive)
  b$wait(60000)
  expect_equal(b$get_result(), 1:40)
})
