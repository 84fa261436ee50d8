# Where Redis is: an explicit URL, else REDIS_URL, else option redq.url,
# else the user's own redis-server (shared by the user's sessions and left
# running, so that tasks outlive the session that made them), or, with
# option redq.server = "session", a private server for this session,
# stopped when it ends. Whatever answers on 127.0.0.1:6379 is not used
# unless named: on a shared machine anyone can start a server there.
# Servers redq starts listen on a Unix socket in a directory only their
# owner can enter, require a password, and come with a secret that seals
# what R unserializes (see R/secret.R and ARCHITECTURE.md, "Trust").

redq_env <- new.env(parent = emptyenv())

#' Which Redis server redq uses
#'
#' `redq_url()` resolves the server: `url` if given, else the `REDIS_URL`
#' environment variable, else option `redq.url`, else the *embedded*
#' server: a `redis-server` from `PATH` that redq starts for you. By
#' default that is your own server, shared by all your R sessions on this
#' machine and left running, so that tasks created in one session can be
#' run by workers of a second and collected in a third. `redq_server_stop()`
#' ends it. With `options(redq.server = "session")` (or
#' `REDQ_SERVER=session`) redq instead starts a private server without
#' persistence for this session and stops it when the session ends.
#'
#' The embedded servers are private to you: they listen on a Unix socket
#' (no network port) in a directory only you can enter, require a
#' password, and have a secret with which redq signs every value it stores
#' and checks every value before R reads it back (see
#' `vignette("security", "redq")`). Your own server keeps its address,
#' password and secret in a file only you can read, in
#' `tools::R_user_dir("redq", "cache")`, and its data (append-only
#' persistence) in `tools::R_user_dir("redq", "data")`; both folders are
#' made private (mode 0700) if they are not. A server answering on
#' 127.0.0.1:6379 is used only if you name it (`REDIS_URL`, `url`, option
#' `redq.url`): any user of the machine could have started it.
#'
#' URLs have the form `redis://[user:password@]host:port/db` (or
#' `unix:///path/to/socket?pass=password`). Passwords are never printed;
#' workers receive the URL through their environment, never on a command
#' line.
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
  opt <- getOption("redq.url")
  if (!is.null(opt)) {
    check_string(opt, "option redq.url")
    return(opt)
  }
  if (!is.null(redq_env$server) && redq_env$server$process$is_alive()) {
    return(redq_env$server$url)
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
       conf = file.path(cache, "redis.conf"), log = file.path(cache, "redis.log"),
       socket = file.path(cache, "redis.sock"))
}

# The user's own server as its state file records it (list(url, secret)),
# or NULL. The file is the user's alone (0600 in a 0700 folder); one that
# others could have written is not trusted.
user_server_state <- function(f = user_server_files()) {
  if (!file.exists(f$state)) return(NULL)
  info <- file.info(f$state, extra_cols = TRUE)
  if (!identical(as.integer(info$uid), user_id()) || (as.integer(info$mode) %% 64L) != 0L) {
    return(NULL)
  }
  lines <- readLines(f$state, n = 2L, warn = FALSE)
  if (length(lines) < 2L) return(NULL)
  list(url = lines[[1]], secret = lines[[2]])
}

# Its URL if it answers.
user_server_url <- function(f) {
  state <- user_server_state(f)
  if (!is.null(state) && server_answers(state$url)) state$url else NULL
}

# The user's own server: the one the state file names if it answers, else
# a new one (under a lock, as another session may be starting it too).
user_server <- function() {
  redq_env$user_url <- user_server_find()
  redq_env$user_url
}

user_server_find <- function() {
  f <- user_server_files()
  private_dir(f$cache)
  private_dir(f$data)
  url <- user_server_url(f)
  if (!is.null(url)) return(url)
  bin <- Sys.which("redis-server")
  if (!nzchar(bin)) server_missing()
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
  password <- secure_token()
  where <- server_address(f$socket, password)
  # the password goes in a file only the user reads, not on a command line
  private_write(c(where$conf, sprintf("requirepass %s", password),
                  "appendonly yes", "save \"\"", sprintf("dir %s", f$data),
                  sprintf("logfile %s", f$log), "loglevel warning", "daemonize no"), f$conf)
  unlink(f$socket)
  private_spawn(function() {
    processx::process$new(bin, f$conf, stdout = NULL, stderr = NULL, supervise = FALSE,
                          cleanup = FALSE)
  })
  deadline <- Sys.time() + 10
  while (!server_answers(where$url)) {
    if (Sys.time() > deadline) {
      redq_abort("server", sprintf("redis-server did not start; see %s", f$log))
    }
    Sys.sleep(0.02)
  }
  private_write(c(where$url, secure_token()), f$state)
  where$url
}

