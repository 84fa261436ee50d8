# Errors. Misuse of the API and infrastructure failures are R conditions of
# class redq_error_<kind> (inheriting from redq_error); a task that fails is
# a value (redq_task_error), re-signalled only on request.

redq_abort <- function(kind, message, ..., call = sys.call(-1)) {
  cond <- structure(
    class = c(paste0("redq_error_", kind), "redq_error", "error", "condition"),
    list(message = message, call = call, ...))
  stop(cond)
}

# Turn the error value a binding returns into a classed condition. An
# interrupt was consumed by the Rust side's check (so that no Rust lock is
# held across R's longjmp): raise it again here, in R, where it is safe.
rs_check <- function(x, call = sys.call(-1)) {
  if (!inherits(x, "redq_rs_error")) {
    return(x)
  }
  if (identical(x$kind, "interrupt")) {
    tools::pskill(Sys.getpid(), tools::SIGINT)
    Sys.sleep(0.5)
  }
  redq_abort(x$kind, x$message, call = call)
}

# A binding's TRUE or FALSE as it is (the worker asks some per task: no
# further call), anything else through rs_check().
rs_flag <- function(x, call = sys.call(-1)) if (is.logical(x)) x else isTRUE(rs_check(x, call))

#' A failed task's condition
#'
#' When the R code of a task signals an error, the task ends with status
#' `ERROR` and its result is a `redq_task_error`: a condition that carries
#' the original message and call, the warnings signalled before it, and the
#' task's id and status. Tasks that end `TIMEOUT`, `CANCELLED` or `DIED`
#' have such a result too. `task_result(id, error = TRUE)` signals it.
#'
#' @param message Error message.
#' @param status Final task status (`NULL`: `ERROR`).
#' @param call The call that failed, if known.
#' @param warnings Warning messages signalled before the error.
#' @param id Task id.
#' @param trace The original condition, if any.
#' @return A condition of class `redq_task_error`.
#' @export
redq_task_error <- function(message, status = NULL, call = NULL, warnings = character(),
                            id = NA_character_, trace = NULL) {
  status <- status %||% rs_error_status()
  structure(
    class = c(paste0("redq_task_", tolower(status)), "redq_task_error", "error", "condition"),
    list(message = message, call = call, status = status, warnings = warnings,
         task_id = id, parent = trace))
}

#' @export
print.redq_task_error <- function(x, ...) {
  cat(sprintf("<redq_task_error: task %s ended %s>\n", x$task_id, x$status))
  cat("  ", conditionMessage(x), "\n", sep = "")
  if (!is.null(x$call)) {
    cat("  in: ", paste(deparse(x$call, nlines = 2L), collapse = " "), "\n", sep = "")
  }
  if (length(x$warnings)) {
    cat(sprintf("  %d warning(s): %s\n", length(x$warnings), paste(x$warnings, collapse = "; ")))
  }
  invisible(x)
}
