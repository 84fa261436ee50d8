# The dashboard served by a separate R process, loaded by a real headless
# Chromium; /metrics and the actions read over HTTP.

# The DOM Chromium renders for `url`, after the page's scripts ran.
chromium_dom <- function(url) {
  out <- processx::run("chromium", c("--headless", "--no-sandbox", "--disable-gpu",
                                     "--disable-dev-shm-usage", "--virtual-time-budget=3000",
                                     "--dump-dom", url),
                       timeout = 60, error_on_status = FALSE)
  expect_equal(out$status, 0, info = out$stderr)
  out$stdout
}

# The text of the element with `id` in a dumped DOM (its first number).
dom_number <- function(dom, id) {
  m <- regmatches(dom, regexpr(sprintf('id="%s"[^>]*><div class="n">[^<]*', id), dom))
  if (!length(m)) return(NA_real_)
  as.numeric(sub(".*>", "", m))
}

# A dashboard of the test's namespace in a background R process.
local_dashboard <- function(ctl, envir = parent.frame()) {
  port <- redq:::free_port()
  bg <- callr::r_bg(function(url, ns, port) {
    library(redq)
    redq_dashboard(port = port, controller = redq_controller(ns, url = url), interval = 0.5,
                   block = TRUE)
  }, list(test_url(), ctl$namespace, port), supervise = TRUE)
  withr::defer(bg$kill(), envir = envir)
  url <- sprintf("http://127.0.0.1:%d/", port)
  ok <- wait_until(function() {
    !inherits(try(suppressWarnings(readLines(paste0(url, "metrics"), warn = FALSE)), silent = TRUE),
              "try-error")
  }, timeout = 30, interval = 0.2)
  expect_true(ok, info = paste(bg$read_all_error(), collapse = "\n"))
  url
}

curl <- function(...) processx::run("curl", c("-s", "-w", "\n%{http_code}", ...), error_on_status = FALSE)$stdout

test_that("headless Chromium sees the workers, queue lengths and new counts on the dashboard", {
  ctl <- test_controller()
  url <- local_dashboard(ctl)
  w <- worker_spawn(2, queue = c("default", "fast"))
  ids <- task_create_bulk_expr(x, data.frame(x = 1:10))
  task_wait(ids, timeout = 20)
  worker_message_send_and_wait("PAUSE", worker_ids = w)
  waiting <- task_create_bulk_expr(x, data.frame(x = 1:3), queue = "fast")
  dom <- chromium_dom(url)
  for (id in w$id) expect_match(dom, sprintf('data-worker="%s"', id), fixed = TRUE)
  expect_match(dom, '<tr data-queue="fast"><td>fast</td><td class="num qlen">3</td></tr>', fixed = TRUE)
  expect_equal(dom_number(dom, "count-COMPLETE"), 10)
  expect_equal(dom_number(dom, "count-PENDING"), 3)
  expect_match(dom, ctl$namespace, fixed = TRUE)
  # the server's password never reaches the page
  password <- sub("^.*://[^:]*:([^@]*)@.*$", "\\1", test_url())
  if (!identical(password, test_url())) expect_false(grepl(password, dom, fixed = TRUE))

  # a worker killed meanwhile is listed as lost
  doomed <- worker_spawn(1, queue = "none")
  tools::pskill(worker_pid(doomed$id, ctl), tools::SIGKILL)
  expect_true(wait_until(function() worker_status(doomed) == "LOST", timeout = 10))
  worker_message_send_and_wait("RESUME", worker_ids = w)
  failing <- task_create_expr(stop("no such file: data.csv"))
  task_wait(c(waiting, failing), timeout = 20)
  dom <- chromium_dom(url)
  expect_equal(dom_number(dom, "count-COMPLETE"), 13)
  expect_equal(dom_number(dom, "count-ERROR"), 1)
  expect_equal(dom_number(dom, "count-PENDING"), 0)
  expect_match(dom, "no such file: data.csv", fixed = TRUE)
  expect_match(dom, sprintf('data-lost="%s"', doomed$id), fixed = TRUE)
  expect_false(grepl(sprintf('data-worker="%s"', doomed$id), dom, fixed = TRUE))
  expect_match(dom, sprintf('<tr data-queue="fast"><td>fast</td><td class="num qlen">0</td></tr>'), fixed = TRUE)
  # the timeline has a bar for each task of the task API
  expect_equal(lengths(regmatches(dom, gregexpr("<rect [^>]*data-task=", dom))), 14)
})

