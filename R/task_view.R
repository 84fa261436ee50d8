# Looking at tasks: where they are, when they ran (and a timeline plot),
# what they reported and printed, what they depend on.

#' Questions about tasks
#'
#' As in rrq: `task_exists()` tells whether the server knows each task;
#' `task_position()` gives each task's place in its queue (1: next; 0 when
#' it is not waiting in a queue); `task_times()` the times each was
#' created, started and finished; `task_overview()` counts the tasks of
#' the task list by status.
#'
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_exists()`: logical. `task_position()`: integer.
#'   `task_times()`: a data frame (`id`, `queue`, `worker`, `attempt`,
#'   `created`, `started`, `finished`, `status`) that [plot()] draws as a
#'   timeline ([plot.redq_task_times()]). `task_overview()`: a named integer
#'   vector.
#' @export
#' @examples
#' if (redq_available()) {
#'   ids <- task_create_bulk_call(sqrt, list(1, 4, 9), queue = "later")
#'   task_exists(c(ids, "nope"))
#'   task_position(ids)
#'   task_overview()
#'   task_delete(ids)
#' }
task_exists <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  if (!length(ids)) return(logical(0))
  rs_check(rs_task_results(ctl$ptr, ids))$exists
}

#' @rdname task_exists
#' @export
task_position <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  out <- integer(length(ids))
  for (q in unique(vapply(ids, function(id) task_info_safe(id, ctl)$queue %||% "", ""))) {
    if (!nzchar(q)) next
    waiting <- rs_check(rs_queue_tasks(ctl$ptr, q))
    at <- match(ids, waiting)
    out[!is.na(at)] <- at[!is.na(at)]
  }
  stats::setNames(out, ids)
}

#' @rdname task_exists
#' @export
task_times <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  info <- lapply(ids, task_info_safe, ctl = ctl)
  time <- function(f) do.call(c, lapply(info, function(i) i[[f]] %||% as.POSIXct(NA)))
  text <- function(f) vapply(info, function(i) as.character(i[[f]] %||% NA), "")
  out <- data.frame(id = ids, queue = text("queue"), worker = text("worker"),
                    attempt = suppressWarnings(as.integer(text("attempt"))),
                    created = time("created"), started = time("started"),
                    finished = time("finished"), status = text("status"))
  # earlier attempts (a lost worker's, a timed-out one's), for plot()
  earlier <- do.call(rbind, lapply(seq_along(ids), function(k) {
    a <- info[[k]]$attempts
    # the last ended attempt of a finished task is the one that ended it
    if (!is.null(a) && nrow(a) && !is.na(out$finished[[k]])) a <- a[-nrow(a), , drop = FALSE]
    if (is.null(a) || !nrow(a)) return(NULL)
    data.frame(id = ids[[k]], worker = a$worker, started = a$started, ended = a$ended,
               outcome = a$outcome)
  }))
  structure(out, class = c("redq_task_times", "data.frame"), attempts = earlier)
}

#' Plot a timeline of tasks
#'
#' One row per worker, one bar per attempt from its start to its end,
#' coloured by how it ended; attempts that did not end their task (the
#' worker was lost, the attempt timed out and was retried) are drawn
#' hatched and marked with a cross, and their task's next attempt is
#' joined to them by a dotted line. Use any graphics device
#' ([grDevices::png()], [grDevices::pdf()]) to save it.
#'
#' @param x A [task_times()] data frame.
#' @param main Title.
#' @param ... Ignored.
#' @return Invisibly, `x`.
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(2)
#'   ids <- task_create_bulk_call(function(s) Sys.sleep(s), as.list(runif(8, 0, 0.2)))
#'   task_wait(ids)
#'   plot(task_times(ids))
#'   worker_stop(w)
#' }
plot.redq_task_times <- function(x, main = "redq tasks", ...) {
  a <- attr(x, "attempts")
  done <- x[!is.na(x$started), , drop = FALSE]
  end <- done$finished
  end[is.na(end)] <- Sys.time()
  bars <- data.frame(id = done$id, worker = done$worker, started = done$started, ended = end,
                     outcome = done$status, final = TRUE)
  if (!is.null(a) && nrow(a)) {
    a$ended[is.na(a$ended)] <- a$started[is.na(a$ended)]
    bars <- rbind(bars, data.frame(id = a$id, worker = a$worker, started = a$started,
                                   ended = a$ended, outcome = a$outcome, final = FALSE))
  }
  if (!nrow(bars)) {
    graphics::plot.new()
    graphics::title(main = paste(main, "(no task has started)"))
    return(invisible(x))
  }
  workers <- sort(unique(bars$worker))
  outcomes <- sort(unique(bars$outcome))
  cols <- stats::setNames(grDevices::hcl.colors(max(3, length(outcomes)), "Dark 3")[seq_along(outcomes)],
                          outcomes)
  t0 <- min(bars$started)
  s <- as.numeric(bars$started - t0, units = "secs")
  e <- pmax(as.numeric(bars$ended - t0, units = "secs"), s + 1e-3)
  y <- match(bars$worker, workers)
  old <- graphics::par(mar = c(4, max(8, max(nchar(workers)) * 0.55), 3, 1))
  on.exit(graphics::par(old))
  graphics::plot(NA, xlim = c(0, max(e)), ylim = c(0.5, length(workers) + 0.5), yaxt = "n",
                 xlab = "seconds since the first start", ylab = "", main = main)
  graphics::axis(2, at = seq_along(workers), labels = workers, las = 1, cex.axis = 0.7)
  graphics::rect(s, y - 0.35, e, y + 0.35, col = cols[bars$outcome], border = "grey30",
                 density = ifelse(bars$final, NA, 25))
  lost <- !bars$final
  if (any(lost)) {
    graphics::points(e[lost], y[lost], pch = 4, cex = 1.6, lwd = 2)
    for (i in which(lost)) {
      j <- which(bars$final & bars$id == bars$id[[i]])
      if (length(j)) graphics::segments(e[i], y[i], s[j], y[j], lty = 3)
    }
  }
  graphics::legend("topright", legend = outcomes, fill = cols, cex = 0.7, bg = "white")
  invisible(x)
}

#' @rdname task_exists
#' @export
task_overview <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- rs_check(rs_task_list(ctl$ptr))
  words <- rs_task_status_words()
  st <- if (length(ids)) rs_check(rs_task_status(ctl$ptr, ids)) else character()
  stats::setNames(vapply(words, function(w) sum(st == w), 1L), words)
}

task_info_safe <- function(id, ctl) {
  tryCatch(task_info(id, controller = ctl), redq_error_not_found = function(e) list())
}

#' Progress reported from inside a task
#'
#' `task_progress_update(value)`, called by a task's code on a worker,
#' records `value` (any small R object: a fraction, a message) as the
#' task's progress; `task_progress(ids)` reads it from any session while
#' the task runs and after. Outside a worker `task_progress_update()` does
#' nothing.
#'
#' @param value Any small R value.
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_progress_update()`: invisibly, whether it was recorded.
#'   `task_progress()`: a list named by id (`NULL` where none).
#' @export
#' @examples
#' if (redq_available()) {
#'   w <- worker_spawn(1)
#'   id <- task_create_expr({
#'     task_progress_update(0.5)
#'     Sys.sleep(1)
#'   })
#'   Sys.sleep(0.5)
#'   task_progress(id)
#'   task_wait(id)
#'   worker_stop(w)
#' }
task_progress_update <- function(value) {
  invisible(wf_progress(value))
}

