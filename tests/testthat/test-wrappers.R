# The R side of the boundary cannot drift from the Rust side: the wrappers
# are generated from the bindings, and R spells no protocol word.

test_that("R/extendr-wrappers.R is what the installed bindings generate", {
  root <- normalizePath(file.path(testthat::test_path(), "..", ".."))
  source(file.path(root, "tools", "wrappers.R"), local = TRUE)
  current <- readLines(file.path(root, "R", "extendr-wrappers.R"))
  expect_identical(current, redq_wrappers_text(),
                   info = "a binding changed: run `make wrappers`")
  # and every wrapper in the package namespace calls a registered routine
  ns <- asNamespace("redq")
  wrappers <- sub(" <- .*", "", grep("^rs_", current, value = TRUE))
  expect_gt(length(wrappers), 40)
  for (w in wrappers) {
    routine <- paste0("wrap__", w)
    expect_true(exists(routine, envir = ns, inherits = FALSE), info = routine)
  }
})

test_that("no R file spells a status word, TTL or key", {
  root <- normalizePath(file.path(testthat::test_path(), "..", ".."))
  files <- setdiff(list.files(file.path(root, "R"), "[.]R$", full.names = TRUE),
                   file.path(root, "R", "extendr-wrappers.R"))
  expect_gt(length(files), 10)
  words <- c("DEFERRED", "PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELLED", "TIMEOUT",
             "DIED", "IMPOSSIBLE", "MISSING", "IDLE", "BUSY", "EXITED", "LOST", "KILLED",
             "STUCK", "RECONNECTED", "RETRY", "STOP", "KILL", "CANCEL", "WAKE")
  word_re <- sprintf("\\b(%s)\\b", paste(words, collapse = "|"))
  nouns <- "(task|queue|worker|job|jobs|payloads|events|tasks|workers|queues|version|data|alive|running|control|done|env|dependents)"
  key_re <- sprintf("redq:\\{|\\}:|(^|:)%s:\\S|\\S:%s(:|$)", nouns, nouns)
  ttl <- c(86400, 604800, 86400000, 3600000)
  found <- character()
  for (f in files) {
    tokens <- utils::getParseData(parse(f, keep.source = TRUE))
    strings <- tokens$text[tokens$token == "STR_CONST"]
    values <- vapply(strings, function(s) eval(parse(text = s)), "")
    bad <- values[grepl(word_re, values) | grepl(key_re, values)]
    nums <- suppressWarnings(as.numeric(tokens$text[tokens$token == "NUM_CONST"]))
    bad <- c(bad, as.character(nums[nums %in% ttl]))
    if (length(bad)) found <- c(found, paste0(basename(f), ": ", bad))
  }
  expect_identical(found, character())
  # no default of the core's spelled again: options fall back on
  # redq_default() (protocol.rs, DEFAULTS)
  spelled <- character()
  for (f in files) {
    code <- readLines(f, warn = FALSE)
    code <- code[!grepl("^\\s*#", code)]
    hits <- grep('getOption\\("redq\\.[a-z_]+", *[0-9]|env\\("REDQ_(HEARTBEAT|LEASE)", *[0-9]', code, value = TRUE)
    if (length(hits)) spelled <- c(spelled, paste0(basename(f), ": ", trimws(hits)))
  }
  expect_identical(spelled, character())
  expect_equal(redq:::redq_default("lease"), 5)
  # the check finds what it looks for
  probe <- tempfile(fileext = ".R")
  withr::defer(unlink(probe))
  writeLines(c('x <- "PENDING"', 'k <- paste0("redq:{", ns, "}:task:", id)', "ttl <- 86400"), probe)
  tokens <- utils::getParseData(parse(probe, keep.source = TRUE))
  strings <- vapply(tokens$text[tokens$token == "STR_CONST"], function(s) eval(parse(text = s)), "")
  expect_true(any(grepl(word_re, strings)))
  expect_true(any(grepl(key_re, strings)))
})

