# Signed payloads: with REDQ_SECRET, workers run only what a controller with
# the same secret signed.

test_that("with a shared secret, signed tasks and loops run", {
  withr::local_envvar(REDQ_SECRET = "correct horse battery staple")
  ctl <- test_controller()
  # the payload as stored, read before any worker can take the task
  id <- task_create_expr(sum(1:10))
  head <- redq:::redis_command(c("EVAL", "return string.sub(redis.call('HGET', KEYS[1], ARGV[1]), 1, 4)",
                                 "1", sprintf("redq:{%s}:payloads", ctl$namespace), id))
  expect_equal(head, "RQS1")
  worker_spawn(1)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 55)
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_equal(foreach(i = 1:4, .combine = c) %dopar% (i * 2), c(2, 4, 6, 8))
})

test_that("a worker with another secret refuses tasks and loops without running them", {
  withr::local_envvar(REDQ_SECRET = "controller secret")
  ctl <- test_controller()
  withr::with_envvar(c(REDQ_SECRET = "another secret"), worker_spawn(1))
  id <- task_create_expr(writeLines("ran", "/dev/stderr"))
  task_wait(id, timeout = 20)
  expect_equal(unname(task_status(id)), "ERROR")
  expect_match(conditionMessage(task_result(id)), "signature does not match")
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_error(foreach(i = 1:2) %dopar% i, "signature")
})

test_that("a worker with a secret refuses unsigned tasks", {
  ctl <- test_controller()
  withr::with_envvar(c(REDQ_SECRET = "worker secret"), worker_spawn(1))
  withr::local_envvar(REDQ_SECRET = "")
  id <- task_create_expr(1)
  task_wait(id, timeout = 20)
  expect_match(conditionMessage(task_result(id)), "unsigned")
})

test_that("rediss:// URLs connect over TLS, verifying the server's certificate", {
  dir <- withr::local_tempdir()
  cert <- file.path(dir, "cert.pem")
  key <- file.path(dir, "key.pem")
  processx::run("openssl", c("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                             "-keyout", key, "-out", cert))
  port <- redq:::free_port()
  srv <- processx::process$new("redis-server", c(
    "--port", "0", "--tls-port", port, "--bind", "127.0.0.1", "--save", "", "--dir", dir,
    "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
    "--tls-auth-clients", "no"), supervise = TRUE, cleanup = TRUE)
  withr::defer(srv$kill())
  url <- sprintf("rediss://127.0.0.1:%d/0", port)
  expect_true(wait_until(function() {
    tryCatch({
      close(socketConnection("127.0.0.1", port, open = "r+", timeout = 1))
      TRUE
    }, error = function(e) FALSE, warning = function(w) FALSE)
  }, timeout = 10))
  # a certificate nobody vouches for is refused
  withr::with_envvar(c(SSL_CERT_FILE = file.path(dir, "none.pem")), {
    expect_error(redq_controller("tls", url = url, default = FALSE), class = "redq_error_connection")
  })
  withr::local_envvar(SSL_CERT_FILE = cert)
  ctl <- redq_controller("tls", url = url, default = FALSE)
  worker_spawn(1, controller = ctl)
  withr::defer(worker_stop(controller = ctl, type = "kill", wait = 1))
  id <- task_create_expr(40 + 2, controller = ctl)
  task_wait(id, timeout = 20, controller = ctl)
  expect_equal(task_result(id, controller = ctl), 42)
})
