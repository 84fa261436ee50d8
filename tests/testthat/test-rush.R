# The rush interface (rush 0.1.2's manual) on redq workers.

local_rush <- function(ctl, ..., envir = parent.frame()) {
  r <- rsh(network_id = ctl$namespace, config = test_url(), ...)
  withr::defer(try(r$reset(), silent = TRUE), envir = envir)
  r
}

test_that("the manual's example: rush_plan, rsh, start_local_workers, push, wait, fetch", {
  ctl <- test_controller()
  withr::defer(remove_rush_plan())
  rush_plan(n_workers = 2, config = test_url())
  expect_true(rush_available())
  expect_equal(rush_config()$n_workers, 2)
  rush <- local_rush(ctl)
  expect_output(print(rush), "Running Workers: 0")
  fun <- function(x1, x2, ...) list(y = x1 + x2)
  rush$start_local_workers(fun = fun)
  expect_equal(rush$n_running_workers, 2)
  xss <- list(list(x1 = 3, x2 = 5), list(x1 = 4, x2 = 6))
  keys <- rush$push_tasks(xss)
  rush$wait_for_tasks(keys)
  tab <- rush$fetch_finished_tasks()
  expect_s3_class(tab, "data.table")
  expect_identical(names(tab), c("x1", "x2", "y", "pid", "worker_id", "keys"))
  expect_setequal(tab$keys, keys)
  expect_equal(tab$y[match(keys, tab$keys)], c(8, 10))
  expect_setequal(tab$worker_id, rush$worker_ids)
  expect_true(all(tab$pid %in% rush$worker_info$pid))
  expect_equal(rush$n_finished_tasks, 2)
  expect_identical(rush$finished_tasks, tab$keys)
  expect_output(print(rush), "Finished Tasks: 2")
  # a failing task is failed, with its message
  bad <- rush$push_tasks(list(list(x1 = 1, x2 = "a")))
  rush$wait_for_tasks(bad)
  failed <- rush$fetch_failed_tasks()
  expect_identical(failed$keys, bad)
  expect_match(failed$message, "non-numeric argument")
  expect_true(rush$is_failed_task(bad))
  expect_false(rush$is_running_task(bad))
  st <- rush$fetch_tasks_with_state()
  expect_identical(names(st)[1], "state")
  expect_identical(st$state, c("finished", "finished", "failed"))
  expect_identical(rush$tasks_with_state(c("failed", "finished")),
                   list(finished = keys, failed = bad))
  # a second controller of the network sees the same tables
  other <- rsh(network_id = ctl$namespace, config = test_url())
  expect_identical(other$fetch_finished_tasks()$keys, tab$keys)
  expect_equal(other$n_tasks, 3)
  rush$stop_workers(type = "kill")
  expect_true(wait_until(function() rush$n_running_workers == 0, timeout = 5))
  expect_setequal(rush$worker_states$state, "killed")
})

test_that("constants, globals, packages and extra fields reach the table", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  assign("offset", 100, envir = globalenv())
  withr::defer(rm("offset", envir = globalenv()))
  rush$start_local_workers(fun = function(x1, x2, x3, ...) {
    list(y = x1 + x2 + x3 + offset, ext = tools::file_ext("a.csv"))
  }, constants = list(x3 = 5), globals = "offset", packages = "tools", n_workers = 1)
  keys <- rush$push_tasks(list(list(x1 = 1, x2 = 2)), extra = list(list(tag = "a")))
  rush$wait_for_tasks(keys)
  tab <- rush$fetch_finished_tasks()
  expect_equal(tab$y, 108)
  expect_equal(tab$ext, "csv")
  expect_equal(tab$tag, "a")
  expect_equal(rush$fetch_finished_tasks(data_format = "list")[[keys]]$ys, list(y = 108, ext = "csv"))
  expect_error(rush$start_local_workers(fun = identity, globals = "no_such_global"), "not found")
})

test_that("a decentralised loop on 4 workers: each new result is returned once", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  loop <- function(rush) {
    # all four take part, however slowly their processes start
    while (rush$n_running_workers < 4) Sys.sleep(0.05)
    while (rush$n_finished_tasks < 100) {
      xs <- list(x1 = sample(seq(1000), 1), x2 = sample(seq(1000), 1))
      keys <- rush$push_running_tasks(list(xs))
      ys <- list(y = xs$x1 + xs$x2)
      Sys.sleep(0.005)
      rush$push_results(keys, list(ys))
    }
    NULL
  }
  rush$start_local_workers(worker_loop = loop, n_workers = 4)
  seen <- character()
  repeat {
    new <- rush$wait_for_new_tasks(timeout = 10)
    if (nrow(new) == 0) break
    expect_false(any(new$keys %in% seen))
    expect_true(all(new$y == new$x1 + new$x2))
    seen <- c(seen, new$keys)
  }
  tab <- rush$fetch_finished_tasks()
  expect_gte(nrow(tab), 100)
  expect_setequal(seen, tab$keys)
  expect_equal(anyDuplicated(tab$keys), 0)
  expect_gte(length(unique(tab$worker_id)), 2)
  expect_equal(nrow(rush$fetch_new_tasks()), 0)
  # the 4 loops ended and their workers left
  expect_true(wait_until(function() rush$n_running_workers == 0, timeout = 10))
  expect_equal(rush$n_terminated_workers, 4)
})

