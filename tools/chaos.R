# The chaos soak (make chaos): on each topology named on the command line
# (single, cluster, sentinel; default all three), 20,000 short tasks of the
# task API and foreach loops run on 6 workers while, at random moments,
# workers are SIGKILLed and replaced, a worker is SIGSTOPped past its lease
# and resumed, the server kills its clients' connections, the server (or a
# master) is restarted or failed over, and FLUSHALL runs once. At the end
# every task must have ended once with its own result (task API tasks
# created before the FLUSHALL may instead be reported lost) and no worker
# or key of the run may be left. Prints what it injected and what it
# found; exits with status 1 if anything was wrong.
suppressPackageStartupMessages(library(redq))
topologies <- commandArgs(trailingOnly = TRUE)
if (!length(topologies)) topologies <- c("single", "cluster", "sentinel")
N_TASKS <- as.integer(Sys.getenv("CHAOS_TASKS", "20000"))
SECONDS <- as.numeric(Sys.getenv("CHAOS_SECONDS", "150")) # loops run at least this long
N_WORKERS <- 6L
HEARTBEAT <- 0.5
LEASE <- 3
options(redq.heartbeat = HEARTBEAT, redq.lease = LEASE, redq.reap_interval = 0.5,
        redq.check_interval = 2)

# The servers of a topology: list(url, restart = function() description,
# stop = function()).
topology <- function(kind) {
  aof <- c("--appendonly", "yes", "--appendfsync", "always")
  switch(kind,
    single = {
      srv <- redq:::server_launch(args = aof)
      list(url = srv$url, stop = function() redq:::server_kill(srv),
           restart = function() {
             redq:::server_restart(srv, down = 0.5)
             "restarted the server (SIGKILL, append-only file)"
           })
    },
    cluster = {
      cl <- redq:::cluster_launch(masters = 3, replicas = 1)
      list(url = cl$url, stop = function() lapply(cl$nodes, redq:::server_kill),
           slot_nodes = function(ns) redq:::cluster_slot_nodes(cl, ns),
           restart = NULL)
    },
    sentinel = {
      st <- redq:::sentinel_launch("chaos")
      list(url = st$url, stop = function() lapply(c(list(st$master, st$replica), st$sentinels),
                                                 redq:::server_kill),
           sentinel = st$sentinels[[1]]$port)
    })
}

