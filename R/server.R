# Where Redis is: an explicit URL, else REDIS_URL, else a server answering on
# 127.0.0.1:6379, else the user's own redis-server (shared by the user's
# sessions and left running, so that tasks outlive the session that made
# them), or, with option redq.server = "session", a private server for this
# session, stopped when it ends.

redq_env <- new.env(parent = emptyenv())

DEFAULT_LOCAL_URL <- "redis://127.0.0.1:6379/0"

#' Which Redis server redq uses
#'
#' `redq_url()` resolves the server: `url` if given, else the `REDIS_URL`
#' environment variable, else a server answering on 127.0.0.1:6379, else
#' the *embedded* server: a `redis-server` from `PATH` that redq starts for
#' you. By default that is your own server, shared by all your R sessions
#' on this machine and left running, so that tasks created in one session
#' can be run by workers of a second and collected in a third: it listens
#' on a loopback port with a generated password (kept, with its address,
#' in a file readable only by you in `tools::R_user_dir("redq", "cache")`),
#' and keeps its data with append-only persistence in
#' `tools::R_user_dir("redq", "data")`. `redq_server_stop()` ends it. With
#' `options(redq.server = "session")` (or `REDQ_SERVER=session`) redq
#' instead starts a private server without persistence for this session
#' and stops it when the session ends.
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
  if (identical(server_mode(), "session")) server_start()$url else user_server()
}

server_mode <- function() {
  mode <- getOption("redq.server", Sys.getenv("REDQ_SERVER", "user"))
  if (!mode %in% c("user", "session")) {
    redq_abort("argument", sprintf("option redq.server is '%s'; use \"user\" or \"session\"", mode))
  }
  mode
}

user_server_files <- function() {
  cache <- tools::R_user_dir("redq", "cache")
  list(cache = cache, data = tools::R_user_dir("redq", "data"),
       state = file.path(cache, "server-url"), lock = file.path(cache, "server.lock"),
       conf = file.path(cache, "redis.conf"), log = file.path(cache, "redis.log"))
}

user_server_url <- function(f) {
  if (!file.exists(f$state)) return(NULL)
  url <- readLines(f$state, n = 1L, warn = FALSE)
  if (length(url) == 1L && server_answers(url)) url else NULL
}

# The user's own server: the one the state file names if it answers, else
# a new one (under a lock, as another session may be starting it too).
user_server <- function() {
  f <- user_server_files()
  url <- user_server_url(f)
  if (!is.null(url)) return(url)
  bin <- Sys.which("redis-server")
  if (!nzchar(bin)) server_missing()
  for (d in c(f$cache, f$data)) dir.create(d, recursive = TRUE, showWarnings = FALSE, mode = "0700")
  deadline <- Sys.time() + 20
  while (!dir.create(f$lock, showWarnings = FALSE)) {
    url <- user_server_url(f)
    if (!is.null(url)) return(url)
    if (Sys.time() > deadline) unlink(f$lock, recursive = TRUE) # left by a crash
    Sys.sleep(0.05)
  }
  on.exit(unlink(f$lock, recursive = TRUE), add = TRUE)
  url <- user_server_url(f)
  if (!is.null(url)) return(url)
  password <- paste(sample(c(letters, LETTERS, 0:9), 40, TRUE), collapse = "")
  port <- free_port()
  # the password goes in a file only the user reads, not on a command line
  writeLines(c(sprintf("port %d", port), "bind 127.0.0.1", sprintf("requirepass %s", password),
               "appendonly yes", "save \"\"", sprintf("dir %s", f$data),
               sprintf("logfile %s", f$log), "loglevel warning", "daemonize no"), f$conf)
  Sys.chmod(f$conf, "0600")
  processx::process$new(bin, f$conf, stdout = NULL, stderr = NULL, supervise = FALSE,
                        cleanup = FALSE)
  url <- sprintf("redis://:%s@127.0.0.1:%d/0", password, port)
  deadline <- Sys.time() + 10
  while (!server_answers(url)) {
    if (Sys.time() > deadline) {
      redq_abort("server", sprintf("redis-server did not start; see %s", f$log))
    }
    Sys.sleep(0.02)
  }
  tmp <- paste0(f$state, ".tmp")
  writeLines(url, tmp)
  Sys.chmod(tmp, "0600")
  file.rename(tmp, f$state)
  url
}