test_that("a loop of its own pops queued tasks and pushes results and failures", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  keys <- rush$push_tasks(lapply(1:20, function(i) list(x = i)), terminate_workers = TRUE)
  loop <- function(rush) {
    while (!rush$terminated && !rush$terminated_on_idle) {
      task <- rush$pop_task(timeout = 0.2)
      if (is.null(task)) next
      if (task$xs$x %% 5 == 0) {
        rush$push_failed(task$key, conditions = list(list(message = "multiple of five")))
      } else {
        rush$push_results(task$key, yss = list(list(y = task$xs$x * 2)))
      }
    }
  }
  rush$start_local_workers(worker_loop = loop, n_workers = 2)
  rush$wait_for_tasks(keys)
  fin <- rush$fetch_finished_tasks()
  expect_setequal(fin$x, setdiff(1:20, c(5, 10, 15, 20)))
  expect_equal(fin$y, fin$x * 2)
  failed <- rush$fetch_failed_tasks()
  expect_setequal(failed$x, c(5, 10, 15, 20))
  expect_true(all(failed$message == "multiple of five"))
  # with the queue empty and terminate_workers set, the loops end
  expect_true(wait_until(function() rush$n_running_workers == 0, timeout = 10))
})

test_that("with a seed, results do not depend on the number of workers", {
  ctl <- test_controller()
  # each draw takes a moment, so that the work spreads over the workers
  draw <- function(...) {
    Sys.sleep(0.05)
    list(y = stats::runif(1))
  }
  tables <- lapply(c(1, 2, 4), function(n) {
    ns <- paste0(ctl$namespace, "-", n)
    rush <- rsh(network_id = ns, config = test_url(), seed = 123)
    withr::defer({
      rush$reset()
      cleanup_namespace(redq_controller(ns, url = test_url(), default = FALSE))
    })
    rush$start_local_workers(fun = draw, n_workers = n)
    keys <- rush$push_tasks(lapply(1:12, function(i) list(i = i)))
    rush$wait_for_tasks(keys)
    # (which worker ran which task varies; the draws must not)
    expect_gte(length(unique(rush$fetch_finished_tasks()$worker_id)), min(n, 2))
    tab <- rush$fetch_tasks(fields = c("xs", "ys"))
    tab$y[order(tab$i)]
  })
  expect_identical(tables[[1]], tables[[2]])
  expect_identical(tables[[1]], tables[[3]])
  # explicit seeds are used as given
  rush <- local_rush(ctl)
  rush$start_local_workers(fun = draw, n_workers = 1)
  RNGkind("L'Ecuyer-CMRG")
  withr::defer(RNGkind("default"))
  set.seed(1)
  s <- .Random.seed
  keys <- rush$push_tasks(list(list(i = 1)), seeds = list(s))
  rush$wait_for_tasks(keys)
  assign(".Random.seed", s, envir = globalenv())
  expect_equal(rush$fetch_finished_tasks()$y, stats::runif(1))
})

test_that("SIGKILL of a busy worker: its task is retried elsewhere, or failed naming the worker", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  rush <- local_rush(ctl)
  rush$start_local_workers(fun = function(i, dir, ...) {
    if (i == 3 && !file.exists(file.path(dir, "killed"))) {
      file.create(file.path(dir, "killed"))
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    Sys.sleep(0.05)
    list(y = i * 10)
  }, constants = list(dir = dir), n_workers = 2)
  keys <- rush$push_tasks(lapply(1:10, function(i) list(i = i)), max_retries = 1)
  suppressWarnings(rush$wait_for_tasks(keys))
  tab <- rush$fetch_finished_tasks()
  expect_equal(sort(tab$i), 1:10)
  expect_equal(tab$y, tab$i * 10)
  expect_equal(anyDuplicated(tab$keys), 0)
  expect_equal(rush$n_lost_workers, 1)
  # with no retries left, the task fails and says which worker was lost
  unlink(file.path(dir, "killed"))
  rush$start_local_workers(n_workers = 1, fun = function(i, dir, ...) {
    tools::pskill(Sys.getpid(), tools::SIGKILL)
  }, constants = list(dir = dir))
  lost_before <- rush$lost_worker_ids
  keys <- rush$push_tasks(list(list(i = 3)), max_retries = 0)
  suppressWarnings(rush$wait_for_tasks(keys))
  failed <- rush$fetch_failed_tasks()
  expect_identical(failed$keys, keys)
  lost <- setdiff(rush$lost_worker_ids, lost_before)
  expect_length(lost, 1)
  expect_match(failed$message, lost, fixed = TRUE)
})