# Where a server redq starts listens: the Unix socket `socket` (its
# configuration lines and URL), or, where the path is too long for a
# socket address (about 100 bytes), a free loopback port.
server_address <- function(socket, password) {
  if (nchar(socket, type = "bytes") <= 100L) {
    list(conf = c("port 0", sprintf("unixsocket %s", socket), "unixsocketperm 700"),
         url = sprintf("unix://%s?pass=%s", socket, password))
  } else {
    port <- free_port()
    list(conf = c(sprintf("port %d", port), "bind 127.0.0.1"),
         url = sprintf("redis://:%s@127.0.0.1:%d/0", password, port))
  }
}

# Run `start()` with umask 077, so that what the process creates (a
# server's socket, its append-only files) is its owner's alone (and the
# session's random numbers as they were).
private_spawn <- function(start) {
  old <- Sys.umask("077")
  on.exit(Sys.umask(old), add = TRUE)
  preserve_seed(start())
}

# The URL of the server named by a host, a port and a password (doRedis'
# and BiocParallel's arguments).
server_url <- function(host, port, password = NULL, db = 0) {
  auth <- if (is.null(password)) "" else paste0(":", utils::URLencode(password, reserved = TRUE), "@")
  sprintf("redis://%s%s:%d/%d", auth, host, as.integer(port), as.integer(db))
}

server_missing <- function() {
  redq_abort("server",
    paste("no Redis server found: set REDIS_URL to a server's URL,",
          "or install redis-server (Debian/Ubuntu: apt install redis-server)",
          "so redq can start your own"))
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
  if (session_server_stop()) return(invisible(TRUE))
  f <- user_server_files()
  state <- user_server_state(f)
  if (is.null(state) || !server_answers(state$url)) return(invisible(FALSE))
  # SHUTDOWN writes the append-only file and ends the server
  try(rs_controller_command(rs_check(rs_controller_open(state$url, "default", state$secret)),
                            "SHUTDOWN"), silent = TRUE)
  unlink(f$state)
  invisible(TRUE)
}

# Stop this session's private server, if it has one.
session_server_stop <- function() {
  srv <- redq_env$server
  redq_env$server <- NULL
  if (is.null(srv)) return(FALSE)
  server_kill(srv)
  TRUE
}

# A free port on 127.0.0.1, chosen by the operating system, so that no
# random number is drawn from R's generator.
free_port <- function() rs_check(rs_server_free_port())

# Start a private redis-server for this session (a Unix socket in its own
# 0700 directory, a password, a secret), owned by the session: supervised
# by processx (it dies with the R process, even on a crash) and killed by
# a finalizer at exit.
server_start <- function() {
  bin <- Sys.which("redis-server")
  if (!nzchar(bin)) server_missing()
  srv <- server_launch(bin, socket = TRUE)
  srv$secret <- secure_token()
  redq_env$server <- srv
  srv
}

