library(testthat)
library(redq)

test_check("redq")
