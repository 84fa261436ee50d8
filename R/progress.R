# Progress bars of waits (task_wait(), foreach's setProgress(), futures), drawn
# with cli.

# A cli progress bar as a function(done, total), with throughput and ETA;
# bar(NULL) closes it. Drawn once the wait has lasted
# `cli.progress_show_after` seconds (2 by default, as cli's own bars), then
# at most five times a second, and at the end.
progress_bar <- function(what = "tasks") {
  frame <- environment()
  id <- NULL
  born <- Sys.time()
  drawn <- NULL
  function(done, total) {
    if (is.null(done)) {
      if (!is.null(id)) cli::cli_progress_done(id = id, .envir = frame)
      return(invisible())
    }
    now <- Sys.time()
    if (is.null(id)) {
      id <<- cli::cli_progress_bar(
        what, total = max(1, total), clear = FALSE, .envir = frame,
        format = paste("{cli::pb_name} {cli::pb_bar} {cli::pb_current}/{cli::pb_total}",
                       "| {cli::pb_rate} | ETA {cli::pb_eta}"))
    }
    due <- as.numeric(now - born, units = "secs") >= getOption("cli.progress_show_after", 2) &&
      (is.null(drawn) || done >= total || as.numeric(now - drawn, units = "secs") >= 0.2)
    if (due) drawn <<- now
    cli::cli_progress_update(id = id, set = done, total = max(1, total), force = due,
                             .envir = frame)
  }
}

