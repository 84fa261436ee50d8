# Argument checks. Numbers are checked by the Rust core, which holds the
# bounds (so that a value refused here is refused the same way when it
# reaches a binding directly); R checks only types and shapes.

# An offload directory and threshold (rrq's offload_path): NULL if none.
check_offload <- function(path, threshold) {
  if (is.null(path)) return(NULL)
  check_string(path, "offload_path")
  if (!dir.exists(path)) {
    redq_abort("argument", sprintf("offload_path '%s' is not a directory: create it (on a file system the workers share)", path),
               call = sys.call(-1))
  }
  if (!is.numeric(threshold) || length(threshold) != 1L || is.na(threshold) || threshold < 0) {
    redq_abort("argument", "'offload_threshold' must be a number of bytes (>= 0)", call = sys.call(-1))
  }
  list(path = normalizePath(path), threshold = as.numeric(threshold))
}

check_string <- function(x, name, null_ok = FALSE) {
  if (null_ok && is.null(x)) {
    return(invisible(x))
  }
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    redq_abort("argument", sprintf("'%s' must be a single non-empty string", name),
               call = sys.call(-1))
  }
  invisible(x)
}

check_ids <- function(ids) {
  if (inherits(ids, "redq_workers")) ids <- ids$id
  if (!is.character(ids) || anyNA(ids)) {
    redq_abort("argument", "task ids must be a character vector without NA (as returned by task_create_expr())",
               call = sys.call(-1))
  }
  unname(ids)
}

# A number of seconds: Inf (or NULL, with none_ok) for none; zero only
# with zero_ok. Returns it as a number.
check_seconds <- function(x, name, none_ok = FALSE, zero_ok = TRUE) {
  if (is.null(x) && none_ok) {
    return(Inf)
  }
  rs_check(rs_arg_seconds(x, name, none_ok, zero_ok), call = sys.call(-1))
}

# A heartbeat period and lease (both already checked) that fit together.
check_lease <- function(heartbeat, lease) {
  rs_check(rs_arg_lease(heartbeat, lease), call = sys.call(-1))
}

# The default `name`, as the core spells it (protocol.rs, DEFAULTS).
redq_default <- function(name) redq_defaults()[[name]]

# All of them, as a list read once from the core.
redq_defaults <- function() redq_env$defaults %||% (redq_env$defaults <- as.list(rs_arg_defaults()))

# Option redq.<name>, else the default (read on every wait: kept cheap).
redq_option <- function(name) {
  v <- getOption(paste0("redq.", name))
  if (is.null(v)) redq_default(name) else v
}

# A worker's heartbeat period and lease, checked and fitting together:
# given, else the options', else the defaults; a lease not given is at
# least three heartbeats.
worker_timing <- function(heartbeat = NULL, lease = NULL) {
  heartbeat <- check_seconds(heartbeat %||% redq_option("heartbeat"), "heartbeat", zero_ok = FALSE)
  lease <- check_seconds(lease %||% max(redq_option("lease"), 3 * heartbeat), "lease", zero_ok = FALSE)
  check_lease(heartbeat, lease)
  list(heartbeat = heartbeat, lease = lease)
}

# A whole number from 1 up to the core's limit for `name`: Inf for no
# limit with none_ok. Returns it as a number.
check_count <- function(x, name, none_ok = FALSE) {
  rs_check(rs_arg_count(x, name, none_ok), call = sys.call(-1))
}
