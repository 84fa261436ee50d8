# The worker face: what a worker-side front end (redq's worker loop, rush's
# worker loops, BiocParallel's per-element timeouts) does with the worker
# it runs in, as the job face (R/job.R) is what controller-side front ends
# do with the engine. The worker itself (claims, leases, timeouts,
# cancels, seals) is the Rust core's (src/rust/src/worker/); every call
# here checks the core's answer, so a closed handle or a refused value is a
# classed redq_error.
#
# Front ends also register here the kinds of payload they run
# (worker_kind()): the worker loop evaluates a payload by its kind and
# names none of them.

# What a task's R code produced, as the core codes it; the core turns it
# into the task's status (an interruption: TIMEOUT or CANCELLED, whichever
# its side thread decided).
OUTCOME_VALUE <- 0L
OUTCOME_ERROR <- 1L
OUTCOME_INTERRUPTED <- 2L

# Register a worker with the settings `cfg` (its side thread starts) and
# return its handle; what it records about itself shows in worker_info().
wf_register <- function(cfg, max_batch) {
  info <- c(host = Sys.info()[["nodename"]], pid = as.character(Sys.getpid()),
            r_version = as.character(getRversion()),
            redq_version = as.character(utils::packageVersion("redq")),
            started = format(Sys.time(), "%Y-%m-%d %H:%M:%OS3"))
  rs_check(rs_worker_start(cfg$url, cfg$namespace, cfg$queue, cfg$name, cfg$heartbeat,
                           cfg$lease, redq_option("grace"), max_batch %||% redq_default("max_batch"), info,
                           url_secret(cfg$url), cfg$parent))
}

wf_id <- function(w) rs_check(rs_worker_id(w))

# Leave: what was claimed and not ended goes back.
wf_exit <- function(w) invisible(rs_check(rs_worker_exit(w)))

# Report the tasks ended since the last step and claim up to `limit` more,
# blocking up to `wait` seconds for work: list(id, payload, seed). A task
# the worker must not run (its seal did not verify, its record holds what
# the worker cannot use) is ended ERROR here, never handed out: its payload
# was not opened.
wf_step <- function(w, limit, wait) {
  b <- rs_check(rs_worker_step(w, limit, wait))
  refused <- which(!is.na(b$refused))
  for (i in refused) {
    if (wf_begin(w, b$id[[i]])) {
      wf_end(w, b$id[[i]], wf_error(b$refused[[i]], b$id[[i]]))
    } else {
      wf_skip(w, b$id[[i]])
    }
  }
  if (length(refused)) {
    b <- list(id = b$id[-refused], payload = b$payload[-refused], seed = b$seed[-refused])
  }
  b
}

# Report what ended, claiming nothing.
wf_report <- function(w) invisible(rs_check(rs_worker_step(w, 0, 0)))

# Begin a claimed task: its timeout runs from now. FALSE if it was
# cancelled meanwhile (then wf_skip() it).
wf_begin <- function(w, id) rs_flag(rs_worker_begin(w, id))

# A task cancelled before it began ends as interrupted.
wf_skip <- function(w, id) invisible(rs_check(rs_worker_end(w, id, OUTCOME_INTERRUPTED, raw())))

# End a task with `out`: list(outcome, result = serialized bytes) or
# list(outcome, value = an R value, which the core serializes straight into
# the task's record or chunks). Should the result not be stored (the
# server's memory limit, a value R cannot serialize), the task ends with an
# error that says so, and the worker goes on.
wf_end <- function(w, id, out) {
  r <- if (is.null(out$result)) rs_worker_end_value(w, id, out$outcome, out$value) else
    rs_worker_end(w, id, out$outcome, out$result)
  if (inherits(r, "redq_rs_error")) {
    size <- tryCatch({
      n <- if (is.null(out$result)) utils::object.size(out$value) else length(out$result)
      format(structure(n, class = "object_size"), units = "auto")
    }, error = function(e) "of unknown size")
    msg <- sprintf("its result (%s) could not be stored: %s", size, r$message)
    rs_check(rs_worker_end(w, id, OUTCOME_ERROR, serialize_fast(redq_task_error(msg, id = id))))
  }
  invisible()
}

# The end of a task that failed with `message`.
wf_error <- function(message, id) {
  list(outcome = OUTCOME_ERROR, result = serialize_fast(redq_task_error(message, id = id)))
}

# A value's end: the core serializes it straight into the task's record
# or, when large, its chunks (never held whole), under R_ToplevelExec, so
# a value R cannot serialize (nested too deeply, say) ends the task ERROR
# saying so (wf_end()) with no R handler set up per task.
wf_result <- function(value, outcome = OUTCOME_VALUE) list(outcome = outcome, value = value)

