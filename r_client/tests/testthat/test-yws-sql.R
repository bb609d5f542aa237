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
  expect_equal(post$body$parameters,
               list(list(name = "as_of", value = "2026-11-30", type = "DATE"),
                    list(name = "batch_id", value = "b-1", type = "STRING"),
                    list(name = "band1", value = "RED", type = "STRING"),
                    list(name = "band2", value = "YELLOW", type = "STRING")))
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
  out <- yws_predictions(batch_id = "b-2", view = "latest")
  expect_s3_class(out, "tbl_df")
  yws_predictions(view = "warnings")
  posts <- Filter(function(r) toupper(r$method) == "POST", requests(fake))
  expect_equal(posts[[1]]$body$statement, paste(
    "SELECT * FROM yws_dev.ml.v_yws_predictions_latest WHERE batch_id = :batch_id",
    "ORDER BY entity_id, batch_id"))
  expect_equal(posts[[1]]$body$parameters,
               list(list(name = "batch_id", value = "b-2", type = "STRING")))
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

# A statement that succeeds at once with the given columns and rows.
one_result <- function(columns, rows, truncated = FALSE) {
  list(route("post", "/api/2.0/sql/statements", function(req, res) {
    res$send_json(list(
      statement_id = "s3", status = list(state = "SUCCEEDED"),
      manifest = list(format = "JSON_ARRAY", truncated = truncated,
                      schema = list(column_count = length(columns), columns = columns)),
      result = list(chunk_index = 0, data_array = rows)), auto_unbox = TRUE, null = "null")
  }))
}

column <- function(name, type, i) list(name = name, type_name = type, position = i)

test_that("yws_sql types columns from the manifest only, whatever their names (item 4)", {
  fake <- fake_api(one_result(
    list(column("band", "STRING", 0), column("prediction", "DOUBLE", 1),
         column("as_of_date", "STRING", 2), column("scored_at", "STRING", 3),
         column("ok", "BOOLEAN", 4), column("n", "LONG", 5), column("d", "DECIMAL", 6),
         column("t", "TIMESTAMP", 7), column("day", "DATE", 8)),
    list(list("red", "0.7", "2026-11-30", "noon", "true", "9007199254740993", "1.50",
              "2026-11-30T06:00:00.123Z", "2026-11-30"),
         list(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))))
  with_fake_env(fake)
  out <- yws_sql("SELECT lower(band) AS band, 0.7 AS prediction, ...")
  expect_s3_class(out, "tbl_df")
  expect_equal(out$band, c("red", NA))                 # not a factor of NAs
  expect_equal(out$prediction, c(0.7, NA))             # not an integer 0
  expect_equal(out$as_of_date, c("2026-11-30", NA))    # a STRING stays a string
  expect_equal(out$scored_at, c("noon", NA))
  expect_equal(out$ok, c(TRUE, NA))
  expect_type(out$n, "double")
  expect_equal(out$d, c(1.5, NA))
  expect_equal(out$t[1], as.POSIXct("2026-11-30 06:00:00.123", tz = "UTC"), tolerance = 1e-6)
  expect_equal(attr(out$t, "tzone"), "UTC")
  expect_equal(out$day, as.Date(c("2026-11-30", NA)))
  expect_equal(yws_sql("SELECT ...", bigint = "character")$n, c("9007199254740993", NA))
  skip_if_not_installed("bit64")
  n64 <- yws_sql("SELECT ...", bigint = "integer64")$n
  expect_s3_class(n64, "integer64")
  expect_equal(as.character(n64[1]), "9007199254740993")
})

test_that("parameters are sent with their SQL type (item 4)", {
  fake <- fake_api(one_result(list(column("x", "INT", 0)), list(list("1"))))
  with_fake_env(fake)
  yws_sql("SELECT :d, :t, :i, :x, :b, :s", list(
    d = as.Date("2026-11-30"), t = as.POSIXct("2026-11-30 06:00:00", tz = "UTC"), i = 3L,
    x = 0.25, b = TRUE, s = "O'Brien"))
  post <- requests(fake)[[1]]
  expect_equal(post$body$parameters, list(
    list(name = "d", value = "2026-11-30", type = "DATE"),
    list(name = "t", value = "2026-11-30T06:00:00.000000Z", type = "TIMESTAMP"),
    list(name = "i", value = "3", type = "INT"),
    list(name = "x", value = "0.25", type = "DOUBLE"),
    list(name = "b", value = "true", type = "BOOLEAN"),
    list(name = "s", value = "O'Brien", type = "STRING")))
  expect_equal(post$body$format, "JSON_ARRAY")
  expect_equal(post$body$disposition, "INLINE")
})

