# Payloads, as every front end builds them: R serializations (native byte
# order), small ones inline and large ones streamed by the core to their
# chunks; the common part of a bulk submission stored once; random number
# streams for tasks created with a seed.

# The payloads of a bulk submission whose `n` rows share `common` (captured
# variables, common arguments): over option redq.shared_threshold bytes,
# `common` is stored once, as an object each payload names by its address
# (`make(i, address)`); else each payload carries it (`make(i, NULL)`).
# Returns list(payloads, shared: the serialized object or NULL).
bulk_payloads <- function(common, n, make) {
  shared <- if (length(common) && n > 1L) serialize_fast(common)
  if (is.null(shared) || length(shared) <= redq_option("shared_threshold")) {
    return(list(payloads = lapply(seq_len(n), make, address = NULL), shared = NULL))
  }
  address <- rs_object_address(shared)
  list(payloads = lapply(seq_len(n), make, address = address), shared = shared)
}

# A function written inside another function carries that function's
# variables into every task: say so when that makes the payloads large.
warn_closure <- function(fn, payloads) {
  env <- environment(fn)
  local <- !is.null(env) && !identical(env, globalenv()) && !identical(env, baseenv()) &&
    !isNamespace(env)
  size <- if (length(payloads) > 1L) length(payloads[[1]]) else 0
  if (local && size > redq_option("shared_threshold")) {
    warning(structure(class = c("redq_warning_large_closure", "warning", "condition"), list(
      message = sprintf(paste(
        "each of the %d tasks carries %s: 'fn' was defined inside a function and takes that",
        "function's variables along; define it at top level, or pass large data in 'args'",
        "(stored once)"), length(payloads), format(structure(size, class = "object_size"), units = "auto")),
      call = sys.call(-1))))
  }
  invisible()
}

check_fn <- function(fn) {
  if (!is.function(fn)) {
    redq_abort("argument",
               sprintf("'fn' must be a function, not %s; pass the function itself, e.g. fn = sqrt",
                       class(fn)[1]), call = sys.call(-1))
  }
}

data_rows <- function(data) {
  if (is.data.frame(data)) {
    if (nrow(data) == 0L) {
      return(list())
    }
    return(lapply(seq_len(nrow(data)), function(i) as.list(data[i, , drop = FALSE])))
  }
  if (is.list(data) || is.atomic(data)) {
    return(lapply(data, function(x) if (is.list(x)) x else list(x)))
  }
  redq_abort("argument", "'data' must be a data frame or a list", call = sys.call(-1))
}

# Values of the variables (and user functions) an expression uses, taken from
# envir and its parents up to the global environment; names that resolve in
# packages are left for the worker to find.
capture_vars <- function(expr, envir) {
  names <- all.names(expr)
  out <- list()
  for (nm in unique(names)) {
    e <- envir
    while (!identical(e, emptyenv())) {
      if (exists(nm, envir = e, inherits = FALSE)) {
        if (!isNamespace(e) && !identical(e, baseenv()) &&
            (identical(e, globalenv()) || !is_package_env(e))) {
          out[nm] <- list(get(nm, envir = e, inherits = FALSE))
        }
        break
      }
      if (identical(e, globalenv())) break
      e <- parent.env(e)
    }
  }
  out
}

is_package_env <- function(e) {
  startsWith(environmentName(e), "package:") || isNamespace(e)
}

serialize_fast <- function(x) serialize(x, NULL, xdr = FALSE)

task_payload_expr <- function(expr, vars, seed = NULL, stream = FALSE, controller = NULL,
                              shared = NULL) {
  payload_bytes(c(list(type = "expr", expr = expr, vars = vars), if (!is.null(seed)) list(seed = seed),
                  if (!is.null(shared)) list(shared = shared)), stream, controller)
}

task_payload_call <- function(fn, args, seed = NULL, shared = NULL, stream = FALSE,
                              controller = NULL) {
  payload_bytes(c(list(type = "call", fn = fn, args = args), if (!is.null(seed)) list(seed = seed),
                  if (!is.null(shared)) list(shared = shared)), stream, controller)
}

# The core's inline limit, in bytes: values over it are stored apart, in
# chunks (asked once).
big_value <- function() redq_env$big_value %||% (redq_env$big_value <- rs_big_value())

# Whether a value may serialize past the inline limit. Numbers, logicals
# and raw vectors shorter than a million cannot (8 bytes each at most), and
# are most results: they skip object.size(), which costs microseconds.
is_large <- function(x) {
  if (is.null(x) || (is.atomic(x) && !is.character(x) && length(x) < 1e6)) return(FALSE)
  utils::object.size(x) > big_value()
}

# A payload's bytes. With `stream`, a large one (a single task's: sizing
# every task of a bulk submission would cost more than it saves) is
# serialized by the core straight into chunks, and the bytes are the
# reference to them: no serialized copy of it is ever whole.
payload_bytes <- function(p, stream = FALSE, controller = NULL) {
  if (stream && is_large(p)) {
    return(rs_check(rs_controller_stream(get_controller(controller)$ptr, p)))
  }
  serialize_fast(p)
}

# L'Ecuyer-CMRG streams for n tasks: the i-th after `seed` (an integer for
# set.seed(), or a .Random.seed of L'Ecuyer-CMRG) for task i; a list of n
# NULLs without a seed.
seed_streams <- function(seed, n) {
  if (is.null(seed)) return(vector("list", n))
  rng_streams(lecuyer_seed(seed), 1, n)
}

# `n` consecutive streams, the first `first` streams after `seed` (as
# nextRNGStream() applied that many times), computed by the core, which
# gives a job's tasks their streams the same way.
rng_streams <- function(seed, first, n) rs_check(rs_rng_streams(seed, first, n))

# A .Random.seed of L'Ecuyer-CMRG: given, or made by set.seed(seed) (R's
# own mapping of a number to a state; the session's generator is left as
# it was).
lecuyer_seed <- function(seed) {
  if (is.numeric(seed) && length(seed) == 7L && isTRUE(seed[[1]] %% 10000 == 407)) {
    return(as.integer(seed))
  }
  if (!is.numeric(seed) || length(seed) != 1L || is.na(seed) || seed != round(seed)) {
    redq_abort("argument", paste("'seed' must be a whole number (as for set.seed()) or a",
                                 ".Random.seed of \"L'Ecuyer-CMRG\""), call = sys.call(-2))
  }
  genv <- globalenv()
  old <- if (exists(".Random.seed", genv, inherits = FALSE)) get(".Random.seed", genv)
  kind <- RNGkind()
  on.exit({
    RNGkind(kind[[1]], kind[[2]], kind[[3]])
    if (is.null(old)) rm(".Random.seed", envir = genv) else assign(".Random.seed", old, envir = genv)
  })
  RNGkind("L'Ecuyer-CMRG")
  set.seed(seed)
  get(".Random.seed", genv)
}
