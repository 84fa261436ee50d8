# The live dashboard and the Prometheus metrics: one read-only script per
# refresh (rs_controller_snapshot(), see lua/snapshot.lua), turned into a
# JSON state for the page and into Prometheus' text format.
#
# Who may see and act, as Jupyter does it. The token is drawn from the
# operating system's generator (secure_token()), never from R's. Every
# request but GET /health must present it: as `?token=`, as
# `Authorization: Bearer`, as `X-Redq-Token`, or as the session cookie. The
# page's URL carries it once: that GET sets the cookie (a second secret,
# HttpOnly so that no script reads it, SameSite=Strict so that no other
# site's request carries it, named after the port because cookies are per
# host, not per port) and redirects to "/", so that the token leaves the
# address bar and the page's HTML never holds a secret. The page's scripts
# then call the API with the cookie alone. A POST also needs the header
# `X-Requested-With: redq`, which a form of another site cannot send and
# its scripts cannot without a CORS preflight this server never grants,
# and an Origin, if any, that is the dashboard's own. The Host header must
# name this dashboard (loopback, or the interface it listens on), so that
# a site whose name an attacker rebinds to 127.0.0.1 is refused.

#' A live dashboard of a namespace, and its metrics
#'
#' `redq_dashboard()` serves a web page that shows the namespace as it
#' runs: its queues and their lengths, the live workers (status, host,
#' process, current task, time since their last heartbeat, tasks done) and
#' the latest workers found lost, task totals by status, the throughput
#' over the last minutes, the latest failures with their error messages
#' and logs, and a timeline of the latest tasks (one row per worker, one
#' bar per attempt, attempts lost with their worker crossed out). The page
#' updates itself every `interval` seconds. It can cancel a running task,
#' retry failed tasks and stop a worker, each after a confirmation.
#'
#' Each refresh is one read-only script on the server that reads what it
#' lists (queues, live workers, running totals, the latest tasks); it
#' never scans the keyspace, so watching costs the workers nothing. The
#' page never shows the server's password.
#'
#' The dashboard shows task errors and can act on tasks, so only who holds
#' its token may use it, as with Jupyter: it prints a URL that carries the
#' token (`http://127.0.0.1:8790/?token=...`); open that one. The browser
#' then gets a session cookie (HttpOnly, SameSite=Strict) and is sent to
#' the page without the token in its address; the page itself never holds
#' the token. Requests without the token get 401 and no data; so do other
#' users of a shared machine. Requests whose `Host` header is not this
#' dashboard's get 403 (a defence against DNS rebinding): `127.0.0.1`,
#' `localhost` or `[::1]` with the port, or `host` when it is another
#' interface; when `host` is every interface, also an IP address or this
#' machine's name. The actions are POSTs that also need the header
#' `X-Requested-With: redq` and, if an `Origin` is sent, the dashboard's
#' own, so other web pages cannot trigger them. `GET /health` answers `ok`
#' to anyone, and nothing else.
#'
#' The same server answers `/metrics` in Prometheus' text format (see
#' [redq_metrics()]) and `/api/state` with the page's data as JSON. Both
#' need the token: give it as `Authorization: Bearer <token>` (for
#' Prometheus, `authorization: {credentials: <token>}` in the scrape
#' config), with the `token` argument fixing it across restarts.
#'
#' @param port TCP port to listen on.
#' @param host Interface to listen on (`"0.0.0.0"` for all; then anyone
#'   who can reach the port and has the token can see the namespace and act
#'   on it, over plain HTTP: prefer an SSH tunnel to the loopback).
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @param interval Seconds between the page's refreshes.
#' @param block Serve until interrupted (the default outside interactive
#'   sessions), or return at once and serve while the session is idle.
#' @param recent How many of the latest task API tasks the timeline shows.
#' @param token The secret that grants access: `NULL` (the default) for a
#'   new random one from the operating system's generator, or a string of
#'   at least 32 letters, digits, `-`, `_`, `.` or `~` (e.g. from
#'   `openssl rand -hex 32`) to keep the same one across restarts, for a
#'   scraper. Keep it as private as a password.
#' @return With `block = FALSE`, invisibly, a handle: `$url`, the page's
#'   URL with the token (as printed; a secret), and `$stop()` to close the
#'   dashboard. With `block = TRUE`, `NULL` once interrupted.
#' @export
#' @examples
#' if (interactive() && redq_available()) {
#'   d <- redq_dashboard()
#'   utils::browseURL(d$url)
#'   # ... later
#'   d$stop()
#' }
redq_dashboard <- function(port = 8790, host = "127.0.0.1", controller = NULL, interval = 1.5,
                           block = !interactive(), recent = 200, token = NULL) {
  for (pkg in c("httpuv", "jsonlite")) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      redq_abort("dependency", sprintf(
        "the dashboard needs the '%s' package: install it (Debian: apt install r-cran-%s)", pkg, pkg))
    }
  }
  ctl <- get_controller(controller)
  port <- check_count(port, "port")
  check_string(host, "host")
  interval <- check_seconds(interval, "interval", zero_ok = FALSE)
  recent <- check_count(recent, "recent")
  check_string(token, "token", null_ok = TRUE)
  if (!is.null(token) && !grepl("^[A-Za-z0-9._~-]{32,}$", token)) {
    redq_abort("argument", paste(
      "'token' must be at least 32 letters, digits, '-', '_', '.' or '~' (it goes in URLs,",
      "headers and cookies): use NULL for a new random one"))
  }
  board <- new.env(parent = emptyenv())
  board$ctl <- ctl
  board$token <- token %||% secure_token()
  # the browser's session, a second secret: it lives only in an HttpOnly cookie
  board$session <- secure_token()
  board$cookie <- sprintf("redq_dashboard_%d", port)
  board$port <- port
  board$hosts <- dashboard_hosts(host, port)
  board$anywhere <- host %in% c("0.0.0.0", "::")
  board$interval <- interval
  board$recent <- recent
  board$history <- data.frame(time = numeric(), done = numeric())
  server <- tryCatch(httpuv::startServer(host, port, list(call = function(req) dashboard_call(board, req))),
                     error = function(e) redq_abort("argument", sprintf(
                       "cannot listen on %s:%d (%s): choose another port", host, port, conditionMessage(e))))
  url <- sprintf("http://%s:%d/?token=%s", if (board$anywhere) "127.0.0.1" else bracket(host), port,
                 board$token)
  handle <- structure(list(url = url, stop = function() invisible(server$stop())),
                      class = "redq_dashboard")
  if (!block) {
    message("redq dashboard of namespace '", ctl$namespace, "' at ", url)
    return(invisible(handle))
  }
  message("redq dashboard of namespace '", ctl$namespace, "' at ", url, " (Ctrl+C to stop)")
  on.exit(server$stop())
  # the totals are sampled every interval even while no page is open, so
  # that the throughput chart has a past when one opens
  tryCatch(repeat {
    httpuv::service(250)
    last <- board$history$time
    if (!length(last) || unclass(Sys.time()) - last[[length(last)]] >= interval) {
      try(dashboard_state(board), silent = TRUE)
    }
  }, interrupt = function(e) NULL)
  invisible(NULL)
}

