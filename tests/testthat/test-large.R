# Objects of any size, both ways, with real workers; and a server at its
# memory limit.

chunk_keys <- function(ctl) {
  unlist(redq:::redis_command(c("KEYS", sprintf("redq:{%s}:chunk:*", ctl$namespace)), controller = ctl))
}

test_that("a task returning 1.5 GB completes and its result comes back identical", {
  ctl <- test_controller()
  worker_spawn(1)
  id <- task_create_expr({
    x <- raw(1.5e9)
    x[c(1, 7e8, 1.5e9)] <- as.raw(c(1, 2, 3))
    x
  })
  task_wait(id, timeout = 300)
  expect_equal(unname(task_status(id)), "COMPLETE")
  r <- task_result(id)
  expect_equal(length(r), 1.5e9)
  expect_identical(r[c(1, 2, 7e8, 1.5e9)], as.raw(c(1, 0, 2, 3)))
  expect_identical(sum(r != as.raw(0)), 3L)
  rm(r)
  # the result lives in chunks, kept while the task is; deleting it frees them
  expect_gt(length(chunk_keys(ctl)), 1000)
  task_delete(id)
  expect_length(chunk_keys(ctl), 0)
})

test_that("a task capturing a 1 GB vector runs", {
  ctl <- test_controller()
  worker_spawn(1)
  big <- seq_len(2.5e8) # 1 GB of integers
  id <- task_create_expr(c(length(big), big[2.5e8]))
  task_wait(id, timeout = 300)
  expect_equal(task_result(id), c(2.5e8, 2.5e8))
  # a completed task's payload, chunks included, is gone
  expect_length(chunk_keys(ctl), 0)
})

