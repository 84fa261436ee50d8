# The worker side of RedisParam: a call's task (kind "bioc") rebuilt from
# its constant part, fetched once per call, and run by BiocParallel's own
# worker function, with per-element timeouts through the worker face.

# On a worker: rebuild the task from its own part and the call's constant
# part (fetched once per call and cached), then evaluate it with
# BiocParallel's worker function. Element timeouts are redq's: the side
# thread interrupts an element that runs too long, and the element ends
# with an error while the task goes on.
run_bioc <- function(p, task, w, state) {
  bioc <- asNamespace("BiocParallel")
  msg <- p$msg
  if (isTRUE(msg$dynamic.only)) {
    const <- state$bioc[[p$job]]
    if (is.null(const)) {
      env <- worker_job_env(w, p$job, state)
      if (is.null(env)) {
        stop("the call's constant data is gone from Redis (the call ended or the server lost it)")
      }
      const <- env$const
      state$bioc <- c(utils::tail(state$bioc, 3L), stats::setNames(list(const), p$job))
    }
    msg <- BiocParallel::.task_remake(msg, const)
  }
  opts <- msg$data$args$OPTIONS
  if (!is.null(opts) && !identical(opts$timeout, bioc$WORKER_TIMEOUT)) {
    msg$data$args$FUN <- bioc_timed(msg$data$args$FUN, opts$timeout, w, state)
    msg$data$args$OPTIONS$timeout <- bioc$WORKER_TIMEOUT
  }
  value <- bioc$.bpworker_EXEC(msg)
  value$node <- wf_id(w) # the manager's log names the worker
  value
}

bioc_timed <- function(FUN, timeout, w, state) {
  force(FUN)
  function(...) {
    wf_deadline(w, timeout)
    on.exit(wf_deadline(w, Inf))
    withRestarts(
      withCallingHandlers(FUN(...), interrupt = function(cnd) {
        if (wf_take_timeout(w)) {
          wf_interrupt_kind(w, state)
          invokeRestart("redq_element_timeout")
        }
      }),
      redq_element_timeout = function() {
        stop(sprintf("reached elapsed time limit: the element ran longer than timeout = %s s",
                     format(timeout)), call. = FALSE)
      })
  }
}