test_that("n_max becomes row_limit; a truncated result without one is an error (item 10)", {
  fake <- fake_api(one_result(list(column("x", "INT", 0)), list(list("1")), truncated = TRUE))
  with_fake_env(fake)
  expect_equal(yws_sql("SELECT x FROM t", n_max = 1)$x, 1L)
  expect_equal(requests(fake)[[1]]$body$row_limit, 1)
  expect_error(yws_sql("SELECT x FROM t"), class = "yws_truncated")
  expect_null(requests(fake)[[2]]$body$row_limit)
  expect_error(yws_sql("SELECT 1", n_max = -1), class = "yws_input_error")
})

test_that("execution errors are yws_sql_error: HTTP 200 FAILED and HTTP 400 alike", {
  fake <- fake_api(list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      if (grepl("FROM nope", req$json$statement)) {
        res$send_json(list(statement_id = "s4", status = list(
          state = "FAILED", sql_state = "42P01",
          error = list(error_code = "BAD_REQUEST",
                       message = "[TABLE_OR_VIEW_NOT_FOUND] The table `nope` cannot be found."))),
          auto_unbox = TRUE)
      } else {
        res$set_status(400)$send_json(list(error_code = "INVALID_PARAMETER_VALUE",
                                           message = "[PARSE_SYNTAX_ERROR] near 'SELEC'"),
                                      auto_unbox = TRUE)
      }
    })))
  with_fake_env(fake)
  err <- expect_error(yws_sql("SELECT * FROM nope"), "TABLE_OR_VIEW_NOT_FOUND",
                      class = "yws_sql_error")
  expect_equal(err$error_code, "BAD_REQUEST")
  expect_equal(err$sql_state, "42P01")
  err <- expect_error(yws_sql("SELEC 1"), "PARSE_SYNTAX_ERROR", class = "yws_sql_error")
  expect_equal(err$error_code, "INVALID_PARAMETER_VALUE")
})

test_that("a statement that fails while polled is a yws_sql_error too", {
  fake <- fake_api(list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      res$send_json(list(statement_id = "s5", status = list(state = "RUNNING")),
                    auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/sql/statements/s5", function(req, res) {
      res$send_json(list(statement_id = "s5", status = list(
        state = "FAILED", error = list(error_code = "PERMISSION_DENIED",
                                       message = "User does not have SELECT on yws_prod"))),
        auto_unbox = TRUE)
    })))
  with_fake_env(fake)
  err <- expect_error(yws_sql("SELECT 1"), "does not have SELECT", class = "yws_sql_error")
  expect_equal(err$error_code, "PERMISSION_DENIED")
})

test_that("a statement past the call's timeout is cancelled", {
  fake <- fake_api(list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      res$send_json(list(statement_id = "s6", status = list(state = "RUNNING")),
                    auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/sql/statements/s6", function(req, res) {
      res$send_json(list(statement_id = "s6", status = list(state = "RUNNING")),
                    auto_unbox = TRUE)
    }),
    route("post", "/api/2.0/sql/statements/s6/cancel", function(req, res) {
      res$send_json(structure(list(), names = character()), auto_unbox = TRUE)
    })))
  with_fake_env(fake)
  expect_error(yws_sql("SELECT 1", timeout = 1), class = "yws_timeout")
  expect_length(Filter(function(r) r$path == "/api/2.0/sql/statements/s6/cancel",
                       requests(fake)), 1)
  expect_equal(requests(fake)[[1]]$body$wait_timeout, "0s")
})