#' @export
print.redq_dashboard <- function(x, ...) {
  cat("<redq dashboard at ", x$url, ">\n", sep = "")
  invisible(x)
}

# The Host headers that name this dashboard: the loopback names, then the
# interface it listens on (an IPv6 address in brackets), each with the port
# (which browsers leave out for port 80).
dashboard_hosts <- function(host, port) {
  host <- bracket(tolower(host))
  names <- unique(c("127.0.0.1", "localhost", "[::1]", if (!host %in% c("0.0.0.0", "[::]")) host))
  c(paste0(names, ":", port), if (port == 80) names)
}
bracket <- function(host) if (grepl(":", host, fixed = TRUE)) paste0("[", host, "]") else host

# Whether a request's Host header names this dashboard. Listening on every
# interface, an IP address or this machine's name is also fine: DNS cannot
# rebind an address, and an attacker does not own this machine's name.
host_ok <- function(board, value) {
  value <- tolower(value %||% "")
  if (value %in% board$hosts) return(TRUE)
  name <- sub(sprintf(":%d$", board$port), "", value)
  board$anywhere && (name != value || board$port == 80L) &&
    (grepl("^[0-9.]+$|^\\[[0-9a-f:.]+\\]$", name) || name == tolower(Sys.info()[["nodename"]]))
}

# Whether `given` is `secret`, in a time that says nothing of either: every
# byte of the secret is compared whatever the lengths (no early exit), and
# the lengths too.
same_secret <- function(given, secret) {
  a <- as.integer(charToRaw(given))
  b <- as.integer(charToRaw(secret))
  sum(bitwXor(c(a, integer(length(b)))[seq_along(b)], b), length(a) != length(b)) == 0
}

