test_that("REDIS_URL chooses the server and the controller prints it", {
  ctl <- test_controller()
  expect_equal(redq_url(), test_url())
  expect_identical(redq_default_controller(), ctl)
  out <- capture.output(print(ctl))
  expect_match(out[1], ctl$namespace, fixed = TRUE)
  expect_match(paste(out, collapse = "\n"), "live workers: 0")
  expect_error(redq_controller("bad namespace"), class = "redq_error_argument")
  expect_error(task_list(controller = "nope"), class = "redq_error_argument")
})

test_that("passwords never appear in printed output", {
  ctl <- test_controller()
  out <- callr::r(function(port) {
    library(redq)
    url <- sprintf("redis://user:s3cret@127.0.0.1:%d/0", port)
    e <- tryCatch(redq_controller("x", url = url), error = function(e) conditionMessage(e))
    e
  }, list(redq:::free_port()))
  expect_false(grepl("s3cret", out))
})

test_that("with nothing configured and a private server asked for, redq starts and stops its own, private one", {
  res <- callr::r(function() {
    library(redq)
    url <- redq_url()
    id <- task_create_expr(6 * 7)
    worker_spawn(1)
    task_wait(id, timeout = 20)
    srv <- redq:::redq_env$server
    list(url = url, value = task_result(id), secret = srv$secret, socket = srv$socket,
         port = redq:::redis_command(c("CONFIG", "GET", "port"))[[2]],
         dir_mode = file.info(dirname(srv$socket))$mode,
         pid = if (is.null(srv)) NA_integer_ else srv$process$get_pid(),
         workers = vapply(redq:::redq_env$processes, function(p) p$get_pid(), 1L))
  }, env = c(REDIS_URL = "", REDQ_SERVER = "session", REDQ_SECRET = ""))
  expect_equal(res$value, 42)
  gone <- function(pid) is.na(pid) || !tools::pskill(pid, 0)
  # a Unix socket in a directory only its owner can enter, a password,
  # a secret; no TCP port, and never whatever answers on 6379
  expect_match(res$url, "^unix:///.*/redis\\.sock\\?pass=[0-9a-f]{32}$")
  expect_equal(res$dir_mode, as.octmode("700"))
  expect_match(res$secret, "^[0-9a-f]{64}$")
  expect_false(is.na(res$pid))
  expect_equal(res$port, "0")
  # the server and the workers ended with the session
  expect_true(wait_until(function() gone(res$pid) && all(vapply(res$workers, gone, NA)), 10))
})

test_that("redisSet/redisGet use the key the user names; value_set/value_get the namespace", {
  ctl <- test_controller()
  key <- paste0("m-", ctl$namespace)
  withr::defer(redisDelete(c(key, paste0(key, ":n"))))
  redisSet(key, matrix(1:4, 2))
  expect_equal(redisGet(key), matrix(1:4, 2))
  # the key itself, as doRedis and redis-cli see it
  expect_equal(redq:::redis_command(c("EXISTS", key), controller = ctl), 1)
  expect_equal(redisIncrBy(paste0(key, ":n"), 5), 5)
  expect_equal(redisDecrBy(paste0(key, ":n"), 2), 3)
  expect_identical(redisGet(paste0(key, ":n")), "3")
  expect_equal(redisDelete(key), 1)
  expect_null(redisGet(key))
  expect_error(redisIncrBy(paste0(key, ":n"), 1.5), class = "redq_error_argument")
  value_set("m", 1:3)
  expect_equal(value_get("m"), 1:3)
  expect_false(any(namespace_keys(ctl) == "m"))
  value_delete("m")
  expect_null(value_get("m"))
  # redisConnect() chooses the server
  redisConnect(url = test_url())
  withr::defer(rm("redis_ctl", envir = redq:::redq_env))
  redisSet(key, "x")
  expect_equal(redisGet(key), "x")
})

test_that("the connection survives an error and reconnects after a server restart", {
  srv <- redq:::server_launch()
  withr::defer(redq:::server_kill(srv))
  ctl <- redq_controller("reconnect", url = srv$url, default = FALSE)
  id <- task_create_expr(1, controller = ctl)
  srv$process$kill()
  expect_error(task_status(id, controller = ctl), class = "redq_error_connection")
  srv2 <- redq:::server_launch(port = srv$port, password = srv$password)
  withr::defer(redq:::server_kill(srv2))
  expect_equal(unname(task_status(id, controller = ctl)), "MISSING")
  expect_length(task_create_expr(2, controller = ctl), 1)
})
