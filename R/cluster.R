# The parallel cluster: base R's cluster functions on redq workers.
# parallel talks to a cluster through three generics, sendData(node,
# message), recvData(node) and recvOneData(cluster); redq implements them
# on one engine job per cluster. A node is one worker: calls addressed to
# a node go to that worker's own queue; load-balanced calls
# (clusterApplyLB() and what is built on it) go to the cluster's queue,
# which every node serves.

#' A parallel cluster of redq workers
#'
#' `redq_cluster()` returns a cluster that base R's `parallel` functions
#' accept: `parLapply()`, `parSapply()`, `clusterApply()`,
#' `clusterApplyLB()`, `clusterCall()`, `clusterExport()`,
#' `clusterEvalQ()`, `clusterSetRNGStream()`, `stopCluster()`, and so
#' `doParallel::registerDoParallel(cl)`, `future::plan(cluster, workers =
#' cl)` and the packages built on them.
#'
#' **Nodes are workers.** Node `k` is one redq worker. Calls addressed to a
#' node (`clusterCall()`, `clusterExport()`, `clusterEvalQ()`,
#' `clusterApply()`, `parLapply()`'s chunks) go to that worker's own queue,
#' so they reach every node as on a socket cluster, and each node keeps its
#' global environment between calls. Load-balanced calls (`clusterApplyLB()`,
#' `parLapplyLB()`, `parSapplyLB()`, doParallel's loops) go to the
#' cluster's queue, which every node serves: the first free node takes the
#' next call, and a call whose worker dies runs again on another node.
#'
#' **Workers that come and go.** When a node's worker dies, the call it was
#' running is run again (up to `max_attempts` runs) on a replacement: a
#' new local worker for a cluster that started its own (`n`), else another
#' live worker serving `queue` that is not a node yet. Before anything
#' else, the replacement is given what `clusterExport()`, `clusterEvalQ()`
#' and `clusterSetRNGStream()` gave the node it replaces, in the same
#' order; other state a node built up (globals assigned by `clusterCall()`)
#' is not replayed. With no replacement to be had, the call returns an
#' error, which `parallel` signals as "one node produced an error".
#'
#' @param n Number of local workers to start, one per node, or `NULL`: the
#'   nodes are then the live workers serving `queue` now, on this machine
#'   or any other.
#' @param namespace redq namespace.
#' @param queue The queue load-balanced calls go to. `NULL`: a queue of
#'   the cluster's own when it starts its workers (`n`), else `"default"`.
#' @param url Redis URL, or `NULL` for [redq_url()].
#' @param timeout Seconds to wait for started workers to register.
#' @param max_attempts Runs allowed for a call whose worker keeps dying
#'   (`NULL`: 3).
#' @return A cluster (class `c("redq_cluster", "cluster")`) of `n` nodes.
#' @export
#' @examples
#' if (redq_available()) {
#'   cl <- redq_cluster(2)
#'   parallel::clusterExport(cl, character())
#'   parallel::clusterEvalQ(cl, library(stats))
#'   parallel::parSapply(cl, 1:10, sqrt)
#'   parallel::stopCluster(cl)
#' }
redq_cluster <- function(n = NULL, namespace = "default", queue = NULL, url = NULL, timeout = 30,
                         max_attempts = NULL) {
  if (!is.null(n)) n <- check_count(n, "n")
  if (!is.null(queue)) check_string(queue, "queue")
  timeout <- check_seconds(timeout, "timeout")
  max_attempts <- check_count(max_attempts %||% 3, "max_attempts")
  own_queue <- is.null(queue) && !is.null(n)
  queue <- queue %||% if (own_queue) paste0("cluster-", substr(basename(tempfile("")), 5, 14)) else "default"
  ctl <- redq_controller(namespace, url = url, queue = queue, default = FALSE)
  st <- new.env(parent = emptyenv())
  st$ctl <- ctl
  st$queue <- queue
  st$local <- !is.null(n)
  st$own_queue <- own_queue
  st$max_attempts <- max_attempts
  st$timeout <- timeout
  if (st$local) {
    # a node's worker that dies is replaced by the cluster itself, which
    # sets the new one up as the old
    st$nodes <- worker_spawn(n, queue = queue, timeout = timeout, controller = ctl,
                             replace = FALSE)$id
  } else {
    st$nodes <- serving_workers(ctl, queue)
    if (!length(st$nodes)) {
      redq_abort("worker", sprintf(paste(
        "no live worker serves queue '%s' of namespace '%s': start some first",
        "(worker_spawn(), or redq-worker on other machines), or give n to start local ones"),
        queue, namespace))
    }
  }
  st$job <- job_open(ctl, fetch = TRUE, consume = TRUE)
  # per node: ids sent and not yet received (in order), and the setup
  # calls a replacement is given
  st$pending <- rep(list(character()), length(st$nodes))
  st$setup <- rep(list(list()), length(st$nodes))
  # per call: its node, tag, payload, route and runs so far
  st$calls <- new.env(parent = emptyenv())
  # calls received from the engine and not yet asked for
  st$done <- new.env(parent = emptyenv())
  # ids of node workers found gone
  st$lost <- list()
  st$stopped <- FALSE
  reg.finalizer(st, cluster_shutdown, onexit = TRUE)
  nodes <- lapply(seq_along(st$nodes), function(k) {
    structure(list(rank = k, cluster = st), class = "redq_node")
  })
  # a stable name: future tells clusters apart by it (else by a digest of
  # their content, which changes as calls come and go)
  structure(nodes, class = c("redq_cluster", "cluster"), name = paste0("redq-", st$job$id))
}

