# Timing, recording and reporting helpers shared by the bench case files.
#
# Every measurement is recorded as one row: a case, a system (redq or a
# baseline), the values of its repetitions and a unit. Rows of the same
# `group` can be compared: a redq row's ratio columns are its median divided
# by the median of the group's baseline rows (doParallel FORK, PSOCK,
# sequential %do%), all measured in the same run.

bench <- new.env(parent = emptyenv())
bench$rows <- list()
bench$notes <- character()
bench$failures <- character()
bench$clusters <- list() # parallel clusters to stop on exit
bench$started <- Sys.time()

# Wall clock in seconds with sub-millisecond resolution (proc.time() only
# has milliseconds, too coarse for single round trips).
now <- function() as.numeric(Sys.time())

elapsed <- function(expr) {
  t0 <- now()
  force(expr)
  now() - t0
}

progress <- function(...) {
  t <- as.numeric(difftime(Sys.time(), bench$started, units = "secs"))
  message(sprintf("[bench %6.1fs] %s", t, paste0(...)))
}

note <- function(...) {
  bench$notes <- unique(c(bench$notes, paste0(...)))
}

# Repetition count: `full` normally, `quick` in quick mode.
reps <- function(full, quick = 1L) if (isTRUE(bench$quick)) quick else full

# Record one measurement.
#   group:    rows comparable with each other (NULL: none)
#   baseline: for baseline rows, the ratio column they feed ("mc", "fork", "psock", "seq")
#   target:   list(label = "...", ok = function(median, ratios) logical) or NULL
record <- function(case, system, values, unit, group = NULL, baseline = NULL,
                   target = NULL) {
  values <- as.numeric(values)
  bench$rows[[length(bench$rows) + 1L]] <- list(
    case = case, system = system, values = values, unit = unit, group = group,
    baseline = baseline, target = target)
  progress(sprintf("  %-34s %-18s median %s %s (n=%d)", case, system,
                   fmt_num(stats::median(values)), unit, length(values)))
  invisible(values)
}

# Target helpers: a bound on the median, or on a ratio to a baseline.
target_at_least <- function(x, unit) {
  list(label = sprintf(">= %s %s", fmt_bound(x), unit), ok = function(m, r) m >= x)
}
target_at_most <- function(x, unit) {
  list(label = sprintf("<= %s %s", fmt_bound(x), unit), ok = function(m, r) m <= x)
}
target_ratio <- function(x, baseline) {
  list(label = sprintf("<= %gx %s", x, baseline),
       ok = function(m, r) !is.na(r[[baseline]]) && r[[baseline]] <= x)
}

# Within a fraction of another redq row of the same run (by case name):
# at least (1 - frac) of its median when higher is better, else at most
# (1 + frac) of it.
target_within <- function(case, frac, higher_better) {
  list(label = sprintf("within %g%% of '%s'", 100 * frac, case), ok = function(m, r) {
    base <- NA_real_
    for (row in bench$rows) {
      if (identical(row$case, case) && identical(row$system, "redq")) base <- stats::median(row$values)
    }
    !is.na(base) && if (higher_better) m >= base * (1 - frac) else m <= base * (1 + frac)
  })
}

# Three significant digits (trailing zeros kept, so columns line up by
# eye), whole numbers with thousands separators from 100 up.
fmt_num <- function(x) {
  if (length(x) == 0L || is.na(x)) return("NA")
  if (abs(x) >= 100) return(formatC(round(x), format = "d", big.mark = ","))
  formatC(signif(x, 3), format = "fg", digits = 3, flag = "#")
}
fmt_bound <- function(x) prettyNum(x, big.mark = ",")

# VmRSS / VmHWM of a process in MB (Linux only; NA elsewhere).
proc_status_mb <- function(pid = Sys.getpid(), field = "VmRSS") {
  f <- sprintf("/proc/%s/status", pid)
  if (!file.exists(f)) return(NA_real_)
  line <- grep(paste0("^", field, ":"), readLines(f, warn = FALSE), value = TRUE)
  if (length(line) == 0L) return(NA_real_)
  as.numeric(gsub("[^0-9]", "", line)) / 1024 # kB -> MB
}

# Reset the kernel's peak-RSS counter (VmHWM) of this process, so that a
# later VmHWM reading is the peak of one case, not of the whole run.
reset_peak_rss <- function() {
  invisible(tryCatch({
    writeLines("5", "/proc/self/clear_refs")
    TRUE
  }, error = function(e) FALSE, warning = function(w) FALSE))
}

