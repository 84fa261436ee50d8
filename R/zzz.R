.onLoad <- function(libname, pkgname) {
  redq_env$loaded <- TRUE
  redq_env$processes <- list()
  redq_env$logs <- list()
  invisible()
}

.onUnload <- function(libpath) {
  # finalizers that run after this point must not call into the library
  redq_env$loaded <- FALSE
  redq_server_stop()
  library.dynam.unload("redq", libpath)
}