#' @exportS3Method parallel::sendData
sendData.redq_node <- function(node, data) {
  st <- node$cluster
  if (st$stopped) {
    redq_abort("argument", "this redq cluster was stopped; make a new one with redq_cluster()")
  }
  if (identical(data$type, "EXEC")) {
    msg <- data$data
    payload <- serialize_fast(list(type = "snow", fun = msg$fun, args = msg$args, tag = msg$tag))
    lb <- called_from("dynamicClusterApply")
    if (!lb && called_from(c("clusterExport", "clusterEvalQ", "clusterSetRNGStream"))) {
      st$setup[[node$rank]] <- c(st$setup[[node$rank]], list(payload))
    }
    cluster_submit(st, node$rank, payload, msg$tag, lb)
  }
  # "DONE" (stopNode): the workers stop with stopCluster()
  invisible()
}

#' @exportS3Method parallel::recvData
recvData.redq_node <- function(node) {
  st <- node$cluster
  id <- st$pending[[node$rank]][1]
  if (is.na(id)) {
    redq_abort("argument", sprintf("node %d has no call to answer: send one first", node$rank))
  }
  cluster_receive(st, id)
}

#' @exportS3Method parallel::recvOneData
recvOneData.redq_cluster <- function(cl) {
  st <- cl[[1]]$cluster
  ranks <- vapply(cl, function(node) node$rank, 1L)
  ids <- unlist(st$pending[ranks], use.names = FALSE)
  if (!length(ids)) {
    redq_abort("argument", "no node of this cluster has a call to answer: send one first")
  }
  got <- intersect(ids, ls(st$done))
  id <- if (length(got)) got[[1]] else cluster_wait(st, ids)
  list(node = st$calls[[id]]$node, value = cluster_receive(st, id))
}

#' @rawNamespace S3method(parallel::stopCluster, redq_cluster)
stopCluster.redq_cluster <- function(cl = NULL) {
  cluster_shutdown(cl[[1]]$cluster)
  invisible()
}

#' @export
print.redq_cluster <- function(x, ...) {
  st <- x[[1]]$cluster
  cat(sprintf("redq cluster of %d node(s) on namespace '%s', queue '%s'%s\n", length(x),
              st$ctl$namespace, st$queue, if (st$stopped) " (stopped)" else ""))
  invisible(x)
}

#' @export
print.redq_node <- function(x, ...) {
  st <- x$cluster
  cat(sprintf("node %d of a redq cluster: worker %s\n", x$rank, st$nodes[[x$rank]]))
  invisible(x)
}

# Whether one of parallel's functions `names` is running (it called us).
called_from <- function(names) {
  fns <- lapply(names, utils::getFromNamespace, ns = "parallel")
  for (i in rev(seq_len(sys.nframe()))) {
    f <- sys.function(i)
    for (g in fns) if (identical(f, g)) return(TRUE)
  }
  FALSE
}

# Send one call for node k: to its worker's own queue, or (load-balanced)
# to the cluster's queue. A node whose worker is gone is replaced first.
cluster_submit <- function(st, k, payload, tag, lb, replaces = NULL) {
  if (!lb && isTRUE(st$lost[[st$nodes[[k]]]])) cluster_replace(st, k)
  queue <- if (lb) st$queue else worker_queue(st$nodes[[k]])
  runs <- if (is.null(replaces)) 1L else st$calls[[replaces]]$runs + 1L
  job_submit(st$job, queue, list(payload), max_attempts = st$max_attempts, record = function(id) {
    assign(id, list(node = k, worker = st$nodes[[k]], tag = tag, payload = payload, lb = lb,
                    runs = runs), envir = st$calls)
    if (is.null(replaces)) {
      st$pending[[k]] <- c(st$pending[[k]], id)
    } else {
      st$pending[[k]][st$pending[[k]] == replaces] <- id
      rm(list = replaces, envir = st$calls)
    }
  })
}