# `conf`: lines of a configuration file to start from (a sentinel's), `args`:
# more options; a node of a cluster or a sentinel is ready when it answers
# PING, a plain server when redq can open a controller on it. `password`:
# what clients must give (NULL for none: a sentinel); it goes in the
# configuration file, never on the command line. `socket`: listen on a
# Unix socket in the server's own 0700 directory instead of a port.
server_launch <- function(bin = Sys.which("redis-server"), port = NULL, tries = 3L,
                          args = character(), conf = NULL, password = secure_token(16),
                          socket = FALSE) {
  for (attempt in seq_len(tries)) {
    dir <- tempfile("redq-redis-")
    dir.create(dir, mode = "0700")
    Sys.chmod(dir, "0700", use_umask = FALSE)
    sock <- if (socket) file.path(dir, "redis.sock")
    p <- if (socket) 0L else if (is.null(port)) free_port() else port
    lines <- c(conf, if (!is.null(password)) c(sprintf("requirepass %s", password),
                                                 sprintf("masterauth %s", password)),
               if (socket) c(sprintf("unixsocket %s", sock), "unixsocketperm 700"))
    file <- file.path(dir, "redis.conf")
    private_write(lines, file)
    argv <- c(file, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", "", args)
    proc <- private_spawn(function() {
      processx::process$new(bin, argv, stdout = NULL, stderr = file.path(dir, "stderr"),
                            supervise = TRUE, cleanup = TRUE)
    })
    auth <- if (is.null(password)) "" else sprintf(":%s@", password)
    url <- if (socket) sprintf("unix://%s?pass=%s", sock, password) else
      sprintf("redis://%s127.0.0.1:%d/0", auth, p)
    ready <- if (length(args) || !is.null(conf)) function(url) node_answers(p, password) else server_answers
    deadline <- Sys.time() + 10
    while (proc$is_alive() && Sys.time() < deadline) {
      if (ready(url)) {
        srv <- new.env(parent = emptyenv())
        srv$process <- proc
        srv$bin <- bin
        srv$argv <- argv
        srv$url <- url
        srv$port <- p
        srv$password <- password
        srv$socket <- sock
        srv$dir <- dir
        if (!socket) redq_env$node_passwords[[as.character(p)]] <- password
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

# The password reaches redis-cli through its environment (REDISCLI_AUTH),
# never its command line; by default, the one the server launched on
# `port` by this session requires.
redis_cli <- function(port, password, args, timeout) {
  password <- password %||% redq_env$node_passwords[[as.character(port)]]
  env <- c("current", REDISCLI_AUTH = password %||% "")
  preserve_seed(processx::run("redis-cli", c("-p", port, "--no-auth-warning", args),
                             timeout = timeout, error_on_status = FALSE, env = env))
}

# A node answers PING (a cluster node without slots or a sentinel, which
# redq does not use directly).
node_answers <- function(port, password = NULL) {
  out <- tryCatch(redis_cli(port, password, "PING", 5), error = function(e) NULL)
  !is.null(out) && identical(trimws(out$stdout), "PONG")
}

# redis-cli's answer to `args` from the node at `port` (with `password`,
# the nodes' and masters' password, if it has one), as lines.
node_command <- function(port, ..., password = NULL) {
  out <- redis_cli(port, password, c(...), 30)
  strsplit(trimws(out$stdout), "\r?\n")[[1]]
}

# A Redis Cluster of `masters` masters with `replicas` replicas each, on
# loopback ports (test suites and the chaos soak): an environment with
# `url` (redis+cluster://), `nodes` (servers as server_launch() returns).
cluster_launch <- function(masters = 3L, replicas = 1L) {
  opts <- c("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000")
  # one password for all nodes: replicas authenticate to their masters
  # with it (masterauth)
  password <- secure_token(16)
  nodes <- lapply(seq_len(masters * (1L + replicas)), function(i) {
    server_launch(args = opts, password = password)
  })
  cl <- new.env(parent = emptyenv())
  cl$nodes <- nodes
  cl$password <- password
  hosts <- vapply(nodes, function(s) sprintf("127.0.0.1:%d", s$port), "")
  out <- redis_cli(nodes[[1]]$port, password, c("--cluster", "create", hosts, "--cluster-replicas",
                                                replicas, "--cluster-yes"), 60)
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
  cl$url <- sprintf("redis+cluster://:%s@%s", password, paste(hosts, collapse = ","))
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
  password <- secure_token(16)
  master <- server_launch(args = ha, password = password)
  replica <- server_launch(args = c("--replicaof", "127.0.0.1", master$port, ha), password = password)
  # the sentinels give out addresses only, and ask for no password (redq
  # reaches them without one); they need the master's
  conf <- c(sprintf("sentinel monitor %s 127.0.0.1 %d 2", name, master$port),
            sprintf("sentinel auth-pass %s %s", name, password),
            sprintf("sentinel down-after-milliseconds %s 1000", name),
            sprintf("sentinel failover-timeout %s 10000", name))
  sentinels <- lapply(1:3, function(i) server_launch(conf = conf, args = "--sentinel", password = NULL))
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
  st$password <- password
  st$url <- sprintf("redis+sentinel://:%s@%s/%s", password, paste(hosts, collapse = ","), name)
  st
}

# Kill a server launched by server_launch() (SIGKILL: what it has not
# written to its append-only file is lost) and start it again on the same
# port and directory; returns when it answers.
server_restart <- function(srv, down = 0) {
  srv$process$kill()
  Sys.sleep(down)
  srv$process <- private_spawn(function() {
    processx::process$new(srv$bin, srv$argv, stdout = NULL, stderr = file.path(srv$dir, "stderr"),
                          supervise = TRUE, cleanup = TRUE)
  })
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