test_that("a foreach loop exporting a 700 MB object runs and leaves nothing behind", {
  ctl <- test_controller()
  registerDoRedis("big", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  startLocalWorkers(2, queue = "big", url = test_url(), namespace = ctl$namespace)
  shared <- raw(7e8)
  shared[7e8] <- as.raw(9)
  r <- foreach(i = 1:4, .combine = c) %dopar% (as.integer(shared[7e8]) + i)
  expect_equal(r, 10:13)
  expect_length(chunk_keys(ctl), 0)
  expect_false(any(grepl(":job:", namespace_keys(ctl))))
})

test_that("loops exporting the same data store it once, and each worker fetches it once for all of them", {
  ctl <- test_controller()
  registerDoRedis("same", url = test_url(), namespace = ctl$namespace)
  withr::defer(foreach::registerDoSEQ())
  w <- worker_spawn(2, queue = "same")
  blob <- as.raw(sample.int(255, 2e7, replace = TRUE))
  first <- foreach(i = 1:20, .combine = c) %dopar% as.integer(blob[i])
  # a second loop while the first one's job still holds the data: counted,
  # not stored again
  job <- redq:::job_open(ctl)
  env <- serialize(list(blob = blob), NULL)
  redq:::job_env(job, env, "same")
  second <- redq:::job_open(ctl)
  redq:::job_env(second, env, "same")
  expect_length(grep(":object:", namespace_keys(ctl)), 1)
  redq:::job_remove(job)
  expect_length(grep(":object:", namespace_keys(ctl)), 1)
  redq:::job_remove(second)
  expect_length(grep(":object:", namespace_keys(ctl)), 0)
  # the same loop over other iterations: the same environment
  expect_equal(foreach(i = 21:40, .combine = c) %dopar% as.integer(blob[i]), as.integer(blob[21:40]))
  expect_equal(first, as.integer(blob[1:20]))
  info <- worker_message_send_and_wait("INFO", worker_ids = w)
  ran <- vapply(info, function(i) i$tasks, 1)
  fetched <- vapply(info, function(i) i$objects_fetched, 1)
  expect_gt(sum(ran), 1)
  # the second loop's workers had the data already
  expect_equal(unname(fetched), as.numeric(ran > 0))
  expect_length(chunk_keys(ctl), 0)
  expect_false(any(grepl(":object:|:job:", namespace_keys(ctl))))
})

# A server of the test's own at a 50 MB memory limit, a controller on it
# and one worker: list(ctl, w).
memory_limited <- function(ns, envir = parent.frame()) {
  srv <- redq:::server_launch()
  withr::defer(redq:::server_kill(srv), envir = envir)
  ctl <- redq_controller(ns, url = srv$url, default = FALSE)
  redq:::redis_command(c("CONFIG", "SET", "maxmemory", "50mb"), controller = ctl)
  redq:::redis_command(c("CONFIG", "SET", "maxmemory-policy", "noeviction"), controller = ctl)
  w <- worker_spawn(1, controller = ctl)
  withr::defer(worker_stop(w, type = "kill", wait = 2, controller = ctl), envir = envir)
  list(ctl = ctl, w = w)
}

test_that("a server at its memory limit refuses a large submission with a classed error; the rest goes on", {
  m <- memory_limited("oom")
  ctl <- m$ctl
  w <- m$w
  before <- task_create_expr(sqrt(16), controller = ctl)
  task_wait(before, timeout = 20, controller = ctl)
  queued <- task_create_expr(Sys.sleep(0.5), controller = ctl)
  big <- as.raw(sample.int(255, 1e8, replace = TRUE))
  err <- expect_error(task_create_call(function(x) length(x), list(big), controller = ctl),
                      class = "redq_error_server_memory")
  expect_match(conditionMessage(err), "maxmemory")
  # nothing half-written stays behind
  expect_length(chunk_keys(ctl), 0)
  # the queue, earlier tasks and the worker keep working
  expect_equal(task_result(before, controller = ctl), 4)
  after <- task_create_expr(6 * 7, controller = ctl)
  task_wait(c(queued, after), timeout = 20, controller = ctl)
  expect_equal(unname(task_status(c(queued, after), controller = ctl)), c("COMPLETE", "COMPLETE"))
  expect_equal(task_result(after, controller = ctl), 42)
  expect_equal(unname(worker_status(w, controller = ctl)), "IDLE")
})

test_that("a result too large for the server's memory ends its task ERROR, and the worker goes on", {
  ctl <- memory_limited("oom2")$ctl
  id <- task_create_expr(as.raw(sample.int(255, 1e8, replace = TRUE)), controller = ctl)
  nxt <- task_create_expr("still here", controller = ctl)
  task_wait(c(id, nxt), timeout = 60, controller = ctl)
  expect_equal(unname(task_status(id, controller = ctl)), "ERROR")
  expect_match(conditionMessage(task_result(id, controller = ctl)), "could not be stored.*maxmemory")
  expect_equal(task_result(nxt, controller = ctl), "still here")
  expect_length(chunk_keys(ctl), 0)
})

used_memory <- function(ctl) {
  info <- redq:::redis_command(c("INFO", "memory"), controller = ctl)
  as.numeric(sub(".*\r\nused_memory:([0-9]+)\r\n.*", "\\1", info))
}

test_that("tasks sharing a 200 MB argument store it once, and each worker fetches it once", {
  ctl <- test_controller()
  big <- as.raw(sample.int(255, 2e8, replace = TRUE))
  base <- used_memory(ctl)
  # (a function written at top level, as users do: one defined here would
  # carry this test's environment, big included, into every payload)
  f <- function(i, x) c(i, length(x), as.integer(x[i]))
  environment(f) <- globalenv()
  ids <- task_create_bulk_call(f, as.list(1:20), args = list(x = big))
  grown <- used_memory(ctl) - base
  expect_lt(grown, 3e8) # about 200 MB (and allocator overhead), not 20 x 200 MB
  expect_gt(grown, 1.9e8)
  w <- worker_spawn(2)
  task_wait(ids, timeout = 300)
  r <- task_results(ids)
  expect_equal(r[[7]], c(7, 2e8, as.integer(big[7])))
  expect_true(all(vapply(r, function(v) v[[2]] == 2e8, TRUE)))
  info <- worker_message_send_and_wait("INFO", worker_ids = w)
  ran <- vapply(info, function(i) i$tasks, 1)
  fetched <- vapply(info, function(i) i$objects_fetched, 1)
  expect_equal(sum(ran), 20)
  expect_equal(unname(fetched), as.numeric(ran > 0))
  # once every task that used it has completed, it is gone
  expect_lt(used_memory(ctl) - base, 2e7)
  expect_false(any(grepl(":object:", namespace_keys(ctl))))
})

test_that("variables a bulk expression captures are stored once, and rows still override them", {
  ctl <- test_controller()
  lookup <- as.raw(sample.int(255, 3e6, replace = TRUE))
  k <- 0L
  ids <- task_create_bulk_expr(as.integer(lookup[i]) + k, data.frame(i = 1:4, k = c(0L, 0L, 0L, 100L)))
  expect_length(grep(":object:", namespace_keys(ctl)), 1)
  # each payload names the object instead of carrying the 3 MB
  largest <- redq:::redis_command(c(
    "EVAL", "local m = 0 for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do m = math.max(m, redis.call('HSTRLEN', KEYS[1], f)) end return m",
    "1", sprintf("redq:{%s}:payloads", ctl$namespace)))
  expect_lt(largest, 1e5)
  w <- worker_spawn(1)
  task_wait(ids, timeout = 60)
  expect_equal(unname(unlist(task_results(ids))), as.integer(lookup[1:4]) + c(0L, 0L, 0L, 100L))
  info <- worker_message_send_and_wait("INFO", worker_ids = w)[[1]]
  expect_equal(info$objects_fetched, 1)
  expect_length(grep(":object:", namespace_keys(ctl)), 0)
})

test_that("an argument shared by tasks that fail stays until they are deleted", {
  ctl <- test_controller()
  big <- as.raw(sample.int(255, 3e6, replace = TRUE))
  f <- function(i, x) if (i == 2) stop("bad row") else length(x)
  g <- function(i, x) length(x) + i
  environment(f) <- environment(g) <- globalenv()
  ids <- task_create_bulk_call(f, as.list(1:3), args = list(x = big))
  again <- task_create_bulk_call(g, as.list(1:2), args = list(x = big))
  expect_length(grep(":object:", namespace_keys(ctl)), 1) # one copy for both submissions
  worker_spawn(1)
  task_wait(c(ids, again), timeout = 60)
  expect_equal(unname(task_status(ids)), c("COMPLETE", "ERROR", "COMPLETE"))
  expect_equal(task_result(again[2]), 3e6 + 2)
  # the failed task can run again with it
  expect_length(grep(":object:", namespace_keys(ctl)), 1)
  task_delete(ids[2])
  expect_length(grep(":object:", namespace_keys(ctl)), 0)
})

test_that("with offload_path, Redis holds no value over the threshold and results are identical", {
  ns <- test_controller()$namespace
  dir <- withr::local_tempdir()
  ctl <- redq_controller(ns, url = test_url(), offload_path = dir, offload_threshold = 1e6)
  w <- worker_spawn(2)
  x <- as.raw(sample.int(255, 5e6, replace = TRUE))
  one <- task_create_expr(rev(x))                      # payload and result over the threshold
  pick <- function(i, x) x[i]
  environment(pick) <- globalenv()
  shared <- task_create_bulk_call(pick, as.list(1:3), args = list(x = x))
  task_wait(c(one, shared), timeout = 120)
  expect_identical(task_result(one), rev(x))
  expect_identical(unname(unlist(task_results(shared))), x[1:3])
  registerDoRedis("default", url = test_url(), namespace = ns)
  withr::defer(foreach::registerDoSEQ())
  r <- foreach(i = 1:3, .combine = c) %dopar% as.integer(x[i])
  expect_identical(r, as.integer(x[1:3]))
  expect_lt(largest_value(ctl), 1e6)
  # the files, in the namespace's directory, are named by their content's hash
  expect_identical(list.files(dir), ns)
  files <- list.files(file.path(dir, ns))
  expect_true(length(files) >= 2 && all(grepl("^[0-9a-f]{64}$", files)))
  expect_true(any(file.size(file.path(dir, ns, files)) > 5e6))
  # once no task refers to them (and they were written 5 s ago) they go
  task_delete(c(one, shared), controller = ctl)
  expect_true(wait_until(function() {
    # (a controller that removes a job sweeps what nobody names)
    redq:::job_remove(redq:::job_open(ctl))
    length(list.files(file.path(dir, ns))) == 0
  }, timeout = 30, interval = 1))
  # and a destroyed namespace takes its directory along
  again <- task_create_expr(length(x), controller = ctl)
  task_wait(again, timeout = 60, controller = ctl)
  expect_length(list.files(file.path(dir, ns)), 1)
  redq_destroy(controller = ctl)
  expect_false(dir.exists(file.path(dir, ns)))
})

test_that("a worker that cannot read the offload directory fails the task saying so", {
  ns <- test_controller()$namespace
  dir <- withr::local_tempdir()
  ctl <- redq_controller(ns, url = test_url(), offload_path = dir, offload_threshold = 1e3)
  # a worker started elsewhere, without the directory
  w <- callr::r_bg(function(url, ns) {
    Sys.unsetenv("REDQ_OFFLOAD_PATH")
    redq::worker_main(namespace = ns, url = url, max_tasks = 1)
  }, list(test_url(), ns), supervise = TRUE)
  withr::defer(w$kill())
  x <- raw(1e4)
  id <- task_create_expr(length(x), controller = ctl)
  task_wait(id, timeout = 60, controller = ctl)
  expect_equal(unname(task_status(id, controller = ctl)), "ERROR")
  expect_match(conditionMessage(task_result(id, controller = ctl)), "offload_path")
  expect_error(redq_controller(ns, url = test_url(), offload_path = file.path(dir, "nope")),
               class = "redq_error_argument")
})

test_that("a function carrying a large environment into every task is pointed out", {
  ctl <- test_controller()
  big <- as.raw(sample.int(255, 3e6, replace = TRUE))
  f <- function(i) length(big) + i # defined here: carries this environment, big included
  expect_warning(ids <- task_create_bulk_call(f, as.list(1:3)), "define it at top level",
                 class = "redq_warning_large_closure")
  g <- function(i, x) length(x) + i
  environment(g) <- globalenv()
  expect_no_warning(task_create_bulk_call(g, as.list(1:3), args = list(x = big)))
  task_delete(ids)
})

test_that("a large payload streamed to its chunks stays signed with REDQ_SECRET", {
  withr::local_envvar(REDQ_SECRET = "a-long-shared-secret-for-this-test")
  ctl <- test_controller()
  big <- as.raw(sample.int(255, 3e7, replace = TRUE))
  id <- task_create_expr(sum(as.integer(big[1:10])))
  # what the record holds is the sealed reference, not the value
  stored <- redq:::redis_command(c("HSTRLEN", sprintf("redq:{%s}:payloads", ctl$namespace), id))
  expect_lt(as.numeric(stored), 300)
  expect_gt(length(chunk_keys(ctl)), 20)
  worker_spawn(1)
  task_wait(id, timeout = 60)
  expect_equal(task_result(id), sum(as.integer(big[1:10])))
  expect_length(chunk_keys(ctl), 0)
  # a worker with another secret refuses it
  withr::local_envvar(REDQ_SECRET = "another-secret")
  ctl2 <- test_controller()
  id2 <- task_create_expr(length(big))
  withr::local_envvar(REDQ_SECRET = "a-long-shared-secret-for-this-test")
  theirs <- redq_controller(ctl2$namespace, url = test_url(), default = FALSE)
  worker_spawn(1, controller = theirs)
  task_wait(id2, timeout = 60, controller = ctl2)
  expect_equal(unname(task_status(id2, controller = ctl2)), "ERROR")
  # the worker's error is sealed with its own secret, which ctl2 refuses
  expect_error(task_result(id2, controller = ctl2), class = "redq_error_signature")
  expect_match(conditionMessage(task_result(id2, controller = theirs)), "signature")
})
