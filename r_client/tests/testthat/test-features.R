# yws_features(): one snapshot of the governed features table, typed for modelling, through
# the SQL Statement Execution API (a webfakes server) or a DBI connection (RSQLite).

feature_columns <- list(
  list(name = "customer_id", type_name = "STRING", position = 0),
  list(name = "as_of_date", type_name = "DATE", position = 1),
  list(name = "tenure_months", type_name = "DOUBLE", position = 2),
  list(name = "has_autopay", type_name = "BOOLEAN", position = 3),
  list(name = "region", type_name = "STRING", position = 4),
  list(name = "defaulted_90d", type_name = "INT", position = 5))

feature_routes <- function(rows = list(
  list("C1", "2026-08-31", "12.5", "true", "north", "0"),
  list("C2", "2026-08-31", NULL, "false", "east", "1"),
  list("C3", "2026-08-31", "3", NULL, NULL, "0"))) {
  list(
    route("post", "/api/2.0/sql/statements", function(req, res) {
      res$send_json(list(
        statement_id = "f1", status = list(state = "SUCCEEDED"),
        manifest = list(format = "JSON_ARRAY", total_chunk_count = 1,
                        schema = list(column_count = 6, columns = feature_columns)),
        result = list(chunk_index = 0, data_array = rows)), auto_unbox = TRUE, null = "null")
    }))
}

posts <- function(fake) Filter(function(r) toupper(r$method) == "POST", requests(fake))

test_that("a snapshot is read with the date as a parameter and typed for modelling", {
  fake <- fake_api(feature_routes())
  with_fake_env(fake)
  out <- yws_features(as_of = as.Date("2026-08-31"))
  post <- posts(fake)[[1]]
  expect_equal(post$body$statement, paste(
    "SELECT * FROM yws_dev.ml.yws_features WHERE as_of_date = CAST(:as_of AS DATE)",
    "ORDER BY customer_id"))
  expect_equal(post$body$parameters,
               list(list(name = "as_of", value = "2026-08-31", type = "DATE")))
  expect_null(post$body$row_limit)
  expect_s3_class(out, "tbl_df")
  expect_identical(out$customer_id, c("C1", "C2", "C3"))
  expect_s3_class(out$as_of_date, "Date")
  expect_identical(out$tenure_months, c(12.5, NA, 3))
  expect_identical(out$has_autopay, c(TRUE, FALSE, NA))
  expect_identical(out$region, factor(c("north", "east", NA)))
  expect_identical(levels(out$region), c("east", "north"))
  expect_identical(out$defaulted_90d, c(0L, 1L, 0L))
  expect_identical(attr(out, "yws_features"),
                   list(table = "yws_dev.ml.yws_features", as_of = "2026-08-31"))
})

test_that("a glm fitted on the snapshot exports with its levels and as-of date", {
  rows <- lapply(seq_len(40), function(i) {
    list(sprintf("C%02d", i), "2026-08-31", format(i %% 7 + 0.5),
         if (i %% 3 == 0) "true" else "false", c("east", "north", "west")[(i %/% 4) %% 3 + 1],
         as.character(as.integer(i %% 2 == 0 || i %% 5 == 0)))
  })
  fake <- fake_api(feature_routes(rows))
  with_fake_env(fake)
  d <- yws_features(as_of = "2026-08-31")
  fit <- suppressWarnings(glm(defaulted_90d ~ tenure_months + has_autopay + region,
                              family = binomial, data = d))
  x <- yws_export_glm(fit, as_of = attr(d, "yws_features")$as_of)
  kinds <- vapply(x$terms, function(t) t$kind, character(1))
  expect_identical(kinds, c("numeric", "logical", "factor"))
  expect_identical(x$terms[[3]]$levels, c("east", "north", "west"))
  expect_identical(x$training$as_of, "2026-08-31")
})