wf_stop_requested <- function(w) rs_flag(rs_worker_stop_requested(w))

wf_paused <- function(w) rs_flag(rs_worker_paused(w))

# Bring the running task's deadline forward to `seconds` from now (a
# worker's own limit on every task).
wf_cap_deadline <- function(w, seconds) invisible(rs_check(rs_worker_cap_deadline(w, seconds)))

# A deadline for a part of the running task (Inf: none), which the side
# thread enforces like a timeout; wf_take_timeout() says, inside the
# interrupt it sends, that it was this deadline, and forgets it.
wf_deadline <- function(w, seconds) invisible(rs_check(rs_worker_deadline(w, seconds)))

wf_take_timeout <- function(w) rs_flag(rs_worker_take_timeout(w))

# Whose interrupt this is. Ours if the side thread sent more SIGINTs than
# we have handled: "task" if it sent one for the task now running (a
# timeout or cancel), else "stray" (the late SIGINT of a task that has
# ended). Otherwise "user": a user pressed Ctrl+C.
wf_interrupt_kind <- function(w, state) {
  sent <- rs_check(rs_worker_signals(w))
  if (sent[[1L]] <= state$signals_handled) return("user")
  state$signals_handled <- sent[[1L]]
  if (sent[[2L]] > 0) "task" else "stray"
}

# Messages the side thread left for the R thread: list(id, command,
# args), or NULL; and the reply to one (any R value).
wf_messages <- function(w) rs_check(rs_worker_messages(w))

wf_respond <- function(w, mid, value) {
  invisible(rs_check(rs_worker_respond(w, mid, serialize(value, NULL, xdr = FALSE))))
}

# What the running task printed (kept for task_log()), and a line of the
# worker's event log.
wf_log <- function(w, text) invisible(rs_check(rs_worker_log(w, text)))

wf_event <- function(w, text) invisible(rs_check(rs_worker_event(w, text)))

# Values the worker reads: a shared object's bytes, a job's environment
# (bytes, or the address of the shared object that holds it; NULL if
# gone), a namespace value's bytes (NULL if unset). Each opened (its seal
# checked) by the core.
wf_object <- function(w, address) rs_check(rs_worker_object(w, address))

wf_job_env <- function(w, jid) rs_check(rs_worker_job_env(w, jid))

wf_data <- function(w, name) rs_check(rs_worker_data_get(w, name))

wf_offload <- function(w, path, threshold) invisible(rs_check(rs_worker_offload(w, path, threshold)))

# From the running task, on the worker this process serves as (NULL
# outside one): relay a condition to whoever waits for the task (a
# future's session signals it at once), record its progress. FALSE
# outside a worker.
wf_relay <- function(cond) {
  w <- redq_env$worker
  if (is.null(w)) return(FALSE)
  rs_check(rs_worker_relay(w, serialize(cond, NULL, xdr = FALSE)))
  TRUE
}

wf_progress <- function(value) {
  w <- redq_env$worker
  if (is.null(w)) return(FALSE)
  rs_flag(rs_worker_progress(w, serialize(value, NULL, xdr = FALSE)))
}

# The kinds of payload workers run. Each front end registers its own
# (.onLoad, R/zzz.R): `run(p, task, w, state)` evaluates payload `p` of
# task `task` (list(id, seed)) on worker `w` and returns its value;
# `seeded`: the kind installs random number streams itself (else the
# task's seed, if any, is installed before it runs).
payload_kinds <- new.env(parent = emptyenv())

worker_kind <- function(type, run, seeded = FALSE) {
  check_string(type, "type")
  if (!is.function(run)) redq_abort("argument", "'run' must be a function(p, task, w, state)")
  assign(type, list(run = run, seeded = isTRUE(seeded)), envir = payload_kinds)
  invisible(type)
}

# Evaluate a payload by its kind.
run_payload <- function(p, task, w, state) {
  kind <- if (is.character(p$type)) payload_kinds[[p$type]]
  if (is.null(kind)) {
    stop("unknown task payload type '", format(p$type),
         "'; is this worker's redq older than the controller's?")
  }
  if (!kind$seeded) {
    # the stream the engine gave the task, or the one the payload carries
    # (a task created with seed =)
    if (!is.null(p$seed)) {
      assign(".Random.seed", p$seed, envir = globalenv())
    } else if (!is.null(task$seed)) {
      assign(".Random.seed", task$seed, envir = globalenv())
    }
  }
  kind$run(p, task, w, state)
}
