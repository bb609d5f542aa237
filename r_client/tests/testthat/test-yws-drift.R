# yws_drift(): the drift view read through the SQL Statement Execution API (a webfakes server).

drift_result <- function() {
  cols <- list(list(name = "batch_id", type_name = "STRING", position = 0),
               list(name = "as_of_date", type_name = "DATE", position = 1),
               list(name = "feature", type_name = "STRING", position = 2),
               list(name = "status", type_name = "STRING", position = 3),
               list(name = "psi", type_name = "DOUBLE", position = 4),
               list(name = "unseen_rate", type_name = "DOUBLE", position = 5),
               list(name = "rows_counted", type_name = "LONG", position = 6),
               list(name = "model_version", type_name = "INT", position = 7),
               list(name = "computed_at", type_name = "TIMESTAMP", position = 8),
               list(name = "official", type_name = "BOOLEAN", position = 9))
  rows <- list(
    list("b2", "2026-12-31", "balance_utilization", "ALERT", "4.96", NULL, "3000", "1",
         "2026-12-31T06:00:00Z", "true"),
    list("b2", "2026-12-31", "region", "ALERT", "0.84", "0.0", "3000", "1",
         "2026-12-31T06:00:00Z", "true"))
  list(route("post", "/api/2.0/sql/statements", function(req, res) {
    res$send_json(list(
      statement_id = "s1", status = list(state = "SUCCEEDED"),
      manifest = list(format = "JSON_ARRAY", truncated = FALSE,
                      schema = list(column_count = length(cols), columns = cols)),
      result = list(chunk_index = 0, data_array = rows)), auto_unbox = TRUE, null = "null")
  }))
}

test_that("yws_drift reads the latest batches of v_yws_drift, typed", {
  fake <- fake_api(drift_result())
  with_fake_env(fake)
  out <- yws_drift(batches = 3)
  expect_equal(out$feature, c("balance_utilization", "region"))
  expect_equal(out$status, c("ALERT", "ALERT"))
  expect_equal(out$psi, c(4.96, 0.84))
  expect_equal(out$unseen_rate, c(NA, 0))
  expect_s3_class(out$as_of_date, "Date")
  expect_s3_class(out$computed_at, "POSIXct")
  expect_identical(out$model_version, c(1L, 1L))
  expect_identical(out$official, c(TRUE, TRUE))
  yws_drift(batch_id = "b2")
  posts <- Filter(function(r) toupper(r$method) == "POST", requests(fake))
  columns <- paste("batch_id, as_of_date, feature, kind, status, psi, null_rate,",
                   "baseline_null_rate, unseen_rate, rows_counted, shares_json, model_name,",
                   "model_version, computed_at, run_id, model_alias, official")
  expect_equal(posts[[1]]$body$statement, paste0(
    "SELECT ", columns, " FROM yws_dev.ml.v_yws_drift WHERE batch_id IN (SELECT batch_id ",
    "FROM yws_dev.ml.v_yws_drift GROUP BY batch_id ORDER BY MAX(as_of_date) DESC, ",
    "MAX(computed_at) DESC, batch_id DESC LIMIT 3) ORDER BY as_of_date DESC, batch_id DESC, ",
    "feature"))
  expect_equal(posts[[2]]$body$statement, paste0(
    "SELECT ", columns, " FROM yws_dev.ml.v_yws_drift WHERE batch_id = :batch_id ",
    "ORDER BY as_of_date DESC, batch_id DESC, feature"))
  expect_equal(posts[[2]]$body$parameters,
               list(list(name = "batch_id", value = "b2", type = "STRING")))
})

test_that("yws_drift refuses a bad count or batch id before sending anything", {
  fake <- fake_api(drift_result())
  with_fake_env(fake)
  expect_error(yws_drift(batches = 0), class = "yws_input_error")
  expect_error(yws_drift(batches = 2.5), class = "yws_input_error")
  expect_error(yws_drift(batches = "3; DROP TABLE x"), class = "yws_input_error")
  expect_error(yws_drift(batch_id = "b2'; --"), class = "yws_input_error")
  expect_length(requests(fake), 0)
})