# The values of the query parameter `name`, and of the cookie `name`.
query_values <- function(query, name) {
  parts <- strsplit(sub("^\\?", "", query %||% ""), "&", fixed = TRUE)[[1]]
  vals <- sub("^[^=]*=?", "", parts[sub("=.*", "", parts) == name])
  vapply(vals, httpuv::decodeURIComponent, "", USE.NAMES = FALSE)
}
cookie_values <- function(header, name) {
  parts <- trimws(strsplit(header %||% "", ";", fixed = TRUE)[[1]])
  sub("^[^=]*=", "", parts[sub("=.*", "", parts) == name])
}

# Whether a request carries the token (query, Bearer, X-Redq-Token) or the
# session cookie.
authenticated <- function(board, req) {
  auth <- req$HTTP_AUTHORIZATION %||% ""
  given <- c(query_values(req$QUERY_STRING, "token"), req$HTTP_X_REDQ_TOKEN,
             if (grepl("^Bearer ", auth, ignore.case = TRUE)) trimws(substring(auth, 8)))
  any(vapply(given, same_secret, TRUE, board$token)) ||
    any(vapply(cookie_values(req$HTTP_COOKIE, board$cookie), same_secret, TRUE, board$session))
}

# One HTTP request.
dashboard_call <- function(board, req) {
  path <- req$PATH_INFO
  method <- req$REQUEST_METHOD
  headers <- function(...) {
    # no Referer with the token's URL in it, no framing (clickjacking)
    list(`Cache-Control` = "no-store", `X-Content-Type-Options` = "nosniff",
         `Referrer-Policy` = "no-referrer", `X-Frame-Options` = "DENY",
         `Content-Security-Policy` = "frame-ancestors 'none'", ...)
  }
  reply <- function(body, type = "application/json", status = 200L, ...) {
    list(status = status, headers = headers(`Content-Type` = type, ...), body = body)
  }
  json <- function(x, status = 200L, ...) {
    reply(as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null",
                                        digits = NA)), status = status, ...)
  }
  tryCatch({
    if (!host_ok(board, req$HTTP_HOST)) {
      json(list(error = "forbidden: this Host is not the dashboard's"), 403L)
    } else if (method == "GET" && path == "/health") {
      reply("ok\n", "text/plain; charset=utf-8")
    } else if (!authenticated(board, req)) {
      json(list(error = "unauthorized: open the URL with the token that redq_dashboard() printed"),
           401L, `WWW-Authenticate` = 'Bearer realm="redq dashboard"')
    } else if (method == "GET" && path %in% c("/", "/index.html")) {
      given <- query_values(req$QUERY_STRING, "token")
      if (length(given)) {
        # the token leaves the address bar (and the history): the cookie
        # carries the session from now on
        cookie <- if (any(vapply(given, same_secret, TRUE, board$token))) {
          list(`Set-Cookie` = sprintf("%s=%s; Path=/; HttpOnly; SameSite=Strict", board$cookie,
                                      board$session))
        }
        list(status = 303L, headers = do.call(headers, c(list(Location = "/"), cookie)), body = "")
      } else {
        reply(dashboard_page(board), "text/html; charset=utf-8")
      }
    } else if (method == "GET" && path == "/api/state") {
      json(dashboard_state(board))
    } else if (method == "GET" && path == "/metrics") {
      reply(redq_metrics(board$ctl), "text/plain; version=0.0.4; charset=utf-8")
    } else if (method == "POST" && startsWith(path, "/api/")) {
      origin <- tolower(req$HTTP_ORIGIN %||% paste0("http://", req$HTTP_HOST))
      if (!identical(req$HTTP_X_REQUESTED_WITH, "redq")) {
        json(list(error = "forbidden: actions need the header X-Requested-With: redq"), 403L)
      } else if (!identical(origin, paste0("http://", tolower(req$HTTP_HOST)))) {
        json(list(error = "forbidden: another site's page cannot act here"), 403L)
      } else {
        body <- rawToChar(req$rook.input$read())
        args <- if (nzchar(body)) jsonlite::fromJSON(body) else list()
        json(dashboard_action(board, sub("^/api/", "", path), args))
      }
    } else {
      json(list(error = "not found"), 404L)
    }
  }, error = function(e) json(list(error = conditionMessage(e)), 500L))
}
# What the page's buttons do.
dashboard_action <- function(board, what, args) {
  ctl <- board$ctl
  id <- as.character(args$id %||% character())
  switch(what,
         cancel = list(done = unname(task_cancel(check_ids(id), controller = ctl))),
         retry = {
           ids <- if (length(id)) id else failed_ids(board)
           list(done = if (length(ids)) unname(task_retry(ids, controller = ctl)) else character())
         },
         stop = list(done = worker_stop(check_ids(id), wait = 0, controller = ctl)),
         redq_abort("argument", sprintf("no action '%s'", what)))
}