#' @rdname task_progress_update
#' @export
task_progress <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  raw <- if (length(ids)) rs_check(rs_task_progress(ctl$ptr, ids)) else list()
  stats::setNames(lapply(raw, function(r) if (is.null(r)) NULL else unserialize(r)), ids)
}

#' What a task printed
#'
#' Workers started with `task_log = TRUE` ([worker_spawn()],
#' [worker_main()], the launcher's `--task-log`) keep what each task prints
#' (output, messages, warnings; the last 64 KB) in Redis; `task_log()`
#' reads it from any session, whichever machine ran the task.
#'
#' @param ids Task ids.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return A character vector named by id: the text, or `NA` where none
#'   was kept.
#' @export
task_log <- function(ids, controller = NULL) {
  ids <- check_ids(ids)
  ctl <- get_controller(controller)
  if (!length(ids)) return(character())
  stats::setNames(rs_check(rs_task_logs(ctl$ptr, ids)), ids)
}

#' What a task was given; what waits before it
#'
#' As in rrq: `task_data()` returns what a task was created with (its
#' expression and captured variables, or its function and arguments), as
#' long as it is kept (until it completes, or for a task that ended
#' otherwise until it is deleted). `task_preceeding()` gives the ids queued
#' before a task, next first. `deferred_list()` lists the tasks waiting for
#' others (`DEFERRED`) with the ids each still waits for.
#'
#' @param id A task id.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `task_data()`: a list (`expr` and `vars`, or `fn` and `args`), or
#'   `NULL` once its payload is gone. `task_preceeding()`: ids.
#'   `deferred_list()`: a named list of the ids each deferred task depends
#'   on.
#' @export
task_data <- function(id, controller = NULL) {
  check_string(id, "id")
  ctl <- get_controller(controller)
  raw <- task_records(ctl, id)$payload[[1]]
  if (is.null(raw)) return(NULL)
  p <- unserialize(raw)
  p[setdiff(names(p), c("type", "seed"))]
}

#' @rdname task_data
#' @export
task_preceeding <- function(id, controller = NULL) {
  check_string(id, "id")
  ctl <- get_controller(controller)
  q <- task_info_safe(id, ctl)$queue
  if (is.null(q)) return(character())
  waiting <- rs_check(rs_queue_tasks(ctl$ptr, q))
  at <- match(id, waiting)
  if (is.na(at)) character() else waiting[seq_len(at - 1L)]
}

#' @rdname task_data
#' @export
deferred_list <- function(controller = NULL) {
  ctl <- get_controller(controller)
  ids <- rs_check(rs_task_list(ctl$ptr))
  if (!length(ids)) return(list())
  # the task list's first status word is DEFERRED (see rs_task_status_words)
  deferred <- ids[rs_check(rs_task_status(ctl$ptr, ids)) == rs_task_status_words()[[1]]]
  stats::setNames(lapply(deferred, function(id) task_info(id, controller = ctl)$depends_on), deferred)
}
