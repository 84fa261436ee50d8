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

# A dashboard of the test's namespace in a background R process: the URL
# with the token that its message gives, the same without the token, the
# token and the port.
local_dashboard <- function(ctl, token = NULL, envir = parent.frame()) {
  port <- redq:::free_port()
  bg <- callr::r_bg(function(url, ns, port, token) {
    library(redq)
    redq_dashboard(port = port, controller = redq_controller(ns, url = url), interval = 0.5,
                   block = TRUE, token = token)
  }, list(test_url(), ctl$namespace, port, token), supervise = TRUE)
  withr::defer(bg$kill(), envir = envir)
  base <- sprintf("http://127.0.0.1:%d/", port)
  said <- ""
  ok <- wait_until(function() {
    said <<- paste0(said, bg$read_error())
    grepl("?token=", said, fixed = TRUE) && identical(curl(paste0(base, "health")), "ok\n\n200")
  }, timeout = 30, interval = 0.2)
  expect_true(ok, info = said)
  url <- regmatches(said, regexpr("http://[^ \n]+", said))
  list(url = url, base = base, token = sub(".*[?]token=", "", url), port = port)
}

curl <- function(...) processx::run("curl", c("-s", "-w", "\n%{http_code}", ...), error_on_status = FALSE)$stdout
# The response's headers only.
curl_head <- function(...) {
  processx::run("curl", c("-s", "-D", "-", "-o", "/dev/null", ...), error_on_status = FALSE)$stdout
}

# The session cookie ("name=value") that the tokened URL sets.
session_cookie <- function(d) {
  head <- curl_head(d$url)
  sub(";.*", "", regmatches(head, regexpr("(?<=Set-Cookie: )[^\r\n]*", head, perl = TRUE)))
}

test_that("headless Chromium sees the workers, queue lengths and new counts on the dashboard", {
  ctl <- test_controller()
  d <- local_dashboard(ctl)
  w <- worker_spawn(2, queue = c("default", "fast"))
  ids <- task_create_bulk_expr(x, data.frame(x = 1:10))
  task_wait(ids, timeout = 20)
  worker_message_send_and_wait("PAUSE", worker_ids = w)
  waiting <- task_create_bulk_expr(x, data.frame(x = 1:3), queue = "fast")
  # Chromium follows the redirect with the session cookie, and the page's
  # refreshes get through with it alone: no error shown
  dom <- chromium_dom(d$url)
  expect_match(dom, '<span id="error"></span>', fixed = TRUE)
  expect_false(grepl(d$token, dom, fixed = TRUE))
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
  dom <- chromium_dom(d$url)
  expect_match(dom, '<span id="error"></span>', fixed = TRUE)
  expect_equal(dom_number(dom, "count-COMPLETE"), 13)
  expect_equal(dom_number(dom, "count-ERROR"), 1)
  expect_equal(dom_number(dom, "count-PENDING"), 0)
  expect_match(dom, "no such file: data.csv", fixed = TRUE)
  expect_match(dom, sprintf('data-lost="%s"', doomed$id), fixed = TRUE)
  expect_false(grepl(sprintf('data-worker="%s"', doomed$id), dom, fixed = TRUE))
  expect_match(dom, sprintf('<tr data-queue="fast"><td>fast</td><td class="num qlen">0</td></tr>'), fixed = TRUE)
  # the timeline has a bar for each task of the task API
  expect_equal(lengths(regmatches(dom, gregexpr("<rect [^>]*data-task=", dom))), 14)
  # a browser without the token (a fresh profile) sees nothing
  dom <- chromium_dom(d$base)
  expect_false(grepl(ctl$namespace, dom, fixed = TRUE))
  expect_false(grepl("data.csv", dom, fixed = TRUE))
  expect_match(dom, "unauthorized", fixed = TRUE)
})