# The ids of the failures listed now that task_retry() can retry (task API
# tasks; a foreach job's tasks belong to their loop).
failed_ids <- function(board) {
  f <- namespace_snapshot(board$ctl, 0, 50)$failures
  vapply(f, function(x) x$id, "")[vapply(f, function(x) isTRUE(x$retryable), TRUE)]
}

# The page, with the first state in it, so that it shows everything as
# soon as it loads; it then asks /api/state every `interval` seconds.
dashboard_page <- function(board) {
  page <- paste(readLines(system.file("dashboard", "index.html", package = "redq", mustWork = TRUE),
                          warn = FALSE), collapse = "\n")
  state <- jsonlite::toJSON(dashboard_state(board), auto_unbox = TRUE, null = "null", na = "null",
                            digits = NA)
  # "</" must not end the script element the state sits in
  state <- gsub("</", "<\\/", state, fixed = TRUE)
  page <- sub("{{STATE}}", state, page, fixed = TRUE)
  sub("{{INTERVAL}}", format(board$interval * 1000), page, fixed = TRUE)
}

# The snapshot as named R values. Times are seconds since the epoch.
namespace_snapshot <- function(ctl, recent = 0, failures = 0) {
  s <- rs_check(rs_controller_snapshot(ctl$ptr, recent, failures))
  num <- function(x) suppressWarnings(as.numeric(x))
  pairs <- function(flat) {
    flat <- unlist(flat)
    if (!length(flat)) return(list())
    stats::setNames(as.list(flat[c(FALSE, TRUE)]), flat[c(TRUE, FALSE)])
  }
  now <- num(s[[1]]) / 1000
  queues <- lapply(s[[2]], function(q) list(name = q[[1]], length = q[[2]]))
  workers <- lapply(s[[3]], function(w) {
    rec <- pairs(w[[2]])
    beat <- num(w[[3]]) / 1000
    list(id = w[[1]], status = rec$status %||% "", host = rec$host %||% "",
         pid = num(rec$pid), task = rec$task %||% "", queues = rec$queues %||% "",
         heartbeat_age = if (is.na(beat)) NA else max(0, now - beat),
         done = num(rec$done %||% 0), holding = w[[4]],
         registered = num(rec$registered) / 1000)
  })
  counts <- pairs(s[[4]])
  words <- rs_task_terminal_words()
  ended <- vapply(words, function(w) num(counts[[w]] %||% 0), 1)
  failures <- lapply(s[[5]], function(f) {
    list(id = f[[1]], status = f[[2]], queue = f[[3]], worker = f[[4]],
         finished = num(f[[5]]) / 1000, message = failure_message(f[[6]]), log = f[[7]],
         retryable = identical(f[[8]], 1))
  })
  tasks <- lapply(s[[6]], function(t) {
    list(id = t[[1]], status = t[[2]], queue = t[[3]], worker = t[[4]],
         created = num(t[[5]]) / 1000, started = num(t[[6]]) / 1000, finished = num(t[[7]]) / 1000,
         attempts = attempt_lines(t[[8]]))
  })
  lost <- lapply(s[[7]], function(e) {
    f <- pairs(e[[2]])
    list(worker = f$worker %||% "", host = f$host %||% "", requeued = num(f$requeued %||% 0),
         died = num(f$died %||% 0), time = num(sub("-.*", "", e[[1]])) / 1000)
  })
  list(now = now, queues = queues, workers = workers, ended = as.list(ended),
       seconds = num(counts$ms %||% 0) / 1000, timed = num(counts$timed %||% 0),
       failures = failures, tasks = tasks, lost = lost)
}

# A task's earlier attempts (lines "worker|started|ended|outcome", times in
# ms) as a list of list(worker, started, ended, outcome), in seconds.
attempt_lines <- function(history) {
  lines <- strsplit(history %||% "", "\n")[[1]]
  lapply(strsplit(lines[nzchar(lines)], "|", fixed = TRUE), function(p) {
    p <- c(p, "", "", "", "")[1:4]
    list(worker = p[[1]], started = as.numeric(p[[2]]) / 1000, ended = as.numeric(p[[3]]) / 1000,
         outcome = p[[4]])
  })
}

