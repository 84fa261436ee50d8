# Sealed values: with a secret (REDQ_SECRET, or the one redq keeps for the
# servers it starts), everything R unserializes is signed by its writer and
# checked by its reader: payloads, results, job environments, messages and
# their replies, the namespace's values. Nothing that someone without the
# secret wrote reaches R.

# A second controller on the namespace of `ctl`, with `secret` ("" for
# none): someone else writing to the same server.
other_controller <- function(ctl, secret) {
  withr::with_envvar(c(REDQ_SECRET = secret),
                     redq_controller(ctl$namespace, url = test_url(), default = FALSE))
}

stored <- function(ctl, ...) {
  redq:::redis_command(c("EVAL", "return string.sub(redis.call(unpack(ARGV)), 1, 4)", "0", ...),
                       controller = ctl)
}

test_that("with a shared secret, tasks and loops run, and what is stored is sealed", {
  withr::local_envvar(REDQ_SECRET = "correct horse battery staple")
  ctl <- test_controller()
  # the payload as stored, read before any worker can take the task
  id <- task_create_expr(sum(1:10))
  expect_equal(stored(ctl, "HGET", sprintf("redq:{%s}:payloads", ctl$namespace), id), "RQS2")
  worker_spawn(1)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 55)
  expect_equal(stored(ctl, "HGET", sprintf("redq:{%s}:task:%s", ctl$namespace, id), "result"), "RQS2")
  value_set("v", 1:3)
  expect_equal(stored(ctl, "GET", sprintf("redq:{%s}:data:v", ctl$namespace)), "RQS2")
  expect_equal(value_get("v"), 1:3)
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_equal(foreach(i = 1:4, .combine = c) %dopar% (i * 2), c(2, 4, 6, 8))
})

test_that("a worker with another secret refuses tasks and loops without running them, and goes on", {
  withr::local_envvar(REDQ_SECRET = "controller secret")
  ctl <- test_controller()
  out <- withr::local_tempfile()
  mine <- other_controller(ctl, "another secret")
  worker_spawn(1, controller = mine)
  id <- task_create_expr(writeLines("ran", out))
  task_wait(id, timeout = 20)
  expect_equal(unname(task_status(id)), "ERROR")
  # the worker's error is sealed with its own secret: this session refuses
  # it too, and the worker's side reads why
  expect_error(task_result(id), class = "redq_error_signature")
  expect_match(conditionMessage(task_result(id, controller = mine)), "signature does not match")
  expect_false(file.exists(out))
  registerDoRedis("default", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  expect_error(foreach(i = 1:2) %dopar% i, "signature")
  # the worker is still there, and runs what its own secret sealed
  id <- task_create_expr(2 + 2, controller = mine)
  task_wait(id, timeout = 20, controller = mine)
  expect_equal(task_result(id, controller = mine), 4)
})

test_that("a worker with a secret refuses unsigned tasks", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr(1, controller = other_controller(ctl, ""))
  task_wait(id, timeout = 20)
  expect_match(conditionMessage(task_result(id)), "unsigned")
})

test_that("a result written or moved by someone without the secret is refused with a classed error", {
  ctl <- test_controller()
  worker_spawn(1)
  ids <- c(task_create_expr(1), task_create_expr(2), task_create_expr(3))
  task_wait(ids, timeout = 20)
  key <- function(id) sprintf("redq:{%s}:task:%s", ctl$namespace, id)
  # a crafted serialization: R would unserialize it at task_result()
  forged <- rawToChar(serialize(quote(system("id")), NULL, ascii = TRUE))
  redq:::redis_command(c("HSET", key(ids[[2]]), "result", forged))
  # task 1's own sealed result, copied onto task 3
  redq:::redis_command(c("EVAL", "return redis.call('HSET', KEYS[2], 'result', redis.call('HGET', KEYS[1], 'result'))",
                         "2", key(ids[[1]]), key(ids[[3]])))
  # read by a session that did not keep the results its wait received
  fresh <- other_controller(ctl, Sys.getenv("REDQ_SECRET"))
  expect_equal(task_result(ids[[1]], controller = fresh), 1)
  expect_error(task_result(ids[[2]], controller = fresh), class = "redq_error_signature")
  expect_error(task_result(ids[[3]], controller = fresh), class = "redq_error_signature")
  expect_error(task_results(ids, controller = fresh), "refused")
})

