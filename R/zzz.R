.onLoad <- function(libname, pkgname) {
  redq_env$loaded <- TRUE
  redq_env$processes <- list()
  redq_env$logs <- list()
  redq_env$node_passwords <- list()
  redq_env$spawned <- list()
  # what each front end's tasks run on a worker (R/worker_face.R)
  worker_kind("expr", run_expr)
  worker_kind("call", run_call)
  worker_kind("future", run_future)
  worker_kind("foreach", run_foreach_chunk, seeded = TRUE)
  worker_kind("snow", run_snow)
  worker_kind("bioc", run_bioc)
  worker_kind("rush", run_rush)
  invisible()
}

# Unloading stops what this session owns: its private server and the
# workers it started. The user's own server is shared by their other
# sessions and is left running (redq_server_stop() ends it). The shared
# library stays loaded: R objects that outlive the namespace (controllers,
# workers, jobs) hold pointers whose finalizers are code in it, and gc()
# would run them in an unloaded library.
.onUnload <- function(libpath) {
  for (id in names(redq_env$processes)) {
    # startLocalWorkers(outlive = TRUE) workers are meant to outlive us
    if (isTRUE(redq_env$spawned[[id]]$again$settings$outlive)) next
    p <- redq_env$processes[[id]]
    if (!is.null(p) && p$is_alive()) try(p$kill(), silent = TRUE)
  }
  redq_env$processes <- list()
  session_server_stop()
  # finalizers that run after this point must not call into the package
  redq_env$loaded <- FALSE
}