# The message of a failed task's result (a redq_task_error), or a word on
# why there is none.
failure_message <- function(raw) {
  if (!is.raw(raw) || !length(raw)) return("no result: its workers died or it never ran")
  value <- tryCatch(unserialize(raw), error = function(e) NULL)
  if (inherits(value, "condition")) conditionMessage(value) else "(no message)"
}

# The page's data: the snapshot, with the throughput over the last
# minutes from the totals this dashboard has seen.
dashboard_state <- function(board) {
  ctl <- board$ctl
  s <- namespace_snapshot(ctl, board$recent, 50)
  total <- sum(unlist(s$ended))
  h <- rbind(board$history, data.frame(time = s$now, done = total))
  h <- h[h$time >= s$now - 600, , drop = FALSE]
  board$history <- h
  per_minute <- function(span) {
    old <- h[h$time >= s$now - span, , drop = FALSE]
    dt <- s$now - old$time[[1]]
    if (dt < 5) NA else (total - old$done[[1]]) / dt
  }
  # the rate in each of the last 60 ten-second bins, for the sparkline
  bins <- seq(s$now - 600, s$now, by = 10)
  rate <- numeric()
  if (s$now - h$time[[1]] >= 20) {
    at <- stats::approx(h$time, h$done, xout = bins, rule = 2, ties = "ordered")$y
    rate <- pmax(0, diff(at) / 10)
    rate[bins[-1] < h$time[[1]]] <- NA
  }
  s$namespace <- ctl$namespace
  s$server <- ctl$address
  s$pending <- sum(vapply(s$queues, function(q) q$length, 1))
  s$running <- sum(vapply(s$workers, function(w) w$holding, 1))
  s$rate <- list(last_minute = per_minute(60), bins = rate)
  s
}

#' Prometheus metrics of a namespace
#'
#' The namespace's state in Prometheus' text exposition format, as the
#' dashboard serves it on `/metrics`: queue lengths, tasks running, task
#' totals by final status (counters since the namespace began), live
#' workers by status, and the time tasks took (a summary: the sum of their
#' durations and their count). One read-only script on the server. Workers
#' report the time their tasks took, and how many they ran, with their
#' heartbeats, so those figures trail by up to a heartbeat period.
#'
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A single string.
#' @export
#' @examples
#' if (redq_available()) cat(redq_metrics())
redq_metrics <- function(controller = NULL) {
  ctl <- get_controller(controller)
  s <- namespace_snapshot(ctl)
  esc <- function(x) gsub("([\"\\\\])", "\\\\\\1", gsub("\n", "\\\\n", x))
  ns <- sprintf("namespace=\"%s\"", esc(ctl$namespace))
  metric <- function(name, type, help, labels, values) {
    lines <- if (length(values)) {
      sprintf("%s{%s} %s", name, labels, format(values, scientific = FALSE, trim = TRUE))
    }
    c(sprintf("# HELP %s %s", name, help), sprintf("# TYPE %s %s", name, type), lines)
  }
  qn <- vapply(s$queues, function(q) q$name, "")
  ql <- vapply(s$queues, function(q) q$length, 1)
  ws <- vapply(s$workers, function(w) w$status, "")
  wtab <- table(ws)
  out <- c(
    metric("redq_queue_length", "gauge", "Tasks waiting in each queue.",
           sprintf("%s,queue=\"%s\"", ns, esc(qn)), ql),
    metric("redq_tasks_running", "gauge", "Tasks held by live workers.", ns,
           sum(vapply(s$workers, function(w) w$holding, 1))),
    metric("redq_tasks_total", "counter", "Tasks that ended, by status.",
           sprintf("%s,status=\"%s\"", ns, names(s$ended)), unlist(s$ended)),
    metric("redq_workers", "gauge", "Live workers, by status.",
           sprintf("%s,status=\"%s\"", ns, esc(names(wtab))), as.numeric(wtab)),
    metric("redq_worker_tasks_done", "counter", "Tasks each live worker ran.",
           sprintf("%s,worker=\"%s\"", ns, esc(vapply(s$workers, function(w) w$id, ""))),
           vapply(s$workers, function(w) w$done, 1)),
    metric("redq_task_duration_seconds", "summary", "Time workers spent on tasks.",
           ns, numeric()),
    sprintf("redq_task_duration_seconds_sum{%s} %s", ns, format(s$seconds, scientific = FALSE)),
    sprintf("redq_task_duration_seconds_count{%s} %s", ns, format(s$timed, scientific = FALSE)))
  paste0(paste(out, collapse = "\n"), "\n")
}