test_that("priority tasks go to the named worker; bad input gives classed errors", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  rush$start_local_workers(fun = function(i, ...) list(pid = Sys.getpid()), n_workers = 2)
  w <- rush$running_worker_ids[[1]]
  keys <- rush$push_priority_tasks(lapply(1:4, function(i) list(i = i)), priority = rep(w, 4))
  rush$wait_for_tasks(keys)
  tab <- rush$fetch_finished_tasks()
  expect_true(all(tab$worker_id == w))
  expect_error(rush$push_tasks(list(1, 2)), class = "redq_error_argument")
  expect_error(rush$push_tasks(list(list(x = 1)), seeds = list(1, 2)), class = "redq_error_argument")
  expect_error(rush$push_tasks(list(list(x = 1)), max_retries = -1), class = "redq_error_argument")
  expect_error(rush$tasks_with_state("done"), class = "redq_error_argument")
  expect_error(rsh(network_id = "bad name"), class = "redq_error_argument")
  expect_error(rush_plan(config = "redis://127.0.0.1:1/0"), class = "redq_error_connection")
  # the network still works
  keys <- rush$push_tasks(list(list(i = 9)))
  rush$wait_for_tasks(keys)
  expect_equal(rush$n_finished_tasks, 5)
})

test_that("reset() stops the workers and deletes the network's tasks", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  rush$start_local_workers(fun = function(...) list(y = 1), n_workers = 1)
  keys <- rush$push_tasks(list(list(a = 1), list(a = 2)))
  rush$wait_for_tasks(keys)
  rush$reset()
  expect_equal(rush$n_tasks, 0)
  expect_true(wait_until(function() rush$n_running_workers == 0, timeout = 5))
  expect_false(any(grepl(":task:", namespace_keys(ctl))))
})

test_that("write_hashes adds fields shown as columns; push_failed from the controller", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  keys <- rush$push_tasks(list(list(x = 1), list(x = 2)))
  rush$write_hashes(note = list("a", "b"), keys = keys)
  tab <- rush$fetch_queued_tasks(fields = c("xs", "note"))
  expect_equal(tab$note[match(keys, tab$keys)], c("a", "b"))
  expect_equal(rush$read_hash(keys[[2]], c("xs", "note")), list(xs = list(x = 2), note = "b"))
  expect_error(rush$write_hashes(note = list("c")), class = "redq_error_argument")
  rush$push_failed(keys[[1]], conditions = list(list(message = "given up")))
  failed <- rush$fetch_failed_tasks()
  expect_identical(failed$keys, keys[[1]])
  expect_identical(failed$message, "given up")
  rush$reset()
  expect_length(namespace_keys(ctl)[grepl("fields", namespace_keys(ctl))], 0)
})

test_that("large_objects_path keeps large arguments and results in files, not in Redis", {
  ctl <- test_controller()
  dir <- withr::local_tempdir()
  withr::defer(remove_rush_plan())
  rush_plan(n_workers = 1, config = test_url(), large_objects_path = dir)
  rush <- local_rush(ctl)
  rush$start_local_workers(fun = function(x, ...) list(y = rev(x)))
  x <- as.raw(sample.int(255, 3e6, replace = TRUE))
  keys <- rush$push_tasks(list(list(x = x)))
  rush$wait_for_tasks(keys)
  tab <- rush$fetch_finished_tasks()
  expect_identical(tab$y[[1]], rev(x))
  expect_identical(tab$x[[1]], x)
  expect_lt(largest_value(ctl), 1e6)
  # the argument and the result, each in a file named by its hash
  expect_length(list.files(file.path(dir, ctl$namespace), pattern = "^[0-9a-f]{64}$"), 2)
})

test_that("workers whose loop ends at once started fine", {
  ctl <- test_controller()
  rush <- local_rush(ctl)
  ids <- rush$start_local_workers(worker_loop = function(rush) NULL, n_workers = 2)
  expect_length(ids, 2)
  expect_true(wait_until(function() rush$n_terminated_workers == 2, timeout = 20))
})
