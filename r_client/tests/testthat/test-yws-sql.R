statement_routes <- function() {
  columns <- list(
    list(name = "entity_id", type_name = "STRING", position = 0),
    list(name = "as_of_date", type_name = "DATE", position = 1),
    list(name = "probability", type_name = "DOUBLE", position = 2),
    list(name = "band", type_name = "STRING", position = 3),
    list(name = "model_version", type_name = "INT", position = 4),
    list(name = "scored_at", type_name = "TIMESTAMP", position = 5))
  list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      res$send_json(list(statement_id = "s1", status = list(state = "PENDING")),
                    auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/sql/statements/s1", function(req, res) {
      res$send_json(list(
        statement_id = "s1", status = list(state = "SUCCEEDED"),
        manifest = list(format = "JSON_ARRAY", total_chunk_count = 2,
                        schema = list(column_count = 6, columns = columns)),
        result = list(chunk_index = 0, next_chunk_index = 1, data_array = list(
          list("C1", "2026-11-30", "0.05", "GREEN", "3", "2026-11-30T06:00:00.000Z"),
          list("C2", "2026-11-30", "0.5", "RED", "3", "2026-11-30T06:00:00.000Z")))),
        auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/sql/statements/s1/result/chunks/1", function(req, res) {
      res$send_json(list(chunk_index = 1, data_array = list(
        list("C3", "2026-11-30", "0.2", "YELLOW", "3", NULL))), auto_unbox = TRUE,
        null = "null")
    }))
}

test_that("yws_predictions binds every value as a parameter and types the columns", {
  fake <- fake_api(statement_routes())
  with_fake_env(fake)
  out <- yws_predictions(as_of = as.Date("2026-11-30"), batch_id = "b-1",
                         bands = c("red", "YELLOW"))
  post <- Filter(function(r) toupper(r$method) == "POST", requests(fake))[[1]]
  expect_equal(post$body$statement, paste(
    "SELECT * FROM yws_dev.ml.v_yws_predictions WHERE as_of_date = CAST(:as_of AS DATE)",
    "AND batch_id = :batch_id AND band IN (:band1, :band2) ORDER BY entity_id, batch_id"))
  expect_equal(post$body$parameters, list(list(name = "as_of", value = "2026-11-30"),
                                          list(name = "batch_id", value = "b-1"),
                                          list(name = "band1", value = "RED"),
                                          list(name = "band2", value = "YELLOW")))
  expect_equal(post$body$warehouse_id, "wh1")
  expect_equal(out$entity_id, c("C1", "C2", "C3"))  # both chunks
  expect_s3_class(out$as_of_date, "Date")
  expect_s3_class(out$scored_at, "POSIXct")
  expect_equal(attr(out$scored_at, "tzone"), "UTC")
  expect_true(is.na(out$scored_at[3]))
  expect_equal(levels(out$band), c("GREEN", "YELLOW", "RED"))
  expect_true(is.ordered(out$band) && out$band[2] > out$band[3])
  expect_type(out$model_version, "integer")
  expect_equal(out$probability, c(0.05, 0.5, 0.2))
})

test_that("one filter, or none, builds the matching statement", {
  fake <- fake_api(statement_routes())
  with_fake_env(fake)
  yws_predictions(batch_id = "b-2", view = "latest")
  yws_predictions(view = "warnings")
  posts <- Filter(function(r) toupper(r$method) == "POST", requests(fake))
  expect_equal(posts[[1]]$body$statement, paste(
    "SELECT * FROM yws_dev.ml.v_yws_predictions_latest WHERE batch_id = :batch_id",
    "ORDER BY entity_id, batch_id"))
  expect_equal(posts[[1]]$body$parameters, list(list(name = "batch_id", value = "b-2")))
  expect_equal(posts[[2]]$body$statement,
               "SELECT * FROM yws_dev.ml.v_yws_warnings ORDER BY entity_id, batch_id")
  expect_null(posts[[2]]$body$parameters)
})

test_that("injection attempts in every argument are refused before anything is sent", {
  fake <- fake_api(statement_routes())
  with_fake_env(fake)
  evil <- "x'; DROP TABLE yws_dev.ml.yws_predictions; --"
  expect_error(yws_predictions(as_of = evil), class = "yws_input_error")
  expect_error(yws_predictions(batch_id = evil), class = "yws_input_error")
  expect_error(yws_predictions(bands = evil), class = "yws_input_error")
  expect_error(yws_score(as_of = evil), class = "yws_input_error")
  expect_error(yws_score(batch_id = evil), class = "yws_input_error")
  withr::local_options(yws.catalog = "yws_dev.ml.x --")
  expect_error(yws_predictions(), class = "yws_input_error")
  expect_length(requests(fake), 0)
})

test_that("a failed statement is a yws_sql_error with the warehouse's message", {
  fake <- fake_api(list(route("post", "/api/2.0/sql/statements", function(req, res) {
    res$send_json(list(statement_id = "s2", status = list(
      state = "FAILED", error = list(message = "[TABLE_OR_VIEW_NOT_FOUND] nope"))),
      auto_unbox = TRUE)
  })))
  with_fake_env(fake)
  expect_error(yws_sql("SELECT * FROM nope"), "TABLE_OR_VIEW_NOT_FOUND",
               class = "yws_sql_error")
})
