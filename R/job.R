# The job engine's R face. Every front end submits, waits and collects
# through these functions; the loop that waits, reaps, reports lost
# workers and resubmits what the server lost runs in Rust
# (src/rust/src/engine/).

# A new job on controller `ctl`. fetch: results come with each ended task;
# consume: the job deletes its tasks once received; relay: waits also
# return the messages running tasks relay (`relayed`: list(id, message));
# check_every: seconds between looks for tasks the server lost; register:
# its tasks are listed by task_list(), so that other sessions find them;
# no_workers: seconds after which a wait whose tasks wait in queues no live
# worker serves fails with redq_error_no_workers (Inf: never; it warns
# after a lease period whatever this is).
job_open <- function(ctl, fetch = TRUE, consume = TRUE, relay = FALSE, check_every = 30,
                     register = FALSE, no_workers = Inf) {
  ptr <- rs_check(rs_job_open(ctl$ptr, fetch, consume, relay, register, reap_interval(),
                              check_every, reconnect_patience(), starve(no_workers)))
  job <- new.env(parent = emptyenv())
  job$ptr <- ptr
  job$ctl <- ctl
  job$id <- rs_job_id(ptr)
  job
}

reap_interval <- function() redq_option("reap_interval")

# What a task wait reads of the options, at once (it is on the one-task
# path): the reap interval, the reconnect patience, and the lease after
# which tasks waiting in a queue with no worker are reported.
wait_options <- function() {
  d <- redq_defaults()
  c(getOption("redq.reap_interval", d$reap_interval),
    getOption("redq.reconnect_patience", d$reconnect_patience),
    getOption("redq.lease", d$lease))
}

reconnect_patience <- function() redq_option("reconnect_patience")

# When a wait tells its caller that none of its queues has a live worker
# (a lease period: workers that just started have registered by then),
# and when it fails (`error` seconds; Inf: never).
starve <- function(error = Inf) c(redq_option("lease"), error)

# Upload the job's environment (workers fetch it once per job); the job is
# listed by jobs() on `queue`. An environment over option
# redq.shared_threshold bytes is stored as a shared object, by the hash of
# its content: loops that export the same data store it once, and each
# worker fetches it once while it stays in the worker's cache.
job_env <- function(job, env, queue) {
  shared <- length(env) > redq_option("shared_threshold")
  rs_check(rs_job_env(job$ctl$ptr, job$ptr, env, queue, shared))
}

# Submit serialized payloads; returns their ids. tags: one number per
# payload, handed back with its result; seed: a .Random.seed of
# L'Ecuyer-CMRG, from which the task tagged i gets stream i - 1.
# record(ids): the caller's bookkeeping of the new ids, run with the
# submission under one suspension of interrupts, so that a Ctrl+C cannot
# land between them and leave queued tasks that no cleanup knows of.
job_submit <- function(job, queue, payloads, timeout = NULL, max_attempts = NULL, tags = NULL,
                       seed = NULL, record = NULL) {
  suspendInterrupts({
    ids <- rs_check(rs_job_submit(job$ctl$ptr, job$ptr, queue, payloads, timeout, max_attempts,
                                  tags, seed))
    if (!is.null(record)) record(ids)
    ids
  })
}

# Wait up to `timeout` seconds for `n` tasks (NA: any, 0: all) among `ids`
# (NULL: all of the job's). Warns once per worker found lost meanwhile,
# and when the tasks wait in queues that no live worker serves (the
# engine then returns early with only that notice, and the wait goes on
# here). Meanwhile the local workers this session started that die are
# declared lost at once and replaced (local_workers()). Returns the ended
# tasks as list(id, status, exists, done, completed, died, refused, result,
# message, tag) plus timed_out, relayed and outstanding. A job that relays
# returns early with messages of running tasks.
job_wait <- function(job, n = NA, ids = NULL, timeout = Inf, progress = NULL) {
  start <- unclass(Sys.time())
  left <- timeout
  repeat {
    r <- rs_job_wait(job$ctl$ptr, job$ptr, n, ids, left, progress, watched_workers(job$ctl))
    warn_lost(if (inherits(r, "redq_rs_error")) attr(r, "lost") else r$lost)
    r <- rs_check(r)
    for (m in r$notices) warning(m, call. = FALSE)
    if (!length(r$notices)) return(r)
    left <- time_left(timeout, start)
  }
}

# What is left of `timeout` seconds (a number, or NULL/Inf) of a wait
# that began at `start` (seconds since the epoch).
time_left <- function(timeout, start) {
  if (is.null(timeout) || !is.finite(timeout)) return(timeout)
  max(0, timeout - (unclass(Sys.time()) - start))
}

# The R value of ended task i of a wait's (or task_results()') reply: its
# result, or an error condition saying why it has none.
job_value <- function(r, i) {
  raw <- r$result[[i]]
  if (isTRUE(r$refused[[i]])) redq_abort("signature", r$message[[i]])
  if (is.null(raw)) {
    return(redq_task_error(r$message[[i]], status = r$status[[i]], id = r$id[[i]]))
  }
  unserialize(raw)
}

# Cancel the job's tasks (or those in ids); they are received CANCELLED.
job_cancel <- function(job, ids = NULL) {
  rs_check(rs_job_cancel(job$ctl$ptr, job$ptr, ids))
}

# Cancel what is left and delete every key of the job, in one script.
job_remove <- function(job) {
  rs_check(rs_job_remove(job$ctl$ptr, job$ptr))
}

# Running jobs of the namespace: list(id, queue, user, host, pid, started).
job_list <- function(ctl) rs_check(rs_job_list(ctl$ptr))

# Cancel a job from any session; returns how many tasks were cancelled.
job_cancel_remote <- function(ctl, jid) rs_check(rs_job_cancel_remote(ctl$ptr, jid))

# One warning per worker found lost (lost: list(id, host, requeued, died,
# message)).
warn_lost <- function(lost) {
  for (m in lost$message) warning(m, call. = FALSE)
}