# The workload, in a separate R process: batches of task API tasks, a
# foreach loop between batches, and the ended tasks collected (their
# results checked, then deleted) as it goes, until every task ended and
# `seconds` passed. Writes what it found to `out`.
workload <- function(url, ns, n_tasks, out) {
  callr::r_bg(function(url, ns, n_tasks, out, opts, seconds) {
    t0 <- Sys.time()
    library(redq)
    library(foreach)
    options(opts)
    ctl <- redq_controller(ns, url = url)
    registerDoRedis("loops", url = url, namespace = ns)
    f <- function(i) {
      Sys.sleep(0.01)
      i * 2 + 1
    }
    environment(f) <- globalenv()
    pending <- list() # id -> list(i, submitted)
    ended <- list()   # id -> list(status, ok, submitted)
    loops <- list()
    failed <- character() # submissions and deletions that failed, when and why
    to_delete <- character()
    next_i <- 1L
    repeat {
      if (next_i <= n_tasks) {
        i <- next_i:min(n_tasks, next_i + 999L)
        got <- tryCatch(task_create_bulk_call(f, as.list(i)), error = function(e) {
          failed <<- c(failed, sprintf("%6.1f s  %s", as.numeric(Sys.time() - t0, units = "secs"),
                                       conditionMessage(e)))
          NULL
        })
        if (!is.null(got)) {
          now <- as.numeric(Sys.time())
          for (j in seq_along(got)) pending[[got[[j]]]] <- list(i = i[[j]], submitted = now)
          next_i <- max(i) + 1L
        }
      }
      k <- length(loops) + 1L
      r <- tryCatch(foreach(i = 1:300, .combine = c, .options.redis = list(chunkSize = 5)) %dopar%
                      (i * k), error = function(e) conditionMessage(e))
      loops[[k]] <- if (identical(r, (1:300) * k)) TRUE else r
      ids <- names(pending)
      st <- if (length(ids)) tryCatch(task_status(ids), error = function(e) NULL)
      if (!is.null(st)) {
        gone <- ids[!st %in% c("PENDING", "RUNNING", "DEFERRED")]
        done <- ids[st == "COMPLETE"]
        res <- tryCatch(if (length(done)) task_results(done) else list(), error = function(e) NULL)
        if (!is.null(res)) {
          for (id in gone) {
            p <- pending[[id]]
            ok <- if (id %in% done) identical(res[[id]], p$i * 2 + 1) else NA
            ended[[id]] <- list(status = unname(st[id]), ok = ok, submitted = p$submitted)
            pending[[id]] <- NULL
          }
          to_delete <- c(to_delete, gone[gone %in% done | st[gone] != "MISSING"])
        }
      }
      # a deletion that failed (the server was away) is made again
      if (length(to_delete)) {
        to_delete <- tryCatch({
          task_delete(to_delete)
          character()
        }, error = function(e) {
          failed <<- c(failed, sprintf("%6.1f s  task_delete: %s", as.numeric(Sys.time() - t0, units = "secs"),
                                       conditionMessage(e)))
          to_delete
        })
      }
      if (next_i > n_tasks && !length(pending) && !length(to_delete) &&
          as.numeric(Sys.time() - t0, units = "secs") > seconds) break
    }
    saveRDS(list(ended = ended, loops = loops, failed = failed), out)
    TRUE
  }, list(url, ns, n_tasks, out, options()[grep("^redq\\.", names(options()))], SECONDS),
  supervise = TRUE)
}