test_that("a message from someone without the secret is refused, not run, and the worker goes on", {
  ctl <- test_controller()
  w <- worker_spawn(1)
  out <- withr::local_tempfile()
  mid <- worker_message_send("EVAL", bquote(writeLines("ran", .(out))), controller = other_controller(ctl, ""))
  reply <- worker_message_response(mid, timeout = 10, controller = ctl)[[1]]
  expect_s3_class(reply, "redq_error_signature")
  expect_match(conditionMessage(reply), "unsigned message")
  expect_false(file.exists(out))
  # signed ones still run
  reply <- worker_message_send_and_wait("EVAL", quote(1 + 1), timeout = 10)
  expect_equal(reply[[1]], 2)
  id <- task_create_expr(3)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 3)
})

test_that("a worker environment or value stored without the secret is refused", {
  ctl <- test_controller()
  out <- withr::local_tempfile()
  bad <- other_controller(ctl, "")
  value_set(redq:::WORKER_ENVIR, list(init = function() writeLines("ran", out)), controller = bad)
  expect_error(value_get(redq:::WORKER_ENVIR), class = "redq_error_signature")
  # a worker starts without loading it, and serves
  worker_spawn(1)
  id <- task_create_expr(5)
  task_wait(id, timeout = 20)
  expect_equal(task_result(id), 5)
  expect_false(file.exists(out))
  reply <- worker_message_send_and_wait("REFRESH", timeout = 10)[[1]]
  expect_s3_class(reply, "error")
  expect_match(conditionMessage(reply), "unsigned value")
  expect_false(file.exists(out))
  # redisSet()/redisGet(): an unsealed serialization is refused, a plain
  # string (a counter) is read as it is
  key <- paste0("k-", ctl$namespace)
  withr::defer(redisDelete(c(key, paste0(key, ":n"))))
  redq:::redis_command(c("SET", key, rawToChar(serialize(1, NULL, ascii = TRUE))))
  expect_error(redisGet(key), class = "redq_error_signature")
  redisIncrBy(paste0(key, ":n"), 3)
  expect_identical(redisGet(paste0(key, ":n")), "3")
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

test_that("no set-up function changes the session's random numbers", {
  ctl <- test_controller()
  expected <- withr::with_seed(1, runif(1))
  after <- function(f) {
    set.seed(1)
    f()
    runif(1)
  }
  ns <- ctl$namespace
  expect_equal(after(function() redq_controller(ns, url = test_url(), default = FALSE)), expected)
  expect_equal(after(function() redq:::secure_token()), expected)
  expect_equal(after(function() redq:::free_port()), expected)
  expect_equal(after(function() worker_spawn(1)), expected)
  expect_equal(after(function() registerDoRedis("default", url = test_url(), namespace = ns)), expected)
  withr::defer(foreach::registerDoSEQ())
  expect_equal(after(function() startLocalWorkers(1, "default", url = test_url(), namespace = ns)),
               expected)
  expect_equal(after(function() {
    future::plan(redq_future, namespace = ns, url = test_url())
  }), expected)
  withr::defer(future::plan(future::sequential))
  expect_equal(after(function() RedisParam(1L, url = test_url(), namespace = ns)), expected)
  expect_equal(after(function() {
    p <- RedisParam(2L, url = test_url(), namespace = ns)
    BiocParallel::bpstart(p)
    BiocParallel::bpstop(p)
  }), expected)
  expect_equal(after(function() {
    future::plan(redq_future, namespace = ns, url = test_url(), workers = 1)
    future::value(future::future(1))
  }), expected)
  expect_equal(after(function() {
    cl <- redq_cluster(1, namespace = ns, url = test_url())
    parallel::stopCluster(cl)
  }), expected)
  expect_equal(after(function() rsh(config = test_url())), expected)
  # the embedded servers: this session's own, and the user's
  home <- withr::local_tempdir()
  got <- callr::r(function() {
    library(redq)
    set.seed(1)
    redq_url()
    a <- runif(1)
    options(redq.server = "session")
    set.seed(1)
    redq_url()
    list(user = a, session = runif(1), stopped = redq_server_stop())
  }, env = c(callr::rcmd_safe_env(), REDIS_URL = "", REDQ_SERVER = "user", REDQ_SECRET = "",
             R_USER_CACHE_DIR = file.path(home, "cache"), R_USER_DATA_DIR = file.path(home, "data")))
  withr::defer(callr::r(function() redq::redq_server_stop(), env = c(
    callr::rcmd_safe_env(), REDIS_URL = "", R_USER_CACHE_DIR = file.path(home, "cache"),
    R_USER_DATA_DIR = file.path(home, "data"))))
  expect_equal(got$user, expected)
  expect_equal(got$session, expected)
})