test_that("columns and n_max narrow the statement", {
  fake <- fake_api(feature_routes())
  with_fake_env(fake)
  withr::local_options(yws.features_table = "features_v2")
  yws_features("2026-08-31", columns = c("customer_id", "region", "defaulted_90d"), n_max = 2)
  post <- posts(fake)[[1]]
  expect_equal(post$body$statement, paste(
    "SELECT customer_id, region, defaulted_90d FROM yws_dev.ml.features_v2",
    "WHERE as_of_date = CAST(:as_of AS DATE) ORDER BY customer_id"))
  expect_equal(post$body$row_limit, 2)
})

test_that("a bad as_of, columns or table is refused before anything is sent", {
  fake <- fake_api(feature_routes())
  with_fake_env(fake)
  evil <- "2026-08-31' OR '1'='1"
  for (as_of in list(evil, "2026-02-30", "31/08/2026", "yesterday", NA, 20260831,
                     c("2026-08-31", "2026-09-30"), character())) {
    expect_error(yws_features(as_of = as_of), class = "yws_input_error")
  }
  expect_error(yws_features(), "needs `as_of`", class = "yws_input_error")
  expect_error(yws_features(as_of = NULL), class = "yws_input_error")
  for (columns in list("region; DROP TABLE x", character(), c("region", "region"), NA, 1)) {
    expect_error(yws_features("2026-08-31", columns = columns), class = "yws_input_error")
  }
  expect_error(yws_features("2026-08-31", table = "x.y"), class = "yws_input_error")
  expect_error(yws_features("2026-08-31", n_max = -1), class = "yws_input_error")
  expect_error(yws_features("2026-08-31", via = "odbc"), class = "yws_input_error")
  expect_length(requests(fake), 0)
})

test_that("a date with no snapshot is an error that names the table and the date", {
  fake <- fake_api(feature_routes(rows = list()))
  with_fake_env(fake)
  expect_error(yws_features("2026-08-30"), "has no snapshot for `as_of` \"2026-08-30\"",
               class = "yws_input_error")
  expect_length(yws_features("2026-08-30", n_max = 0), 6)  # asked for no rows: none
})

test_that("over a DBI connection the date is a quoted literal and the types are the same", {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  dir <- withr::local_tempdir()
  con <- DBI::dbConnect(RSQLite::SQLite(), file.path(dir, "main.db"))
  withr::defer(DBI::dbDisconnect(con))
  DBI::dbExecute(con, paste0("ATTACH DATABASE '", file.path(dir, "ml.db"), "' AS ml"))
  DBI::dbExecute(con, paste(
    "CREATE TABLE ml.yws_features (customer_id TEXT, as_of_date TEXT, tenure_months REAL,",
    "has_autopay INTEGER, region TEXT, defaulted_90d REAL)"))
  DBI::dbExecute(con, paste(
    "INSERT INTO ml.yws_features VALUES ('C2', '2026-08-31', NULL, 0, 'east', 1),",
    "('C1', '2026-08-31', 12.5, 1, 'north', 0), ('C9', '2026-09-30', 1, 1, 'west', 0),",
    "('C3', '2026-08-31', 3, NULL, NULL, 0)"))
  withr::local_options(yws.catalog = "")
  withr::local_envvar(YWS_SCHEMA = "")
  out <- yws_features("2026-08-31", via = "odbc", con = con)
  expect_identical(out$customer_id, c("C1", "C2", "C3"))
  expect_identical(out$as_of_date, as.Date(rep("2026-08-31", 3)))
  expect_identical(out$tenure_months, c(12.5, NA, 3))
  expect_identical(out$has_autopay, c(TRUE, FALSE, NA))
  expect_identical(out$region, factor(c("north", "east", NA)))
  expect_identical(out$defaulted_90d, c(0L, 1L, 0L))
  expect_identical(attr(out, "yws_features")$table, "ml.yws_features")
  expect_error(yws_features("2026-08-31' OR '1'='1", via = "odbc", con = con),
               class = "yws_input_error")
})