# Redis used_memory in bytes, from INFO memory.
redis_used_memory <- function(controller = NULL) {
  info <- redq:::redis_command(c("INFO", "memory"), controller = controller)
  line <- regmatches(info, regexpr("used_memory:[0-9]+", info))
  as.numeric(sub("used_memory:", "", line, fixed = TRUE))
}

# Run a case function, recording (not propagating) its error so that the
# other cases still run; the error is reported at the end.
run_case <- function(name, fn, ...) {
  progress("case ", name)
  t0 <- now()
  tryCatch(fn(...), error = function(e) {
    msg <- sprintf("%s: %s", name, conditionMessage(e))
    bench$failures <- c(bench$failures, msg)
    progress("FAILED ", msg)
  })
  progress(sprintf("case %s done in %.1f s", name, now() - t0))
}

# Stop clusters and every worker process this session started. Worker
# processes are kept by redq in its own registry; killing them by handle
# (never by name) only touches what this session spawned.
cleanup_processes <- function() {
  for (cl in bench$clusters) try(parallel::stopCluster(cl), silent = TRUE)
  bench$clusters <- list()
  procs <- redq:::redq_env$processes
  for (p in procs) {
    if (inherits(p, "process") && p$is_alive()) try(p$kill(), silent = TRUE)
  }
}

# The results table: one row per measurement, ratio columns per baseline.
results_table <- function() {
  rows <- bench$rows
  base <- list()
  for (r in rows) {
    if (!is.null(r$baseline) && !is.null(r$group)) {
      base[[paste(r$group, r$baseline)]] <- stats::median(r$values)
    }
  }
  kinds <- c("mc", "fork", "psock", "seq")
  out <- lapply(rows, function(r) {
    m <- stats::median(r$values)
    ratios <- stats::setNames(lapply(kinds, function(k) {
      if (!is.null(r$baseline) || is.null(r$group)) return(NA_real_)
      b <- base[[paste(r$group, k)]]
      if (is.null(b)) NA_real_ else m / b
    }), kinds)
    ok <- if (is.null(r$target)) "" else if (isTRUE(r$target$ok(m, ratios))) "yes" else "NO"
    data.frame(
      case = r$case, system = r$system,
      min = fmt_num(min(r$values)), median = fmt_num(m), max = fmt_num(max(r$values)),
      unit = r$unit, n = length(r$values),
      x_mc = fmt_ratio(ratios$mc), x_fork = fmt_ratio(ratios$fork), x_psock = fmt_ratio(ratios$psock),
      x_seq = fmt_ratio(ratios$seq),
      target = if (is.null(r$target)) "" else r$target$label, met = ok,
      stringsAsFactors = FALSE)
  })
  do.call(rbind, out)
}

fmt_ratio <- function(x) if (is.na(x)) "" else sprintf("%.2f", x)

print_results <- function() {
  tab <- results_table()
  cat("\nredq benchmarks", if (isTRUE(bench$quick)) "(quick mode)" else "", "\n")
  cat(sprintf("R %s, %d cores, %s\n", getRversion(), parallel::detectCores(),
              format(Sys.time(), "%Y-%m-%d %H:%M")))
  cat("x_mc / x_fork / x_psock / x_seq = redq median / median of the row group's baseline:",
      "for foreach, doParallel with registerDoParallel(cores = 2) (mclapply), doParallel FORK",
      "and PSOCK clusters and sequential %do%; for future, plan(multicore), plan(multisession)",
      "and plan(sequential); for parallel, FORK and PSOCK clusters; for BiocParallel,",
      "MulticoreParam and SnowParam (same work, same run, 2 workers; > 1 means redq is slower).\n\n")
  if (!is.null(tab)) {
    old <- options(width = 250)
    on.exit(options(old))
    print(tab, row.names = FALSE, right = FALSE)
  }
  if (length(bench$notes)) {
    cat("\nNotes:\n")
    cat(paste0("  - ", bench$notes, "\n"), sep = "")
  }
  if (length(bench$failures)) {
    cat("\nFAILED cases:\n")
    cat(paste0("  - ", bench$failures, "\n"), sep = "")
  }
  cat(sprintf("\nTotal time %.1f s\n\n",
              as.numeric(difftime(Sys.time(), bench$started, units = "secs"))))
  invisible(tab)
}
