# Redis Cluster and Sentinel: real clusters of redis-server processes on
# loopback ports, a master failover in the middle of a foreach loop.

# Servers of the test's own, killed when it ends; workers of namespace `ns`
# on `url` too.
local_ha <- function(servers, envir = parent.frame()) {
  withr::defer(lapply(servers, redq:::server_kill), envir = envir)
}

# In a background process: after `after` seconds, run `command` against
# the node at `port`, then wait until `switched()` (evaluated there) is
# TRUE; returns the time it switched.
failover_later <- function(port, command, switched, after = 1) {
  # the nodes' passwords, which this session's servers were started with
  passwords <- redq:::redq_env$node_passwords
  callr::r_bg(function(port, command, switched, after, passwords) {
    assign("node_passwords", passwords, envir = redq:::redq_env)
    Sys.sleep(after)
    redq:::redis_cli(port, NULL, command, 30)
    deadline <- Sys.time() + 30
    while (!switched() && Sys.time() < deadline) Sys.sleep(0.05)
    if (switched()) Sys.time() else NA
  }, list(port, command, switched, after, passwords), supervise = TRUE)
}

# A loop of `n` iterations of 0.1 s each on the workers of `ns`, its
# result checked, while `bg` fails the master over; returns the time the
# loop ended.
loop_through <- function(url, ns, n = 60) {
  registerDoRedis("ha", url = url, namespace = ns)
  withr::defer(foreach::registerDoSEQ())
  # a worker whose beats went to the old master may be reported lost, its
  # task run again: that is the only warning allowed
  r <- withCallingHandlers(
    foreach(i = seq_len(n), .combine = c, .options.redis = list(chunkSize = 1)) %dopar% {
      Sys.sleep(0.1)
      i * 2
    },
    warning = function(w) {
      expect_match(conditionMessage(w), "stopped answering")
      invokeRestart("muffleWarning")
    })
  expect_identical(r, seq_len(n) * 2)
  Sys.time()
}

test_that("cluster and sentinel URLs are checked", {
  bad <- c("redis+cluster://", "redis+cluster://127.0.0.1:7000/3", "redis+sentinel://127.0.0.1:26379",
           "redis+ring://127.0.0.1:1")
  for (u in bad) expect_error(redq_controller("ha", url = u, default = FALSE), class = "redq_error_argument")
  expect_error(redq_controller("ha", url = "redis+cluster://127.0.0.1:1,127.0.0.1:2", default = FALSE),
               class = "redq_error_connection")
  expect_error(redq_controller("ha", url = "redis+sentinel://127.0.0.1:1/redq", default = FALSE),
               class = "redq_error_connection")
})

# A controller of namespace `ns` on `url` with two workers (stopped when
# the test ends), which the task API is checked to reach.
ha_controller <- function(url, ns, envir = parent.frame()) {
  ctl <- redq_controller(ns, url = url, default = FALSE)
  w <- worker_spawn(2, queue = c("default", "ha"), controller = ctl)
  withr::defer(worker_stop(w, type = "kill", wait = 2, controller = ctl), envir = envir)
  tasks_run(ctl, function(i) i + 1, 1:5)
  list(ctl = ctl, w = w)
}

# Tasks of `fn` over `x` complete with their results.
tasks_run <- function(ctl, fn, x) {
  ids <- task_create_bulk_call(fn, as.list(x), controller = ctl)
  task_wait(ids, timeout = 30, controller = ctl)
  expect_equal(unname(unlist(task_results(ids, controller = ctl))), vapply(x, fn, 1))
}

# A loop on `url` while `command` fails the master over (see
# failover_later()): the switch must come while the loop runs.
loop_through_failover <- function(url, ns, port, command, switched) {
  bg <- failover_later(port, command, switched)
  withr::defer(bg$kill())
  ended <- loop_through(url, ns)
  bg$wait(30)
  at <- bg$get_result()
  expect_false(is.na(at))
  expect_lt(as.numeric(at), as.numeric(ended))
}

test_that("on a Redis Cluster, namespaces spread over the masters, and work goes on through a failover", {
  withr::local_options(redq.lease = 5)
  cl <- redq:::cluster_launch(masters = 3, replicas = 1)
  local_ha(cl$nodes)
  # namespaces live in one slot each, on different masters
  owners <- vapply(paste0("ns", 1:12), function(ns) redq:::cluster_slot_nodes(cl, ns)$master, 1L)
  expect_gt(length(unique(owners)), 1)

  ns <- "ha-cluster"
  h <- ha_controller(cl$url, ns)
  replica <- redq:::cluster_slot_nodes(cl, ns)$replicas[[1]]
  loop_through_failover(cl$url, ns, replica, c("CLUSTER", "FAILOVER"), function() {
    identical(redq:::node_command(replica, "ROLE")[[1]], "master")
  })
  expect_identical(redq:::cluster_slot_nodes(cl, ns)$master, replica)
  # the task API goes on too, and the workers are the same
  tasks_run(h$ctl, function(i) i * 10, 1:3)
  expect_setequal(worker_list(h$ctl), h$w$id)
})

test_that("with Sentinel, work goes on through a failover to the replica", {
  withr::local_options(redq.lease = 5)
  st <- redq:::sentinel_launch("redq")
  local_ha(c(list(st$master, st$replica), st$sentinels))
  ns <- "ha-sentinel"
  h <- ha_controller(st$url, ns)
  sentinel <- st$sentinels[[1]]$port
  replica <- st$replica$port
  loop_through_failover(st$url, ns, sentinel, c("SENTINEL", "FAILOVER", "redq"), function() {
    out <- redq:::node_command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "redq")
    identical(out[[length(out)]], as.character(replica))
  })
  # the old master follows the new one
  expect_true(wait_until(function() {
    identical(redq:::node_command(st$master$port, "ROLE")[[1]], "slave")
  }, timeout = 30, interval = 0.2))
  tasks_run(h$ctl, function(i) i * 10, 1:3)
  expect_setequal(worker_list(h$ctl), h$w$id)
})
