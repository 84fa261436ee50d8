# Where Redis is: an explicit URL, else REDIS_URL, else a server answering on
# 127.0.0.1:6379, else a private redis-server started for this session (the
# embedded default), stopped when the session ends.

redq_env <- new.env(parent = emptyenv())

DEFAULT_LOCAL_URL <- "redis://127.0.0.1:6379/0"

#' Which Redis server redq uses
#'
#' `redq_url()` resolves the server: `url` if given, else the `REDIS_URL`
#' environment variable, else a server answering on 127.0.0.1:6379, else a
#' private `redis-server` from `PATH` that redq starts on a free loopback
#' port without persistence, uses for this session and the workers it
#' spawns, and stops when the session ends (the *embedded* server).
#'
#' URLs have the form `redis://[user:password@]host:port/db`. Passwords are
#' never printed; workers receive the URL through their environment, never
#' on a command line.
#'
#' @param url A Redis URL, or `NULL` to resolve as described.
#' @return `redq_url()`: the URL. `redq_available()`: `TRUE` if a server can
#'   be reached or started. `redq_server_stop()`: invisibly, whether an
#'   embedded server was running.
#' @export
#' @examples
#' if (redq_available()) redq_url()
redq_url <- function(url = NULL) {
  if (!is.null(url)) {
    check_string(url, "url")
    return(url)
  }
  env <- Sys.getenv("REDIS_URL")
  if (nzchar(env)) {
    return(env)
  }
  if (!is.null(redq_env$server) && redq_env$server$process$is_alive()) {
    return(redq_env$server$url)
  }
  if (is.null(redq_env$local_default)) {
    redq_env$local_default <- server_answers(DEFAULT_LOCAL_URL)
  }
  if (redq_env$local_default) {
    return(DEFAULT_LOCAL_URL)
  }
  server_start()$url
}

#' @rdname redq_url
#' @export
redq_available <- function() {
  tryCatch({
    redq_url()
    TRUE
  }, redq_error = function(e) FALSE)
}

#' @rdname redq_url
#' @export
redq_server_stop <- function() {
  srv <- redq_env$server
  redq_env$server <- NULL
  if (is.null(srv)) {
    return(invisible(FALSE))
  }
  server_kill(srv)
  invisible(TRUE)
}

free_port <- function() {
  for (i in 1:50) {
    port <- sample(20000:60000, 1L)
    sock <- tryCatch(serverSocket(port), error = function(e) NULL)
    if (!is.null(sock)) {
      close(sock)
      return(port)
    }
  }
  redq_abort("server", "found no free TCP port on 127.0.0.1 for redis-server")
}

# Start a redis-server on a free loopback port, owned by this session:
# supervised by processx (it dies with the R process, even on a crash) and
# killed by a finalizer at exit.
server_start <- function() {
  bin <- Sys.which("redis-server")
  if (!nzchar(bin)) {
    redq_abort("server",
      paste("no Redis server found: set REDIS_URL to a server's URL,",
            "start one on 127.0.0.1:6379, or install redis-server",
            "(Debian/Ubuntu: apt install redis-server) so redq can start its own"))
  }
  srv <- server_launch(bin)
  redq_env$server <- srv
  srv
}

server_launch <- function(bin = Sys.which("redis-server"), port = NULL, tries = 3L) {
  for (attempt in seq_len(tries)) {
    p <- if (is.null(port)) free_port() else port
    dir <- tempfile("redq-redis-")
    dir.create(dir)
    proc <- processx::process$new(
      bin, c("--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", dir, "--daemonize", "no", "--loglevel", "warning",
             "--logfile", ""),
      stdout = NULL, stderr = file.path(dir, "stderr"), supervise = TRUE, cleanup = TRUE)
    url <- sprintf("redis://127.0.0.1:%d/0", p)
    deadline <- Sys.time() + 10
    while (proc$is_alive() && Sys.time() < deadline) {
      if (server_answers(url)) {
        srv <- new.env(parent = emptyenv())
        srv$process <- proc
        srv$url <- url
        srv$port <- p
        srv$dir <- dir
        reg.finalizer(srv, server_kill, onexit = TRUE)
        return(srv)
      }
      Sys.sleep(0.02)
    }
    proc$kill()
    unlink(dir, recursive = TRUE)
  }
  redq_abort("server", sprintf("redis-server (%s) did not start; run it by hand to see why", bin))
}

server_kill <- function(srv) {
  if (!is.null(srv$process) && srv$process$is_alive()) {
    srv$process$kill()
  }
  if (!is.null(srv$dir)) {
    unlink(srv$dir, recursive = TRUE)
  }
  invisible(NULL)
}
