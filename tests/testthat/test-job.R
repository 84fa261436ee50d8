# The engine's R face, as the front ends use it: submit, wait for any,
# results as they arrive, "is this task's worker gone", cancel, remove.

test_that("a job hands results back as they arrive, with their tags", {
  ctl <- test_controller()
  worker_spawn(2)
  job <- redq:::job_open(ctl)
  withr::defer(redq:::job_remove(job))
  payloads <- lapply(1:8, function(i) redq:::task_payload_call(function(x) x * 10, list(i)))
  ids <- redq:::job_submit(job, "default", payloads, tags = 1:8)
  expect_length(unique(ids), 8)
  got <- list()
  rounds <- 0
  while (length(got) < 8 && rounds < 100) {
    rounds <- rounds + 1
    r <- redq:::job_wait(job, timeout = 20)
    expect_false(r$timed_out)
    for (i in seq_along(r$id)) got[[as.character(r$tag[[i]])]] <- redq:::job_value(r, i)
  }
  expect_equal(unname(unlist(got[as.character(1:8)])), (1:8) * 10)
  expect_equal(r$outstanding, 0)
  # nothing left: a wait returns at once, empty
  expect_length(redq:::job_wait(job, timeout = 5)$id, 0)
})

test_that("a job sees its task's worker gone, cancels it, and leaves no keys", {
  ctl <- test_controller()
  w <- worker_spawn(1)$id
  job <- redq:::job_open(ctl)
  long <- redq:::job_submit(job, "default", list(redq:::task_payload_call(Sys.sleep, list(30))))
  expect_true(wait_until(function() identical(task_info(long)$worker, w), timeout = 20))
  expect_true(worker_info(w)[[1]]$alive)
  r <- redq:::job_wait(job, timeout = 0)
  expect_true(r$timed_out)
  expect_equal(r$outstanding, 1)
  tools::pskill(worker_pid(w, ctl), tools::SIGKILL)
  # nobody reaps (no other worker, no waiting controller): the task stays
  # RUNNING on a worker whose lease is gone
  expect_true(wait_until(function() !worker_info(w)[[1]]$alive, timeout = 10))
  expect_equal(unname(task_status(long)), "RUNNING")
  expect_equal(redq:::job_cancel(job, long), 1)
  # the wait may reap the dead worker first: that is reported, once
  r <- withCallingHandlers(redq:::job_wait(job, n = 0, timeout = 10), warning = function(w) {
    expect_match(conditionMessage(w), "stopped answering|was lost")
    invokeRestart("muffleWarning")
  })
  expect_equal(r$id, long)
  expect_false(r$completed)
  expect_s3_class(redq:::job_value(r, 1), "redq_task_cancelled")
  redq:::job_remove(job)
  expect_false(any(grepl(":job:|:task:|:payloads", namespace_keys(ctl))))
})
