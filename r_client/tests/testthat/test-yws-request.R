# The transport: a timeout on every request, fail fast on a refused connection, retries only
# for 429 and 503, settings errors that are settings errors (issue 14, items 2, 3, 5).

test_that("a server that accepts and never answers times out (item 2)", {
  skip_if_not_installed("webfakes")
  fake <- fake_api(list(route("get", "/api/2.2/jobs/list", function(req, res) {
    Sys.sleep(30)
    res$send_json(list(jobs = list()), auto_unbox = TRUE)
  })))
  with_fake_env(fake)
  withr::local_options(yws.http_timeout = 1)
  started <- Sys.time()
  err <- expect_error(yws_perform(yws_request("/api/2.2/jobs/list")),
                      class = "yws_http_timeout")
  expect_s3_class(err, "yws_timeout")
  expect_s3_class(err, "yws_error")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 5)
  expect_match(conditionMessage(err), "127.0.0.1", fixed = TRUE)
})

test_that("yws_score(timeout =) bounds the whole call, requests included (item 2)", {
  skip_if_not_installed("webfakes")
  fake <- fake_api(list(route("get", "/api/2.0/sql/warehouses/wh1", function(req, res) {
    Sys.sleep(30)
    res$send_json(list(id = "wh1"), auto_unbox = TRUE)
  })))
  with_fake_env(fake)
  started <- Sys.time()
  expect_error(yws_score(as_of = "2026-11-30", timeout = 1.5), class = "yws_timeout")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 5)
})

test_that("a refused connection fails at once, naming the host (item 3)", {
  skip_if_not_installed("webfakes")
  host <- paste0("http://127.0.0.1:", refused_port())
  started <- Sys.time()
  err <- expect_error(yws_perform(yws_request("/api/2.2/jobs/list", host = host,
                                              token = "t")),
                      class = "yws_connection_error")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 1.5)  # was ~25 s
  expect_equal(err$host, host)
  expect_match(conditionMessage(err), host, fixed = TRUE)
  started <- Sys.time()
  expect_error(yws_score(as_of = "2026-11-30", host = host, token = "t"),
               class = "yws_connection_error")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 3)
})

test_that("429 and 503 are retried, honouring Retry-After; other errors are not (item 3)", {
  skip_if_not_installed("webfakes")
  fake <- fake_api(list(
    route("get", "/busy", function(req, res) {
      n <- if (is.null(req$app$locals$busy)) 1 else req$app$locals$busy + 1
      req$app$locals$busy <- n
      if (n < 3) {
        res$set_status(if (n == 1) 429 else 503)$set_header("Retry-After", "0")
        res$send_json(list(error_code = "REQUEST_LIMIT_EXCEEDED", message = "slow down"),
                      auto_unbox = TRUE)
      } else {
        res$send_json(list(ok = TRUE), auto_unbox = TRUE)
      }
    }),
    route("get", "/broken", function(req, res) {
      res$set_status(500)$send_json(list(error_code = "INTERNAL_ERROR", message = "boom"),
                                    auto_unbox = TRUE)
    })))
  with_fake_env(fake)
  expect_equal(yws_perform(yws_request("/busy"))$ok, TRUE)
  expect_length(Filter(function(r) r$path == "/busy", requests(fake)), 3)
  expect_error(yws_perform(yws_request("/broken")), "boom", class = "yws_http_500")
  expect_length(Filter(function(r) r$path == "/broken", requests(fake)), 1)
})

test_that("no host or token is a yws_config_error from every entry point (item 5)", {
  skip_if_not_installed("withr")
  withr::local_envvar(DATABRICKS_HOST = NA, DATABRICKS_TOKEN = NA, YWS_WAREHOUSE_ID = NA,
                      DATABRICKS_CONFIG_FILE = tempfile())
  for (call in list(quote(yws_sql("SELECT 1")), quote(yws_predictions()),
                    quote(yws_score(as_of = "2026-11-30")), quote(yws_batches()),
                    quote(yws_run_job("yws_score")), quote(yws_wait(1)))) {
    err <- expect_error(eval(call), class = "yws_config_error")
    expect_match(conditionMessage(err), "DATABRICKS_HOST", fixed = TRUE)
    expect_false(inherits(err, "rlib_error_3_0"))
  }
  withr::local_envvar(DATABRICKS_HOST = "http://127.0.0.1:9")
  err <- expect_error(yws_sql("SELECT 1"), class = "yws_config_error")
  expect_match(conditionMessage(err), "DATABRICKS_TOKEN", fixed = TRUE)
})