soak <- function(kind) {
  cat(sprintf("\n== %s: %d tasks, foreach loops, %d workers\n", kind, N_TASKS, N_WORKERS))
  top <- topology(kind)
  on.exit(top$stop(), add = TRUE)
  ns <- paste0("chaos-", kind)
  ctl <- redq_controller(ns, url = top$url, default = FALSE)
  w <- worker_spawn(N_WORKERS, queue = c("default", "loops"), controller = ctl, timeout = 60)
  workers <- w$id
  out <- tempfile(fileext = ".rds")
  t0 <- Sys.time()
  bg <- workload(top$url, ns, N_TASKS, out)
  injected <- character()
  flushed_at <- NA
  note <- function(what) {
    injected <<- c(injected, sprintf("%6.1f s  %s", as.numeric(Sys.time() - t0, units = "secs"), what))
  }
  # pids of the worker processes this session started that still run
  # (never a number read back from Redis: a pid can be reused)
  live_pid <- function() {
    procs <- Filter(function(p) p$is_alive(), redq:::redq_env$processes)
    vapply(procs, function(p) p$get_pid(), 1L)
  }
  faults <- c("kill", "kill", "stop", "clientkill", "server")
  Sys.sleep(3)
  while (bg$is_alive()) {
    Sys.sleep(stats::runif(1, 1, 4))
    if (!bg$is_alive()) break
    fault <- if (is.na(flushed_at) && as.numeric(Sys.time() - t0, units = "secs") > 20) "flushall"
             else sample(faults, 1)
    pids <- live_pid()
    try(switch(fault,
      kill = if (length(pids)) {
        p <- pids[sample.int(length(pids), 1)]
        tools::pskill(p, tools::SIGKILL)
        more <- worker_spawn(1, queue = c("default", "loops"), controller = ctl, timeout = 60)
        workers <- c(workers, more$id)
        note(sprintf("SIGKILLed worker pid %d, started %s", p, more$id))
      },
      stop = if (length(pids)) {
        p <- pids[sample.int(length(pids), 1)]
        tools::pskill(p, tools::SIGSTOP)
        Sys.sleep(LEASE + 2)
        tools::pskill(p, tools::SIGCONT)
        note(sprintf("SIGSTOPped worker pid %d for %g s (lease %g s), resumed", p, LEASE + 2, LEASE))
      },
      clientkill = {
        redq:::redis_command(c("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"), controller = ctl)
        note("CLIENT KILL TYPE normal: every connection but this one")
      },
      server = {
        if (kind == "single") {
          note(top$restart())
        } else if (kind == "cluster") {
          nodes <- top$slot_nodes(ns)
          redq:::node_command(nodes$replicas[[1]], "CLUSTER", "FAILOVER")
          note(sprintf("CLUSTER FAILOVER: the namespace's master %d to its replica %d",
                       nodes$master, nodes$replicas[[1]]))
        } else {
          redq:::node_command(top$sentinel, "SENTINEL", "FAILOVER", "chaos")
          note("SENTINEL FAILOVER")
        }
        Sys.sleep(3)
      },
      flushall = {
        redq:::redis_command("FLUSHALL", controller = ctl)
        flushed_at <- as.numeric(Sys.time())
        note("FLUSHALL")
      }), silent = TRUE)
  }
  ok <- tryCatch(bg$get_result(), error = function(e) {
    cat("the workload failed:", conditionMessage(e), "\n")
    FALSE
  })
  elapsed <- as.numeric(Sys.time() - t0, units = "secs")
  cat(sprintf("injected (%d):\n", length(injected)))
  cat(paste0("  ", injected), sep = "\n")
  problems <- character()
  r <- NULL
  if (isTRUE(ok) && file.exists(out)) {
    r <- readRDS(out)
    if (length(r$failed)) {
      cat(sprintf("calls of the workload that failed (and were made again) (%d):\n", length(r$failed)))
      cat(paste0("  ", r$failed), sep = "\n")
    }
    status <- vapply(r$ended, function(e) e$status, "")
    ok <- vapply(r$ended, function(e) isTRUE(e$ok), TRUE)
    submitted <- vapply(r$ended, function(e) e$submitted, 1)
    lost <- status == "MISSING"
    late_lost <- lost & submitted > (flushed_at %|NA|% Inf)
    wrong <- status == "COMPLETE" & !ok
    other <- !status %in% c("COMPLETE", "MISSING")
    loops_bad <- Filter(function(x) !isTRUE(x), r$loops)
    cat(sprintf(paste("found: %d of %d tasks COMPLETE with their own result, %d reported lost (created",
                      "before the FLUSHALL), %d wrong results, %d ended otherwise; %d foreach loops,",
                      "%d wrong; %.0f s\n"),
                sum(status == "COMPLETE" & ok), N_TASKS, sum(lost & !late_lost), sum(wrong), sum(other),
                length(r$loops), length(loops_bad), elapsed))
    if (length(status) != N_TASKS) problems <- c(problems, sprintf("%d tasks never reported", N_TASKS - length(status)))
    if (any(wrong)) problems <- c(problems, sprintf("%d tasks with another result", sum(wrong)))
    if (any(late_lost)) problems <- c(problems, sprintf("%d tasks lost that were created after the FLUSHALL", sum(late_lost)))
    if (any(other)) problems <- c(problems, sprintf("%d tasks ended %s", sum(other), paste(unique(status[other]), collapse = ", ")))
    if (length(loops_bad)) problems <- c(problems, sprintf("%d loops wrong: %s", length(loops_bad), paste(unique(unlist(loops_bad)), collapse = "; ")))
  } else {
    problems <- c(problems, "the workload did not finish")
  }
  # nothing left: stop every worker this run started that still runs
  # (one the reaper declared lost while it was stopped included), let a
  # reaper find those that were killed, then look at processes and keys
  procs <- redq:::redq_env$processes # every worker this session started
  running <- names(procs)[vapply(procs, function(p) p$is_alive(), TRUE)]
  worker_stop(running, type = "kill", wait = 10, controller = ctl)
  Sys.sleep(LEASE + 1)
  worker_detect_lost(controller = ctl)
  alive <- names(procs)[vapply(procs, function(p) p$is_alive(), TRUE)]
  if (length(alive)) {
    st <- tryCatch(worker_status(alive, controller = ctl), error = function(e) "?")
    problems <- c(problems, sprintf("%d worker processes still running: %s", length(alive),
                                    paste(alive, st, collapse = ", ")))
    log <- tryCatch(worker_log_tail(alive, n = 8, controller = ctl), error = function(e) NULL)
    if (!is.null(log)) print(log)
  }
  keys <- redq:::redis_command(c("KEYS", sprintf("redq:{%s}:*", ns)), controller = ctl)
  # a name that is not text comes back raw: shown with its bytes escaped
  keys <- vapply(keys, function(k) if (is.raw(k)) paste0("<binary> ", rawToChar(k[k != 0])) else k, "")
  # what stays by design: the namespace's version, totals, recent
  # failures, lost-worker events, and worker records (a day)
  kept <- "(version|queues|counts|failures|events|reaped|worker:[^:]+|worker:[^:]+:log)$"
  leaked <- keys[!grepl(paste0(":", kept), keys)]
  if (length(leaked)) {
    problems <- c(problems, sprintf("%d keys left: %s", length(leaked), paste(utils::head(leaked, 5), collapse = ", ")))
    cat("left:", paste(utils::head(leaked, 10), collapse = "\n      "), "\n")
    if (length(r$ended)) {
      lost_ids <- names(r$ended)[vapply(r$ended, function(e) e$status == "MISSING", TRUE)]
      left_ids <- sub(".*:task:", "", leaked[grepl(":task:[^:]+$", leaked)])
      cat(sprintf("of the %d task records left, %d are of tasks the workload saw as lost\n",
                  length(left_ids), sum(left_ids %in% lost_ids)))
    }
    for (k in utils::head(leaked[grepl(":task:[^:]+$", leaked)], 2)) tryCatch({
      id <- sub(".*:task:", "", k)
      f <- c("status", "queue", "job", "worker", "attempt", "created", "started", "finished")
      v <- redq:::redis_command(c("HMGET", k, f), controller = ctl)
      value <- tryCatch(format(task_result(id, controller = ctl)), error = function(e) conditionMessage(e))
      cat(k, ":", paste(f, vapply(v, function(x) if (is.null(x)) "-" else as.character(x), ""), sep = "=",
                        collapse = " "), "value", value,
          sprintf("(created %.1f s into the run)", as.numeric(v[[6]]) / 1000 - as.numeric(t0)), "\n")
    }, error = function(e) cat(k, ": cannot read it:", conditionMessage(e), "\n"))
    for (k in utils::head(leaked[!startsWith(leaked, "<binary>") & !grepl(":task:[^:]+$", leaked)], 2)) tryCatch({
      type <- redq:::redis_command(c("TYPE", k), controller = ctl)
      what <- switch(type, hash = redq:::redis_command(c("HGETALL", k), controller = ctl),
                     string = redq:::redis_command(c("PTTL", k), controller = ctl),
                     set = redq:::redis_command(c("SMEMBERS", k), controller = ctl), type)
      cat(k, ":", paste(vapply(unlist(what), function(x) if (is.raw(x)) "<raw>" else as.character(x), ""),
                        collapse = " "), "\n")
    }, error = function(e) cat(k, ": cannot read it:", conditionMessage(e), "\n"))
  }
  redq_destroy(controller = ctl)
  cat(if (length(problems)) paste("FAILED:", problems, collapse = "\n") else "passed", "\n")
  !length(problems)
}

`%|NA|%` <- function(a, b) if (is.na(a)) b else a
`%||%` <- function(a, b) if (is.null(a)) b else a

results <- vapply(topologies, soak, TRUE)
cat("\n", paste(sprintf("%s: %s", topologies, ifelse(results, "passed", "FAILED")), collapse = ", "), "\n")
quit(status = if (all(results)) 0 else 1)
