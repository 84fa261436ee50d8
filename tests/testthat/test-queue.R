test_that("queue_length, queue_list and queue_remove", {
  ctl <- test_controller()
  ids <- task_create_bulk_expr(x, data.frame(x = 1:4), queue = "a")
  task_create_expr(1, queue = "b")
  expect_equal(queue_length("a"), 4)
  expect_equal(queue_length("b"), 1)
  expect_equal(queue_length(), 0)
  expect_equal(queue_list(), c("a", "b"))
  expect_equal(queue_remove("a"), 4)
  expect_equal(unname(task_status(ids)), rep("CANCELLED", 4))
  expect_equal(queue_list(), "b")
  expect_error(queue_length(1), class = "redq_error_argument")
})

test_that("bulk expressions need named values", {
  ctl <- test_controller()
  expect_error(task_create_bulk_expr(x + 1, as.list(1:3)), class = "redq_error_argument")
  expect_length(task_create_bulk_expr(x + 1, list(list(x = 1), list(x = 2))), 2)
})
