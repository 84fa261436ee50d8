#' Queues
#'
#' Tasks wait in named queues; a worker serves one or more queues in
#' priority order. `queue_length()` counts a queue's `PENDING` tasks,
#' `queue_tasks()` gives their ids, next first (rrq's `queue_list()`),
#' `queue_list()` names the queues that have received tasks, and
#' `queue_remove()` cancels a queue's pending tasks and forgets it.
#'
#' @param queue Queue name; `NULL` for the controller's default queue.
#' @param controller A [redq_controller()], or `NULL` for the default.
#' @return `queue_length()`: a number. `queue_tasks()`: ids.
#'   `queue_list()`: names.
#'   `queue_remove()`: invisibly, the number of tasks cancelled.
#' @export
#' @examples
#' if (redq_available()) {
#'   task_create_expr(1, queue = "later")
#'   queue_length("later")
#'   queue_list()
#'   queue_remove("later")
#' }
queue_length <- function(queue = NULL, controller = NULL) {
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  check_string(queue, "queue")
  rs_check(rs_queue_length(ctl$ptr, queue))
}

#' @rdname queue_length
#' @export
queue_list <- function(controller = NULL) {
  ctl <- get_controller(controller)
  rs_check(rs_queue_list(ctl$ptr))
}

#' @rdname queue_length
#' @export
queue_remove <- function(queue = NULL, controller = NULL) {
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  check_string(queue, "queue")
  invisible(rs_check(rs_queue_remove(ctl$ptr, queue)))
}

#' @rdname queue_length
#' @export
queue_tasks <- function(queue = NULL, controller = NULL) {
  ctl <- get_controller(controller)
  queue <- queue %||% ctl$queue
  check_string(queue, "queue")
  rs_check(rs_queue_tasks(ctl$ptr, queue))
}