server_missing <- function() {
  redq_abort("server",
    paste("no Redis server found: set REDIS_URL to a server's URL,",
          "start one on 127.0.0.1:6379, or install redis-server",
          "(Debian/Ubuntu: apt install redis-server) so redq can start its own"))
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
  if (!is.null(srv)) {
    server_kill(srv)
    return(invisible(TRUE))
  }
  f <- user_server_files()
  url <- user_server_url(f)
  if (is.null(url)) return(invisible(FALSE))
  # SHUTDOWN writes the append-only file and ends the server
  try(rs_controller_command(rs_check(rs_controller_open(url, "default")), "SHUTDOWN"),
      silent = TRUE)
  unlink(f$state)
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
  if (!nzchar(bin)) server_missing()
  srv <- server_launch(bin)
  redq_env$server <- srv
  srv
}

# `conf`: lines of a configuration file to start from (a sentinel's), `args`:
# more options; a node of a cluster or a sentinel is ready when it answers
# PING, a plain server when redq can open a controller on it.
server_launch <- function(bin = Sys.which("redis-server"), port = NULL, tries = 3L,
                          args = character(), conf = NULL) {
  for (attempt in seq_len(tries)) {
    p <- if (is.null(port)) free_port() else port
    dir <- tempfile("redq-redis-")
    dir.create(dir)
    file <- if (!is.null(conf)) file.path(dir, "redis.conf")
    if (!is.null(conf)) writeLines(conf, file)
    argv <- c(file, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", "", args)
    proc <- processx::process$new(bin, argv, stdout = NULL, stderr = file.path(dir, "stderr"),
                                  supervise = TRUE, cleanup = TRUE)
    url <- sprintf("redis://127.0.0.1:%d/0", p)
    ready <- if (length(args) || !is.null(conf)) function(url) node_answers(p) else server_answers
    deadline <- Sys.time() + 10
    while (proc$is_alive() && Sys.time() < deadline) {
      if (ready(url)) {
        srv <- new.env(parent = emptyenv())
        srv$process <- proc
        srv$bin <- bin
        srv$argv <- argv
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

# A node answers PING (a cluster node without slots or a sentinel, which
# redq does not use directly).
node_answers <- function(port) {
  out <- tryCatch(processx::run("redis-cli", c("-p", port, "PING"), timeout = 5, error_on_status = FALSE),
                  error = function(e) NULL)
  !is.null(out) && identical(trimws(out$stdout), "PONG")
}

# redis-cli's answer to `args` from the node at `port`, as lines.
node_command <- function(port, ...) {
  out <- processx::run("redis-cli", c("-p", port, ...), timeout = 30, error_on_status = FALSE)
  strsplit(trimws(out$stdout), "\r?\n")[[1]]
}

# A Redis Cluster of `masters` masters with `replicas` replicas each, on
# loopback ports (test suites and the chaos soak): an environment with
# `url` (redis+cluster://), `nodes` (servers as server_launch() returns).
cluster_launch <- function(masters = 3L, replicas = 1L) {
  opts <- c("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000")
  nodes <- lapply(seq_len(masters * (1L + replicas)), function(i) server_launch(args = opts))
  cl <- new.env(parent = emptyenv())
  cl$nodes <- nodes
  hosts <- vapply(nodes, function(s) sprintf("127.0.0.1:%d", s$port), "")
  out <- processx::run("redis-cli", c("--cluster", "create", hosts, "--cluster-replicas", replicas,
                                      "--cluster-yes"), timeout = 60, error_on_status = FALSE)
  if (out$status != 0) {
    lapply(nodes, server_kill)
    redq_abort("server", paste("redis-cli --cluster create failed:", out$stdout, out$stderr))
  }
  # ready: every node sees the cluster up, with every replica in place
  ok <- function() all(vapply(nodes, function(s) {
    any(node_command(s$port, "CLUSTER", "INFO") == "cluster_state:ok") &&
      sum(grepl("slave", vapply(strsplit(node_command(s$port, "CLUSTER", "NODES"), " "),
                                  function(r) r[[3]], ""))) == masters * replicas
  }, TRUE))
  deadline <- Sys.time() + 30
  while (!ok()) {
    if (Sys.time() > deadline) {
      lapply(nodes, server_kill)
      redq_abort("server", "the cluster did not reach cluster_state:ok within 30 s")
    }
    Sys.sleep(0.2)
  }
  cl$url <- paste0("redis+cluster://", paste(hosts, collapse = ","))
  cl
}

# The ports of the master serving namespace `ns` in cluster `cl`, and of
# its replicas: list(master, replicas).
cluster_slot_nodes <- function(cl, ns) {
  port <- cl$nodes[[1]]$port
  # the namespace is the hash tag of its keys: the slot of "{ns}" is theirs
  slot <- as.integer(node_command(port, "CLUSTER", "KEYSLOT", sprintf("{%s}", ns)))
  rows <- strsplit(node_command(port, "CLUSTER", "NODES"), " ")
  port_of <- function(r) as.integer(sub("^[^:]*:([0-9]+)@.*$", "\\1", r[[2]]))
  serves <- function(r) {
    any(vapply(r[-(1:8)], function(range) {
      b <- suppressWarnings(as.integer(strsplit(range, "-", fixed = TRUE)[[1]]))
      !anyNA(b) && slot >= b[[1]] && slot <= b[[length(b)]]
    }, TRUE))
  }
  master <- Find(function(r) grepl("master", r[[3]]) && serves(r), rows)
  replicas <- Filter(function(r) identical(r[[4]], master[[1]]), rows)
  list(master = port_of(master), replicas = vapply(replicas, port_of, 1L))
}

# A master, a replica and three sentinels watching it as `name`, on
# loopback ports: an environment with `url` (redis+sentinel://), `master`,
# `replica` and `sentinels` (servers). A master refuses writes while no
# replica follows it (min-replicas-to-write), as Sentinel deployments
# should: a master a failover left behind then turns clients away instead
# of taking writes its demotion would lose.
sentinel_launch <- function(name = "redq") {
  ha <- c("--min-replicas-to-write", "1", "--min-replicas-max-lag", "2")
  master <- server_launch(args = ha)
  replica <- server_launch(args = c("--replicaof", "127.0.0.1", master$port, ha))
  conf <- c(sprintf("sentinel monitor %s 127.0.0.1 %d 2", name, master$port),
            sprintf("sentinel down-after-milliseconds %s 1000", name),
            sprintf("sentinel failover-timeout %s 10000", name))
  sentinels <- lapply(1:3, function(i) server_launch(conf = conf, args = "--sentinel"))
  st <- new.env(parent = emptyenv())
  st$master <- master
  st$replica <- replica
  st$sentinels <- sentinels
  st$name <- name
  # ready: the replica in sync and known to every sentinel
  ready <- function() {
    any(node_command(replica$port, "INFO", "replication") == "master_link_status:up") &&
      all(vapply(sentinels, function(s) {
        length(node_command(s$port, "SENTINEL", "REPLICAS", name)) > 1
      }, TRUE))
  }
  deadline <- Sys.time() + 30
  while (!ready()) {
    if (Sys.time() > deadline) {
      lapply(c(list(master, replica), sentinels), server_kill)
      redq_abort("server", "the sentinels did not see the replica within 30 s")
    }
    Sys.sleep(0.2)
  }
  hosts <- vapply(sentinels, function(s) sprintf("127.0.0.1:%d", s$port), "")
  st$url <- sprintf("redis+sentinel://%s/%s", paste(hosts, collapse = ","), name)
  st
}

# Kill a server launched by server_launch() (SIGKILL: what it has not
# written to its append-only file is lost) and start it again on the same
# port and directory; returns when it answers.
server_restart <- function(srv, down = 0) {
  srv$process$kill()
  Sys.sleep(down)
  srv$process <- processx::process$new(srv$bin, srv$argv, stdout = NULL,
                                       stderr = file.path(srv$dir, "stderr"), supervise = TRUE,
                                       cleanup = TRUE)
  deadline <- Sys.time() + 30
  while (!node_answers(srv$port)) {
    if (Sys.time() > deadline || !srv$process$is_alive()) {
      redq_abort("server", "redis-server did not come back after a restart")
    }
    Sys.sleep(0.05)
  }
  invisible(srv)
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
