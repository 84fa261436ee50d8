# rush's task tables, built from the tasks' records (state, worker,
# payload, result) and the fields write_hashes() stored; and the checks
# of what rush's methods take.

RUSH_START <- "rush:start_args"
RUSH_ON_IDLE <- "rush:terminate_on_idle"
RUSH_WRITTEN <- "rush:written"
RUSH_FIELDS <- "rush:fields:"

# A network id shaped like rush's (a UUID), from the system's generator:
# drawing it with sample() would change the session's random numbers.
rush_new_id <- function() {
  h <- secure_token(16)
  paste(substring(h, c(1, 9, 13, 17, 21), c(8, 12, 16, 20, 32)), collapse = "-")
}

# A task's fields from its record: xs and xs_extra from the payload (or,
# once it completed, from the result, which repeats them), ys, ys_extra
# and the worker's pid from the result, the worker's id from the record,
# and for failed tasks a condition whose message says why.
rush_rows <- function(ctl, keys) {
  if (!length(keys)) return(list())
  rec <- task_records(ctl, keys)
  written <- rush_written(ctl, keys)
  rows <- lapply(seq_along(keys), function(i) {
    res <- if (!is.null(rec$result[[i]])) unserialize(rec$result[[i]])
    pay <- if (!is.null(rec$payload[[i]])) unserialize(rec$payload[[i]])
    src <- if (is.list(res) && !inherits(res, "condition")) res else pay
    row <- list(xs = src$xs, xs_extra = src$xs_extra, seed = pay$seed %||% src$seed,
                state = rec$state[[i]])
    if (nzchar(rec$worker[[i]])) {
      pid <- if (is.list(src)) src$pid
      row$worker_extra <- if (is.null(pid)) list(worker_id = rec$worker[[i]]) else
        list(pid = pid, worker_id = rec$worker[[i]])
    }
    if (identical(rec$state[[i]], "finished")) {
      row$ys <- res$ys
      row$ys_extra <- res$ys_extra
    } else if (identical(rec$state[[i]], "failed")) {
      msg <- if (inherits(res, "condition")) conditionMessage(res) else task_failure(keys[[i]], ctl)
      row$condition <- list(message = msg)
    }
    row
  })
  # fields written with write_hashes()
  for (i in which(!vapply(written, is.null, TRUE))) {
    extra <- unserialize(written[[i]])
    rows[[i]][names(extra)] <- extra
  }
  rows
}

# Fields write_hashes() stored for `keys` (a list of raw vectors or NULLs);
# one round trip to learn that there are none.
rush_written <- function(ctl, keys) {
  if (is.null(data_get(ctl, RUSH_WRITTEN))) {
    return(vector("list", length(keys)))
  }
  data_mget(ctl, paste0(RUSH_FIELDS, keys))
}

# One table row of `fields` from a task's fields, as rush flattens them:
# the elements of each field in turn (longer values as list columns).
rush_flatten <- function(row, fields) {
  out <- list()
  for (f in fields) {
    v <- row[[f]]
    if (is.null(v)) next
    if (!is.list(v)) v <- stats::setNames(list(v), f)
    for (n in names(v)) {
      x <- v[[n]]
      out[[n]] <- if (is.atomic(x) && length(x) == 1L) x else list(x)
    }
  }
  out
}

rush_table <- function(rows, keys, fields, data_format = "data.table") {
  if (identical(data_format, "list")) {
    if (!length(keys)) return(list())
    return(stats::setNames(lapply(rows, function(r) r[intersect(fields, names(r))]), keys))
  }
  rush_need_datatable()
  if (!length(keys)) return(data.table::data.table())
  flat <- lapply(rows, rush_flatten, fields = fields)
  tab <- data.table::rbindlist(flat, use.names = TRUE, fill = TRUE)
  if (nrow(tab) == 0L) return(data.table::data.table(keys = keys))
  data.table::set(tab, j = "keys", value = keys)
  tab
}

rush_need_datatable <- function() {
  if (!requireNamespace("data.table", quietly = TRUE)) {
    redq_abort("dependency", paste("the rush interface returns data.tables: install data.table",
                                   "(Debian: apt install r-cran-data.table)"))
  }
}

RUSH_STATES <- c("queued", "running", "finished", "failed")

rush_check_xss <- function(xss, extra) {
  if (!is.list(xss) || !all(vapply(xss, is.list, TRUE))) {
    redq_abort("argument", "'xss' must be a list of lists, one per task, e.g. list(list(x1 = 1, x2 = 2))")
  }
  if (!is.null(extra) && (!is.list(extra) || length(extra) != length(xss))) {
    redq_abort("argument", "'extra' must be a list of lists, one per task")
  }
}

rush_check_states <- function(states) {
  bad <- setdiff(states, RUSH_STATES)
  if (length(bad)) {
    redq_abort("argument", sprintf("unknown state(s) %s; use queued, running, finished or failed",
                                   paste(bad, collapse = ", ")))
  }
  states
}
