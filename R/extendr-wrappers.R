# .Call wrappers for src/rust/src/bindings/*.rs, one per #[extendr]
# function. Internal: never exported, each called only from the R file
# of its noun. Keep in step with the bindings' arguments.
#' @useDynLib redq, .registration = TRUE
NULL

rs_controller_open <- function(url, namespace) .Call("wrap__rs_controller_open", url, namespace, PACKAGE = "redq")

rs_controller_address <- function(x) .Call("wrap__rs_controller_address", x, PACKAGE = "redq")

rs_controller_close <- function(x) .Call("wrap__rs_controller_close", x, PACKAGE = "redq")

rs_controller_reap <- function(x) .Call("wrap__rs_controller_reap", x, PACKAGE = "redq")

rs_controller_events_tail <- function(x) .Call("wrap__rs_controller_events_tail", x, PACKAGE = "redq")

rs_controller_lost_since <- function(x, since) .Call("wrap__rs_controller_lost_since", x, since, PACKAGE = "redq")

rs_controller_command <- function(x, args) .Call("wrap__rs_controller_command", x, args, PACKAGE = "redq")

rs_controller_data_set <- function(x, key, value) .Call("wrap__rs_controller_data_set", x, key, value, PACKAGE = "redq")

rs_controller_data_get <- function(x, key) .Call("wrap__rs_controller_data_get", x, key, PACKAGE = "redq")

rs_controller_data_delete <- function(x, key) .Call("wrap__rs_controller_data_delete", x, key, PACKAGE = "redq")

rs_job_put_env <- function(x, job_id, env, about) .Call("wrap__rs_job_put_env", x, job_id, env, about, PACKAGE = "redq")

rs_job_list <- function(x) .Call("wrap__rs_job_list", x, PACKAGE = "redq")

rs_job_cancel <- function(x, job_id, queue) .Call("wrap__rs_job_cancel", x, job_id, queue, PACKAGE = "redq")

rs_job_submit <- function(x, job_id, queue, ids, payloads, timeout, max_attempts) .Call("wrap__rs_job_submit", x, job_id, queue, ids, payloads, timeout, max_attempts, PACKAGE = "redq")

rs_job_collect <- function(x, job_id, wait) .Call("wrap__rs_job_collect", x, job_id, wait, PACKAGE = "redq")

rs_job_missing <- function(x, job_id, ids) .Call("wrap__rs_job_missing", x, job_id, ids, PACKAGE = "redq")

rs_job_remove <- function(x, job_id, ids) .Call("wrap__rs_job_remove", x, job_id, ids, PACKAGE = "redq")

rs_task_submit <- function(x, queue, payloads, timeout, max_attempts, depends_on) .Call("wrap__rs_task_submit", x, queue, payloads, timeout, max_attempts, depends_on, PACKAGE = "redq")

rs_task_status <- function(x, ids) .Call("wrap__rs_task_status", x, ids, PACKAGE = "redq")

rs_task_results <- function(x, ids) .Call("wrap__rs_task_results", x, ids, PACKAGE = "redq")

rs_task_wait <- function(x, ids, timeout, reap_every, progress) .Call("wrap__rs_task_wait", x, ids, timeout, reap_every, progress, PACKAGE = "redq")

rs_task_info <- function(x, id) .Call("wrap__rs_task_info", x, id, PACKAGE = "redq")

rs_task_list <- function(x) .Call("wrap__rs_task_list", x, PACKAGE = "redq")

rs_task_cancel <- function(x, ids) .Call("wrap__rs_task_cancel", x, ids, PACKAGE = "redq")

rs_task_delete <- function(x, ids) .Call("wrap__rs_task_delete", x, ids, PACKAGE = "redq")

rs_task_retry <- function(x, ids) .Call("wrap__rs_task_retry", x, ids, PACKAGE = "redq")

rs_queue_length <- function(x, queue) .Call("wrap__rs_queue_length", x, queue, PACKAGE = "redq")

rs_queue_list <- function(x) .Call("wrap__rs_queue_list", x, PACKAGE = "redq")

rs_queue_remove <- function(x, queue) .Call("wrap__rs_queue_remove", x, queue, PACKAGE = "redq")

rs_worker_start <- function(url, namespace, queues, name, heartbeat, lease, grace, max_batch, info) .Call("wrap__rs_worker_start", url, namespace, queues, name, heartbeat, lease, grace, max_batch, info, PACKAGE = "redq")

rs_worker_id <- function(x) .Call("wrap__rs_worker_id", x, PACKAGE = "redq")

rs_worker_step <- function(x, done_id, done_status, done_result, claim, wait) .Call("wrap__rs_worker_step", x, done_id, done_status, done_result, claim, wait, PACKAGE = "redq")

rs_worker_interrupt_reason <- function(x) .Call("wrap__rs_worker_interrupt_reason", x, PACKAGE = "redq")

rs_worker_signals <- function(x) .Call("wrap__rs_worker_signals", x, PACKAGE = "redq")

rs_worker_stop_requested <- function(x) .Call("wrap__rs_worker_stop_requested", x, PACKAGE = "redq")

rs_worker_job_env <- function(x, job) .Call("wrap__rs_worker_job_env", x, job, PACKAGE = "redq")

rs_worker_exit <- function(x, how) .Call("wrap__rs_worker_exit", x, how, PACKAGE = "redq")

rs_worker_list <- function(x) .Call("wrap__rs_worker_list", x, PACKAGE = "redq")

rs_worker_info <- function(x, ids) .Call("wrap__rs_worker_info", x, ids, PACKAGE = "redq")

rs_worker_signal <- function(x, ids, message) .Call("wrap__rs_worker_signal", x, ids, message, PACKAGE = "redq")