test_that("/metrics is Prometheus text with the namespace's counts", {
  ctl <- test_controller()
  url <- local_dashboard(ctl)
  w <- worker_spawn(1)
  ids <- task_create_bulk_expr(x, data.frame(x = 1:5))
  bad <- task_create_expr(stop("x"))
  task_wait(c(ids, bad), timeout = 20)
  # workers report their time and counts with their next heartbeat
  ns <- sprintf('namespace="%s"', ctl$namespace)
  read <- function() readLines(paste0(url, "metrics"), warn = FALSE)
  expect_true(wait_until(function() sprintf('redq_task_duration_seconds_count{%s} 6', ns) %in% read(),
                         timeout = 5))
  text <- read()
  samples <- text[!startsWith(text, "#")]
  # every sample line is name{labels} value, every family has HELP and TYPE
  expect_true(all(grepl('^[a-z_]+\\{([a-z_]+="[^"]*",?)*\\} -?[0-9.e+]+$', samples)), info = paste(samples, collapse = "\n"))
  families <- unique(sub("(_sum|_count)?\\{.*", "", samples))
  for (f in families) {
    expect_true(any(text %in% sprintf("# TYPE %s %s", f, c("gauge", "counter", "summary"))), info = f)
  }
  expect_true(sprintf('redq_tasks_total{%s,status="COMPLETE"} 5', ns) %in% samples)
  expect_true(sprintf('redq_tasks_total{%s,status="ERROR"} 1', ns) %in% samples)
  expect_true(sprintf('redq_queue_length{%s,queue="default"} 0', ns) %in% samples)
  expect_true(sprintf('redq_workers{%s,status="%s"} 1', ns, worker_status(w)) %in% samples)
  expect_true(sprintf('redq_task_duration_seconds_count{%s} 6', ns) %in% samples)
  expect_true(sprintf('redq_worker_tasks_done{%s,worker="%s"} 6', ns, w$id) %in% samples)
  expect_identical(redq_metrics(ctl), paste0(paste(text, collapse = "\n"), "\n"))
})

test_that("the dashboard's actions need the page's token, then cancel, retry and stop", {
  ctl <- test_controller()
  url <- local_dashboard(ctl)
  w <- worker_spawn(1)
  long <- task_create_expr(Sys.sleep(60))
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  body <- sprintf('{"id":"%s"}', long)
  # another web page cannot act: it does not know the token
  expect_match(curl("-X", "POST", "-d", body, paste0(url, "api/cancel")), "403$")
  expect_match(curl("-X", "POST", "-H", "X-Redq-Token: guess", "-d", body, paste0(url, "api/cancel")), "403$")
  expect_equal(unname(task_status(long)), "RUNNING")
  page <- paste(readLines(url, warn = FALSE), collapse = "\n")
  token <- sub('.*const TOKEN = "([^"]+)".*', "\\1", page)
  post <- function(what, body) {
    curl("-X", "POST", "-H", paste("X-Redq-Token:", token), "-d", body, paste0(url, "api/", what))
  }
  expect_match(post("cancel", body), "200$")
  task_wait(long, timeout = 20)
  expect_equal(unname(task_status(long)), "CANCELLED")
  # retry all failed tasks: the cancelled one runs again
  expect_match(post("retry", "{}"), "200$")
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  expect_match(post("stop", sprintf('{"id":"%s"}', w$id)), "200$")
  expect_match(post("nonsense", "{}"), "500$")
  task_cancel(long)
  expect_true(wait_until(function() !w$is_alive(), timeout = 20))
})

test_that("the dashboard refuses bad arguments with classed errors", {
  ctl <- test_controller()
  expect_error(redq_dashboard(port = -1, controller = ctl), class = "redq_error_argument")
  expect_error(redq_dashboard(interval = 0, controller = ctl), class = "redq_error_argument")
  port <- redq:::free_port()
  d <- redq_dashboard(port = port, controller = ctl, block = FALSE)
  withr::defer(d$stop())
  expect_error(redq_dashboard(port = port, controller = ctl, block = FALSE), "choose another port",
               class = "redq_error_argument")
})