test_that("/metrics is Prometheus text with the namespace's counts, for a scraper's token", {
  ctl <- test_controller()
  token <- paste0("scraper-", redq:::secure_token(16))
  d <- local_dashboard(ctl, token = token)
  expect_identical(d$url, paste0(d$base, "?token=", token))
  w <- worker_spawn(1)
  ids <- task_create_bulk_expr(x, data.frame(x = 1:5))
  bad <- task_create_expr(stop("x"))
  task_wait(c(ids, bad), timeout = 20)
  # workers report their time and counts with their next heartbeat
  ns <- sprintf('namespace="%s"', ctl$namespace)
  read <- function() {
    out <- processx::run("curl", c("-s", "-f", "-H", paste("Authorization: Bearer", token),
                                   paste0(d$base, "metrics")), error_on_status = FALSE)
    strsplit(out$stdout, "\n")[[1]]
  }
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

test_that("the dashboard's actions need the token and the custom header, then cancel, retry and stop", {
  ctl <- test_controller()
  d <- local_dashboard(ctl)
  w <- worker_spawn(1)
  long <- task_create_expr(Sys.sleep(60))
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  body <- sprintf('{"id":"%s"}', long)
  cancel <- paste0(d$base, "api/cancel")
  xrw <- c("-H", "X-Requested-With: redq")
  bearer <- c("-H", paste("Authorization: Bearer", d$token))
  # another web page cannot act: it does not know the token, and cannot
  # send the custom header, nor its own Origin
  expect_match(curl("-X", "POST", xrw, "-d", body, cancel), "401$")
  expect_match(curl("-X", "POST", xrw, "-H", "X-Redq-Token: guess", "-d", body, cancel), "401$")
  expect_match(curl("-X", "POST", bearer, "-d", body, cancel), "403$")
  expect_match(curl("-X", "POST", bearer, "-H", "X-Requested-With: other", "-d", body, cancel), "403$")
  expect_match(curl("-X", "POST", bearer, xrw, "-H", "Origin: http://evil.example", "-d", body, cancel),
               "403$")
  expect_match(curl("-X", "POST", bearer, xrw, "-H", "Origin: null", "-d", body, cancel), "403$")
  # a GET does not act
  expect_match(curl(bearer, xrw, paste0(cancel, "?id=", long)), "404$")
  Sys.sleep(0.5)
  expect_equal(unname(task_status(long)), "RUNNING")
  post <- function(what, body) {
    curl("-X", "POST", bearer, xrw, "-H", sprintf("Origin: http://127.0.0.1:%d", d$port), "-d", body,
         paste0(d$base, "api/", what))
  }
  expect_match(post("cancel", body), "200$")
  task_wait(long, timeout = 20)
  expect_equal(unname(task_status(long)), "CANCELLED")
  # retry all failed tasks: the cancelled one runs again
  expect_match(post("retry", "{}"), "200$")
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  # the page's way: the session cookie and the custom header, no Origin
  expect_match(curl("-X", "POST", "-b", session_cookie(d), xrw, "-d", sprintf('{"id":"%s"}', w$id),
                    paste0(d$base, "api/stop")), "200$")
  expect_match(post("nonsense", "{}"), "500$")
  task_cancel(long)
  expect_true(wait_until(function() !w$is_alive(), timeout = 20))
})

test_that("without the token the dashboard shows nothing and does nothing", {
  ctl <- test_controller()
  d <- local_dashboard(ctl)
  w <- worker_spawn(1)
  # something to hide: a failure's message, a task to cancel
  bad <- task_create_expr(stop("the private failure text"))
  task_wait(bad, timeout = 20)
  long <- task_create_expr(Sys.sleep(60))
  expect_true(wait_until(function() task_status(long) == "RUNNING", timeout = 20))
  refused <- function(out, code = "401") {
    expect_match(out, paste0(code, "$"))
    expect_lt(nchar(out), 200)
    for (secret in c(d$token, ctl$namespace, "private failure", long)) {
      expect_false(grepl(secret, out, fixed = TRUE), info = secret)
    }
  }
  for (path in c("", "index.html", "api/state", "metrics", "favicon.ico")) {
    refused(curl(paste0(d$base, path)))
  }
  cancel <- c("-X", "POST", "-H", "X-Requested-With: redq", "-d", sprintf('{"id":"%s"}', long),
              paste0(d$base, "api/cancel"))
  refused(curl(cancel))
  # a wrong token, however it comes, is refused: near misses too
  wrong <- c(redq:::secure_token(), substr(d$token, 1, nchar(d$token) - 1), paste0(d$token, "0"),
             toupper(d$token), "0")
  for (t in wrong) {
    refused(curl(paste0(d$base, "?token=", t)))
    refused(curl(paste0(d$base, "api/state?token=", t)))
    refused(curl("-H", paste("Authorization: Bearer", t), paste0(d$base, "metrics")))
    refused(curl("-H", paste("X-Redq-Token:", t), paste0(d$base, "api/state")))
    refused(curl("-b", sprintf("redq_dashboard_%d=%s", d$port, t), paste0(d$base, "api/state")))
    refused(curl("-H", paste("X-Redq-Token:", t), cancel))
  }
  Sys.sleep(0.5)
  expect_equal(unname(task_status(long)), "RUNNING")
  # the health check needs nothing and tells nothing
  expect_identical(curl(paste0(d$base, "health")), "ok\n\n200")
  task_cancel(long)
})

test_that("the tokened URL sets a session cookie and redirects to a page without the token", {
  ctl <- test_controller()
  d <- local_dashboard(ctl)
  expect_match(d$token, "^[0-9a-f]{64}$")
  head <- curl_head(d$url)
  expect_match(head, "^HTTP/1.1 303")
  expect_match(head, "\r\nLocation: /\r\n", fixed = TRUE)
  set <- regmatches(head, gregexpr("(?<=Set-Cookie: )[^\r\n]*", head, perl = TRUE))[[1]]
  expect_length(set, 1)
  attrs <- trimws(strsplit(set, ";", fixed = TRUE)[[1]])
  expect_match(attrs[[1]], sprintf("^redq_dashboard_%d=[0-9a-f]{64}$", d$port))
  expect_true(all(c("Path=/", "HttpOnly", "SameSite=Strict") %in% attrs[-1]), info = set)
  cookie <- attrs[[1]]
  value <- sub(".*=", "", cookie)
  # the page and its data with the cookie alone; neither secret in the page
  page <- curl("-b", cookie, d$base)
  expect_match(page, "200$")
  expect_match(page, "<title>redq dashboard</title>", fixed = TRUE)
  expect_match(page, ctl$namespace, fixed = TRUE)
  expect_false(grepl(d$token, page, fixed = TRUE))
  expect_false(grepl(value, page, fixed = TRUE))
  expect_match(curl("-b", cookie, paste0(d$base, "api/state")), "200$")
  # the cookie is this port's: under another dashboard's name it counts for nothing
  expect_match(curl("-b", sprintf("redq_dashboard_%d=%s", d$port + 1, value), paste0(d$base, "api/state")),
               "401$")
  # a client with a cookie jar, as a browser, lands on the page
  jar <- withr::local_tempfile()
  out <- curl("-L", "-c", jar, "-b", jar, d$url)
  expect_match(out, "200$")
  expect_match(out, ctl$namespace, fixed = TRUE)
  expect_false(grepl(d$token, out, fixed = TRUE))
  # a wrong token in the URL gets no cookie
  head <- curl_head(paste0(d$base, "?token=", redq:::secure_token()))
  expect_match(head, "^HTTP/1.1 401")
  expect_false(grepl("Set-Cookie", head, ignore.case = TRUE))
  # the token in a header works everywhere, for scripts
  expect_match(curl("-H", paste("X-Redq-Token:", d$token), paste0(d$base, "api/state")), "200$")
  expect_match(curl("-H", paste("Authorization: Bearer", d$token), d$base), "200$")
  expect_match(curl("-H", paste("Authorization: bearer", d$token), paste0(d$base, "metrics")), "200$")
})

test_that("a Host header that is not the dashboard's is refused, even with the token", {
  ctl <- test_controller()
  d <- local_dashboard(ctl)
  bearer <- c("-H", paste("Authorization: Bearer", d$token))
  bad <- c("evil.example", sprintf("evil.example:%d", d$port), sprintf("127.0.0.1.evil.example:%d", d$port),
           sprintf("127.0.0.1:%d", d$port + 1), "127.0.0.1", sprintf("0.0.0.0:%d", d$port))
  for (h in bad) {
    for (u in c(d$url, paste0(d$base, "api/state"), paste0(d$base, "metrics"), paste0(d$base, "health"))) {
      out <- curl("-H", paste("Host:", h), bearer, u)
      expect_match(out, "403$", info = paste(h, u))
      expect_false(grepl(d$token, out, fixed = TRUE))
      expect_false(grepl(ctl$namespace, out, fixed = TRUE))
    }
    expect_false(grepl("Set-Cookie", curl_head("-H", paste("Host:", h), d$url), ignore.case = TRUE))
    expect_match(curl("-X", "POST", "-H", paste("Host:", h), bearer, "-H", "X-Requested-With: redq",
                      "-d", "{}", paste0(d$base, "api/retry")), "403$")
  }
  for (h in sprintf(c("127.0.0.1:%d", "localhost:%d", "LocalHost:%d", "[::1]:%d"), d$port)) {
    expect_match(curl("-H", paste("Host:", h), bearer, paste0(d$base, "api/state")), "200$", info = h)
  }
})

test_that("the token comes from the system's generator: R's random numbers are untouched", {
  ctl <- test_controller()
  ports <- c(redq:::free_port(), redq:::free_port())
  set.seed(1)
  expect_message(d1 <- redq_dashboard(port = ports[[1]], controller = ctl, block = FALSE),
                 "?token=", fixed = TRUE)
  d1$stop()
  after <- runif(1)
  set.seed(1)
  expect_identical(after, runif(1))
  expect_match(d1$url, sprintf("^http://127[.]0[.]0[.]1:%d/[?]token=[0-9a-f]{64}$", ports[[1]]))
  # the same seed, another token
  set.seed(1)
  d2 <- suppressMessages(redq_dashboard(port = ports[[2]], controller = ctl, block = FALSE))
  d2$stop()
  expect_false(identical(sub(".*=", "", d1$url), sub(".*=", "", d2$url)))
  # a fixed token
  token <- strrep("0123456789abcdef", 2)
  d4 <- suppressMessages(redq_dashboard(port = ports[[2]], controller = ctl, block = FALSE, token = token))
  d4$stop()
  expect_identical(d4$url, sprintf("http://127.0.0.1:%d/?token=%s", ports[[2]], token))
})

test_that("the dashboard refuses bad arguments with classed errors", {
  ctl <- test_controller()
  expect_error(redq_dashboard(port = -1, controller = ctl), class = "redq_error_argument")
  expect_error(redq_dashboard(interval = 0, controller = ctl), class = "redq_error_argument")
  for (token in list("too short", strrep("a", 31), paste0(strrep("a", 32), " b"), NA_character_, 1)) {
    expect_error(redq_dashboard(token = token, controller = ctl), class = "redq_error_argument")
  }
  port <- redq:::free_port()
  d <- redq_dashboard(port = port, controller = ctl, block = FALSE)
  withr::defer(d$stop())
  expect_error(redq_dashboard(port = port, controller = ctl, block = FALSE), "choose another port",
               class = "redq_error_argument")
})