# Wait until one of `ids` has ended; returns its id. A node-addressed call
# whose worker died runs again on the node's replacement.
cluster_wait <- function(st, ids) {
  repeat {
    r <- withCallingHandlers(
      job_wait(st$job, n = NA, ids = ids, timeout = Inf),
      interrupt = function(cnd) cluster_abandon(st))
    for (w in r$lost$id) st$lost[[w]] <- TRUE
    for (i in seq_along(r$id)) {
      id <- r$id[[i]]
      call <- st$calls[[id]]
      if (is.null(call)) next
      if (isTRUE(call$replay)) {
        cluster_replayed(st, r, i)
        next
      }
      if (!r$completed[[i]] && !call$lb && r$died[[i]] &&
          call$runs < st$max_attempts && cluster_can_replace(st)) {
        st$lost[[call$worker]] <- TRUE
        new <- cluster_submit(st, call$node, call$payload, call$tag, lb = FALSE, replaces = id)
        ids[ids == id] <- new
        next
      }
      assign(id, list(completed = r$completed[[i]], result = r$result[[i]]), envir = st$done)
    }
    got <- intersect(ids, ls(st$done))
    if (length(got)) return(got[[1]])
  }
}

# The reply parallel expects for call `id`: its worker's
# list(type = "VALUE", value, success, time, tag), or, when no worker
# could run it, an error value that parallel signals.
cluster_receive <- function(st, id) {
  # (a call run again on a replacement has a new id)
  if (!exists(id, envir = st$done, inherits = FALSE)) id <- cluster_wait(st, id)
  got <- st$done[[id]]
  call <- st$calls[[id]]
  rm(list = id, envir = st$done)
  rm(list = id, envir = st$calls)
  k <- call$node
  st$pending[[k]] <- setdiff(st$pending[[k]], id)
  if (got$completed) return(unserialize(got$result))
  why <- sprintf("node %d: %s", k, task_failure(id, st$ctl))
  list(type = "VALUE", value = structure(why, class = c("snow-try-error", "try-error")),
       success = FALSE, time = NULL, tag = call$tag)
}

# Whether a node whose worker is gone can get another.
cluster_can_replace <- function(st) {
  st$local || length(setdiff(serving_workers(st$ctl, st$queue), st$nodes)) > 0
}

# Give node k a new worker (a new local one, or a live worker serving
# the queue that is not a node yet), and replay on it, before anything
# else, the setup calls node k was given.
cluster_replace <- function(st, k) {
  old <- st$nodes[[k]]
  new <- if (st$local) {
    worker_spawn(1, queue = st$queue, timeout = st$timeout, controller = st$ctl, replace = FALSE)$id
  } else {
    setdiff(serving_workers(st$ctl, st$queue), st$nodes)[1]
  }
  if (is.na(new)) {
    redq_abort("worker", sprintf(paste(
      "node %d's worker %s was lost and no other worker serves queue '%s' to replace it;",
      "start one, or make a new cluster"), k, old, st$queue))
  }
  st$nodes[[k]] <- new
  for (payload in st$setup[[k]]) {
    id <- job_submit(st$job, worker_queue(new), list(payload), max_attempts = 1)
    assign(id, list(node = k, replay = TRUE), envir = st$calls)
  }
  invisible(new)
}

cluster_replayed <- function(st, r, i) {
  id <- r$id[[i]]
  k <- st$calls[[id]]$node
  rm(list = id, envir = st$calls)
  value <- if (r$completed[[i]]) unserialize(r$result[[i]])$value
  if (!r$completed[[i]] || inherits(value, "try-error")) {
    warning(sprintf("node %d's replacement worker %s could not be set up as node %d was: %s", k,
                    st$nodes[[k]], k, if (is.null(value)) task_failure(id, st$ctl) else value),
            call. = FALSE)
  }
}

# Ctrl+C while waiting: cancel what the cluster has sent, so that the next
# call starts clean.
cluster_abandon <- function(st) {
  ids <- unlist(st$pending, use.names = FALSE)
  if (length(ids)) try(job_cancel(st$job, ids), silent = TRUE)
  st$pending <- rep(list(character()), length(st$nodes))
  rm(list = ls(st$calls), envir = st$calls)
  rm(list = ls(st$done), envir = st$done)
}

# Stop the cluster: remove its job (cancelling what is left) and stop the
# workers it started.
cluster_shutdown <- function(st) {
  if (isTRUE(st$stopped) || !identical(st$ctl$pid, Sys.getpid())) return(invisible())
  st$stopped <- TRUE
  try(job_remove(st$job), silent = TRUE)
  if (st$local) {
    try(worker_stop(st$nodes, type = "kill", wait = 2, controller = st$ctl), silent = TRUE)
  }
  # a queue named for this cluster is forgotten with it
  if (isTRUE(st$own_queue)) try(queue_remove(st$queue, controller = st$ctl), silent = TRUE)
  invisible()
}

# On a worker (payload kind "snow"):
# A parallel cluster's call, evaluated as parallel's own workers do: an
# error becomes the value, marked as one, for parallel to re-signal.
run_snow <- function(p, task, w, state) {
  success <- TRUE
  t1 <- proc.time()
  value <- tryCatch(do.call(p$fun, p$args, quote = TRUE), error = function(e) {
    success <<- FALSE
    structure(conditionMessage(e), class = c("snow-try-error", "try-error"))
  })
  list(type = "VALUE", value = value, success = success, time = proc.time() - t1, tag = p$tag)
}