test_that("yws_batches and yws_quarantine read their views with bound values (item 11)", {
  fake <- fake_api(one_result(list(column("batch_id", "STRING", 0),
                                   column("rows_quarantined", "LONG", 1),
                                   column("as_of_date", "DATE", 2)),
                              list(list("b1", "4", "2026-11-30"))))
  with_fake_env(fake)
  out <- yws_batches(as_of = "2026-11-30")
  expect_equal(out$rows_quarantined, 4)
  q <- yws_quarantine("b1")
  posts <- requests(fake)
  expect_equal(posts[[1]]$body$statement, paste(
    "SELECT batch_id, as_of_date, model_alias, model_version, rows_read, rows_scored,",
    "rows_quarantined, quarantine_rate, started_at, ended_at, duration_seconds, status,",
    "official, run_id, model_name, drift_status, drift_worst_feature, drift_worst_psi",
    "FROM yws_dev.ml.v_yws_score_runs",
    "WHERE as_of_date = CAST(:as_of AS DATE) ORDER BY ended_at DESC, run_id DESC"))
  expect_equal(posts[[1]]$body$row_limit, 100)
  expect_equal(posts[[2]]$body$statement, paste(
    "SELECT * FROM yws_dev.ml.v_yws_quarantine WHERE batch_id = :batch_id ORDER BY entity_id"))
  expect_equal(posts[[2]]$body$parameters,
               list(list(name = "batch_id", value = "b1", type = "STRING")))
  expect_error(yws_quarantine("b1'; --"), class = "yws_input_error")
})

test_that("yws_predictions(as_of) reads one batch, and latest as of that date", {
  fake <- fake_api(statement_routes())
  with_fake_env(fake)
  yws_predictions(as_of = "2026-11-30")
  yws_predictions(as_of = "2026-11-30", view = "latest", bands = "RED")
  posts <- Filter(function(r) toupper(r$method) == "POST", requests(fake))
  expect_equal(posts[[1]]$body$statement, paste(
    "SELECT * FROM yws_dev.ml.v_yws_predictions WHERE as_of_date = CAST(:as_of AS DATE)",
    "AND batch_id = (SELECT batch_id FROM yws_dev.ml.v_yws_score_runs",
    "WHERE as_of_date = CAST(:as_of AS DATE) ORDER BY official DESC, ended_at DESC,",
    "run_id DESC LIMIT 1) ORDER BY entity_id, batch_id"))
  columns <- paste0("entity_id, as_of_date, batch_id, probability, prediction, band, ",
                    "model_name, model_version, scored_at, reason_1, reason_1_contribution, ",
                    "reason_2, reason_2_contribution, reason_3, reason_3_contribution")
  expect_equal(posts[[2]]$body$statement, paste0(
    "SELECT ", columns, " FROM (SELECT ", columns, ", ROW_NUMBER() OVER ",
    "(PARTITION BY entity_id ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC) AS ",
    "yws_recency FROM yws_dev.ml.v_yws_predictions WHERE official AND as_of_date <= ",
    "CAST(:as_of AS DATE)) latest WHERE yws_recency = 1 AND band IN (:band1) ORDER BY entity_id"))
})

test_that("one column, one row, and all-NULL columns keep their shape and types", {
  fake <- fake_api(list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      shape <- req$json$statement
      data <- switch(shape, one = list(list("7")), col = list(list("1"), list("2")),
                     nulls = list(list(NULL, "x"), list(NULL, NULL)))
      columns <- if (shape == "nulls") {
        list(list(name = "n", type_name = "INT", position = 0),
             list(name = "s", type_name = "STRING", position = 1))
      } else {
        list(list(name = "n", type_name = "INT", position = 0))
      }
      res$send_json(list(statement_id = "s7", status = list(state = "SUCCEEDED"),
                         manifest = list(schema = list(columns = columns)),
                         result = list(data_array = data)), auto_unbox = TRUE, null = "null")
    })))
  with_fake_env(fake)
  expect_equal(yws_sql("one")$n, 7L)
  expect_equal(yws_sql("col")$n, c(1L, 2L))
  out <- yws_sql("nulls")
  expect_equal(out$n, c(NA_integer_, NA_integer_))
  expect_equal(out$s, c("x", NA))
})
