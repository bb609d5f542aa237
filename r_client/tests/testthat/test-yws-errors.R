# One error constructor (issue 15): every error the package raises comes from yws_abort(),
# under yws_error; HTTP error answers have the middle class yws_http.

test_that("yws_abort() adds yws_error under the given classes and interpolates the caller's", {
  f <- function(x) yws_abort("{.arg x} is {x}.", class = "yws_input_error", value = x)
  err <- expect_error(f(3), class = "yws_input_error")
  expect_identical(class(err),
                   c("yws_input_error", "yws_error", "rlang_error", "error", "condition"))
  expect_match(conditionMessage(err), "`x` is 3.", fixed = TRUE)
  expect_identical(err$value, 3)
  expect_identical(err$call, quote(f(3)))
  expect_null(expect_error(yws_abort("no call", call = NULL), class = "yws_error")$call)
})

test_that("an HTTP error answer is yws_http_<status> < yws_http < yws_error", {
  skip_if_not_installed("webfakes")
  fake <- fake_api(list(route("get", "/api/2.2/jobs/get", function(req, res) {
    res$set_status(404)$send_json(list(error_code = "RESOURCE_DOES_NOT_EXIST",
                                       message = "Job 7 does not exist."), auto_unbox = TRUE)
  })))
  with_fake_env(fake)
  err <- expect_error(yws_perform(yws_request("/api/2.2/jobs/get")), class = "yws_http")
  expect_identical(class(err), c("yws_http_404", "yws_http", "yws_error", "rlang_error",
                                 "error", "condition"))
  expect_identical(err$status, 404L)
  expect_identical(err$error_code, "RESOURCE_DOES_NOT_EXIST")
  expect_match(conditionMessage(err), "Job 7 does not exist.", fixed = TRUE)
})

test_that("no function of the package raises an error other than through yws_abort()", {
  ns <- asNamespace("yws")
  raisers <- Filter(function(name) {
    f <- get(name, envir = ns)
    if (!is.function(f) || identical(name, "yws_abort")) return(FALSE)
    code <- paste(deparse(f), collapse = "\n")
    # stop(e) re-signals a condition that was caught; anything else must be yws_abort()
    grepl("cli_abort|(?<![A-Za-z_])abort\\(|stop\\((?!e\\))", code, perl = TRUE)
  }, ls(ns, all.names = TRUE))
  expect_identical(raisers, character())
})
