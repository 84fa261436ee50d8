# Secrets and private files. Every secret (a server's password, the
# dashboard's token, the key that seals what R unserializes) comes from the
# operating system's generator through the core, never from R's: sample()
# is predictable after set.seed() and guessable from R's time-based seed,
# and drawing from it would change the user's random numbers.

# A new secret of `bytes` random bytes, as hexadecimal digits.
secure_token <- function(bytes = 32) rs_check(rs_secret_new(bytes))

# The secret that seals what a controller or worker on `url` writes and
# opens what it reads: REDQ_SECRET if set, else the secret of the embedded
# server at `url` (this session's, or the user's own), else none (NULL).
url_secret <- function(url) {
  env <- Sys.getenv("REDQ_SECRET")
  if (nzchar(env)) return(env)
  srv <- redq_env$server
  if (!is.null(srv) && identical(srv$url, url)) return(srv$secret)
  # the user's own server listens on a socket (or, rarely, on the port
  # this session found it on); other servers need no look at its state
  # file, which would load the tools package into every worker
  if (!startsWith(url, "unix://") && !identical(url, redq_env$user_url)) return(NULL)
  state <- user_server_state()
  if (!is.null(state) && identical(state$url, url)) return(state$secret)
  NULL
}

# A directory only its owner can use: created with mode 0700 whatever the
# umask, or, if it exists, made 0700 when it is ours and looser; one owned
# by someone else (or a symbolic link) is refused, since they could read
# or replace what redq keeps there.
private_dir <- function(path) {
  if (!dir.exists(path)) {
    dir.create(path, recursive = TRUE, showWarnings = FALSE, mode = "0700")
    if (!dir.exists(path)) {
      redq_abort("system", sprintf("cannot create the directory %s: check its parent's permissions", path))
    }
  }
  info <- file.info(path, extra_cols = TRUE)
  link <- nzchar(Sys.readlink(path))
  if (link || !identical(as.integer(info$uid), user_id())) {
    redq_abort("system", sprintf(paste(
      "%s is %s, not a directory of yours: redq keeps secrets there and will not use it;",
      "remove it, or set R_USER_CACHE_DIR / R_USER_DATA_DIR to a directory of yours"),
      path, if (link) "a symbolic link" else sprintf("owned by user id %s", info$uid)))
  }
  if ((as.integer(info$mode) %% 64L) != 0L) {
    # group or others had access: take it away, for this folder and what
    # it holds (a file made before is no longer reachable through it)
    Sys.chmod(path, "0700", use_umask = FALSE)
    if ((as.integer(file.info(path)$mode) %% 64L) != 0L) {
      redq_abort("system", sprintf("cannot make %s private (mode 0700): change its mode yourself", path))
    }
  }
  invisible(path)
}

# Write lines to a file only its owner can read, whatever the umask: a
# temporary file made 0600 before anything is written, then renamed into
# place.
private_write <- function(lines, path) {
  tmp <- paste0(path, ".", Sys.getpid(), ".tmp")
  old <- Sys.umask("077")
  on.exit(Sys.umask(old), add = TRUE)
  con <- file(tmp, "w")
  Sys.chmod(tmp, "0600", use_umask = FALSE)
  writeLines(lines, con)
  close(con)
  if (!file.rename(tmp, path)) {
    unlink(tmp)
    redq_abort("system", sprintf("cannot write %s", path))
  }
  invisible(path)
}

# Evaluate `expr` and leave the session's random number generator as it
# was: processx draws from it when it starts a process, and no redq call
# may change the user's random numbers.
preserve_seed <- function(expr) {
  genv <- globalenv()
  had <- exists(".Random.seed", envir = genv, inherits = FALSE)
  old <- if (had) get(".Random.seed", envir = genv, inherits = FALSE)
  on.exit(if (had) assign(".Random.seed", old, envir = genv) else
    if (exists(".Random.seed", envir = genv, inherits = FALSE)) rm(".Random.seed", envir = genv))
  expr
}

# This process's user id.
user_id <- function() as.integer(file.info(tempdir(), extra_cols = TRUE)$uid)
