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
  # the check finds what it looks for
  probe <- tempfile(fileext = ".R")
  withr::defer(unlink(probe))
  writeLines(c('x <- "PENDING"', 'k <- paste0("redq:{", ns, "}:task:", id)', "ttl <- 86400"), probe)
  tokens <- utils::getParseData(parse(probe, keep.source = TRUE))
  strings <- vapply(tokens$text[tokens$token == "STR_CONST"], function(s) eval(parse(text = s)), "")
  expect_true(any(grepl(word_re, strings)))
  expect_true(any(grepl(key_re, strings)))
})
