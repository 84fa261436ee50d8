# Run the testthat suite against the installed package and write
# "<passed> <failed>" (counted per test) to the file named by the second
# argument.
args <- commandArgs(trailingOnly = TRUE)
library(testthat)
res <- testthat::test_dir(args[[1]], package = "redq", load_package = "installed",
                          reporter = testthat::ProgressReporter$new(show_praise = FALSE),
                          stop_on_failure = FALSE, stop_on_warning = FALSE)
df <- as.data.frame(res)
bad <- df$failed > 0 | df$error | df$skipped
failed <- sum(bad)
passed <- sum(!bad)
# The reporter prints a failure where it happens; repeat each at the end so
# that the last lines of a long run say which test failed and why.
for (t in unclass(res)) {
  for (e in t$results) {
    if (inherits(e, c("expectation_failure", "expectation_error"))) {
      cat(sprintf("\nFAILED %s: %s\n%s\n", t$file, t$test, conditionMessage(e)))
    }
  }
}
if (any(df$skipped)) {
  cat("Skipped tests count as failures here:\n")
  print(df[df$skipped, c("file", "test")])
}
writeLines(sprintf("%d %d", passed, failed), args[[2]])