# The calls of `rs_*` bindings in R file `f`: list(name, checked), where
# checked says the call sits directly inside rs_check() or rs_flag() (or try(), whose
# caller wants no error).
binding_calls <- function(f) {
  pd <- utils::getParseData(parse(f, keep.source = TRUE))
  calls <- pd[pd$token == "SYMBOL_FUNCTION_CALL" & grepl("^rs_", pd$text) &
                !pd$text %in% c("rs_check", "rs_flag"), ]
  expr_of <- function(id) pd$parent[pd$id == id]
  checked <- vapply(calls$id, function(id) {
    call_expr <- expr_of(expr_of(id)) # the symbol's expr, then the call's expr
    outer <- expr_of(call_expr)
    if (!length(outer)) return(FALSE)
    head <- pd[pd$parent == outer & pd$token == "expr", ]
    fn <- pd[pd$parent %in% head$id[1] & pd$token == "SYMBOL_FUNCTION_CALL", "text"]
    length(fn) == 1L && fn %in% c("rs_check", "rs_flag", "try")
  }, NA)
  list(name = calls$text, checked = checked)
}

# The two faces, and the files that own a noun of the core (not front ends).
FACES <- c("job.R", "worker_face.R")
OWNERS <- c("arg.R", "controller.R", "dashboard.R", "error.R", "payload.R", "queue.R", "secret.R",
            "server.R", "task.R", "task_view.R", "worker.R", "worker_message.R")
# Bindings that cannot fail (constants, pure functions of their argument),
# and those whose error value a caller reads before checking it.
INFALLIBLE <- c("rs_task_status_words", "rs_task_terminal_words", "rs_big_value", "rs_object_address",
                "rs_arg_defaults",
                "rs_private_queue", "rs_error_status", "rs_controller_address", "rs_job_id")
CHECKED_LATER <- c("rs_job_wait", "rs_task_wait", "rs_worker_end", "rs_worker_end_value",
                   "rs_controller_open")

test_that("front ends call the core only through the faces, and every call is checked", {
  root <- normalizePath(file.path(testthat::test_path(), "..", ".."))
  files <- setdiff(list.files(file.path(root, "R"), "[.]R$"), "extendr-wrappers.R")
  outside <- character()
  unchecked <- character()
  for (f in files) {
    b <- binding_calls(file.path(root, "R", f))
    if (length(b$name) && !f %in% c(FACES, OWNERS)) {
      outside <- c(outside, paste0(f, ": ", unique(b$name)))
    }
    bad <- b$name[!b$checked & !b$name %in% c(INFALLIBLE, CHECKED_LATER)]
    if (length(bad)) unchecked <- c(unchecked, paste0(f, ": ", unique(bad)))
  }
  expect_identical(outside, character(), info = "a front end calls a binding: go through a face")
  expect_identical(unchecked, character(), info = "wrap the call in rs_check()")
  # the check finds what it looks for
  probe <- tempfile(fileext = ".R")
  withr::defer(unlink(probe))
  writeLines(c("f <- function(w) {", "  rs_worker_id(w)", "  rs_check(rs_worker_step(w, 1, 0))", "}"),
             probe)
  b <- binding_calls(probe)
  expect_identical(b$name, c("rs_worker_id", "rs_worker_step"))
  expect_identical(unname(b$checked), c(FALSE, TRUE))
})

test_that("a new kind of payload runs on workers by registration alone", {
  ctl <- test_controller()
  # the worker loop evaluates payloads by their kind; a front end of a test
  # registers its own, in the workers, through their set-up
  worker_envir_set(init = function() {
    redq:::worker_kind("shout", function(p, task, w, state) toupper(p$text))
  })
  worker_spawn(1)
  payload <- redq:::serialize_fast(list(type = "shout", text = "hello"))
  job <- redq:::job_open(ctl)
  withr::defer(redq:::job_remove(job))
  id <- redq:::job_submit(job, "default", list(payload))
  r <- redq:::job_wait(job, n = 0, timeout = 20)
  expect_equal(redq:::job_value(r, 1), "HELLO")
  # a kind no worker knows ends its task ERROR, saying so
  id <- redq:::job_submit(job, "default", list(redq:::serialize_fast(list(type = "whisper"))))
  r <- redq:::job_wait(job, n = 0, timeout = 20)
  expect_match(conditionMessage(redq:::job_value(r, 1)), "unknown task payload type 'whisper'")
})
