# yws_score() end to end against a fake workspace: Jobs API, warehouses and statements.

score_routes <- function(rows_as_of = NULL, quarantined = 0, warehouse = "wh1",
                         has_warehouse_route = TRUE, reasons = FALSE) {
  cols <- list(list(name = "entity_id", type_name = "STRING", position = 0),
               list(name = "as_of_date", type_name = "DATE", position = 1),
               list(name = "batch_id", type_name = "STRING", position = 2),
               list(name = "probability", type_name = "DOUBLE", position = 3),
               list(name = "band", type_name = "STRING", position = 4))
  if (reasons) {
    kinds <- rep(c("STRING", "DOUBLE"), 3)
    cols <- c(cols, lapply(seq_along(reason_columns), function(i) {
      list(name = reason_columns[[i]], type_name = kinds[[i]], position = 4 + i)
    }))
  }
  audit <- list(list(name = "rows_read", type_name = "LONG", position = 0),
                list(name = "rows_quarantined", type_name = "LONG", position = 1))
  c(jobs_routes(), list(
    route("get", "/api/2.0/sql/warehouses", function(req, res) {
      res$send_json(list(warehouses = list(list(id = warehouse, name = "w"))),
                    auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/sql/warehouses/:id", function(req, res) {
      if (!has_warehouse_route) {
        return(res$set_status(404)$send_json(list(error_code = "ENDPOINT_NOT_FOUND",
                                                  message = "No API found"), auto_unbox = TRUE))
      }
      if (req$params$id != warehouse) {
        return(res$set_status(404)$send_json(list(
          error_code = "RESOURCE_DOES_NOT_EXIST",
          message = paste0("SQL warehouse ", req$params$id, " does not exist.")),
          auto_unbox = TRUE))
      }
      res$send_json(list(id = warehouse, state = "RUNNING"), auto_unbox = TRUE)
    }),
    route("post", "/api/2.0/sql/statements", function(req, res) {
      sql <- req$json$statement
      params <- req$json$parameters
      batch <- if (length(params)) params[[1]]$value else NULL
      runs <- req$app$locals$runs
      asked <- if (length(runs)) runs[[length(runs)]]$params$as_of_date else "2026-11-30"
      day <- if (is.null(rows_as_of)) asked else rows_as_of
      if (grepl("WHERE 1 = 0", sql, fixed = TRUE)) {
        data <- list()
        columns <- cols
      } else if (grepl("v_yws_score_runs", sql, fixed = TRUE)) {
        data <- list(list("3", as.character(quarantined)))
        columns <- audit
      } else {
        data <- list(list("C1", day, batch, "0.1", "GREEN"),
                     list("C2", day, batch, "0.8", "RED"))
        if (reasons) {  # the GREEN row has no positive contribution; the RED one two
          data[[1]] <- c(data[[1]], rep(list(NULL), 6))
          data[[2]] <- c(data[[2]], list("balance_utilization", "1.21", "region=north",
                                         "0.4", NULL, NULL))
        }
        columns <- cols
      }
      res$send_json(list(statement_id = "s1", status = list(state = "SUCCEEDED"),
                         manifest = list(schema = list(columns = columns)),
                         result = list(data_array = data)),
                    auto_unbox = TRUE, null = "null")
    })))
}

test_that("yws_score returns the batch it started, checked, as a tibble", {
  fake <- fake_api(score_routes())
  with_fake_env(fake)
  out <- yws_score(as_of = "2026-11-30", batch_id = "b1")
  expect_s3_class(out, "tbl_df")
  expect_equal(out$entity_id, c("C1", "C2"))
  expect_equal(unique(out$batch_id), "b1")
  expect_true(is.ordered(out$band))
  paths <- vapply(requests(fake), function(r) r$path, character(1))
  # checks first, then the run, then the rows
  expect_lt(match("/api/2.0/sql/warehouses/wh1", paths), match("/api/2.2/jobs/run-now", paths))
  expect_equal(yws_score(as_of = "2026-11-30", entities = "C2", batch_id = "b1")$entity_id,
               "C2")
})

test_that("yws_score returns the reason codes typed: character names, double contributions", {
  fake <- fake_api(score_routes(reasons = TRUE))
  with_fake_env(fake)
  out <- yws_score(as_of = "2026-11-30", batch_id = "b1")
  expect_equal(names(out)[6:11], reason_columns)
  for (k in 1:3) {
    expect_type(out[[paste0("reason_", k)]], "character")
    expect_type(out[[paste0("reason_", k, "_contribution")]], "double")
  }
  expect_equal(out$reason_1, c(NA, "balance_utilization"))
  expect_equal(out$reason_1_contribution, c(NA, 1.21))
  expect_equal(out$reason_2, c(NA, "region=north"))
  expect_true(all(is.na(out$reason_3)) && all(is.na(out$reason_3_contribution)))
  # a batch without reasons, read over a driver that types an all-NULL column as logical
  odbc_like <- prediction_types(tibble::tibble(entity_id = c("C1", "C2"), reason_1 = NA,
                                               reason_1_contribution = NA))
  expect_type(odbc_like$reason_1, "character")
  expect_type(odbc_like$reason_1_contribution, "double")
})

test_that("rows of another as-of date than asked are an error, not an answer (item 1)", {
  fake <- fake_api(score_routes(rows_as_of = "2026-11-30"))
  with_fake_env(fake)
  expect_equal(nrow(yws_score(as_of = "2026-11-30", batch_id = "b1")), 2)
  err <- expect_error(yws_score(as_of = "2026-12-31", batch_id = "b1"),
                      class = "yws_run_mismatch")
  expect_match(conditionMessage(err), "2026-12-31", fixed = TRUE)
})

test_that("a wrong warehouse id stops yws_score before the job starts (item 7)", {
  for (route_exists in c(TRUE, FALSE)) {
    fake <- fake_api(score_routes(warehouse = "wh-real", has_warehouse_route = route_exists))
    with_fake_env(fake)
    withr::local_envvar(YWS_WAREHOUSE_ID = "wh-typo")
    err <- expect_error(yws_score(as_of = "2026-11-30"), class = "yws_config_error")
    expect_match(conditionMessage(err), "wh-typo", fixed = TRUE)
    expect_match(conditionMessage(err), "wh-real", fixed = TRUE)
    expect_length(started_jobs(fake), 0)
  }
  # an older server without GET /warehouses/{id}: the list confirms a good id
  fake <- fake_api(score_routes(has_warehouse_route = FALSE))
  with_fake_env(fake)
  expect_equal(nrow(yws_score(as_of = "2026-11-30")), 2)
})

test_that("via = 'odbc' without a usable connection stops before the job starts (item 7)", {
  fake <- fake_api(score_routes())
  with_fake_env(fake)
  err <- expect_error(yws_score(as_of = "2026-11-30", via = "odbc"), class = "yws_input_error")
  expect_match(conditionMessage(err), "needs a connection", fixed = TRUE)
  expect_error(yws_score(as_of = "2026-11-30", via = "odbc", con = "a dsn"),
               class = "yws_input_error")
  expect_length(requests(fake), 0)
  # wait = FALSE reads nothing, so it needs no connection
  expect_s3_class(yws_score(as_of = "2026-11-30", via = "odbc", wait = FALSE), "yws_run")
})

test_that("a view the token cannot read stops yws_score before the job starts (item 7)", {
  fake <- fake_api(c(list(route("post", "/api/2.0/sql/statements", function(req, res) {
    res$send_json(list(statement_id = "s9", status = list(
      state = "FAILED", error = list(error_code = "PERMISSION_DENIED",
                                     message = "no SELECT on yws_prod.ml.v_yws_predictions"))),
      auto_unbox = TRUE)
  })), score_routes()))
  with_fake_env(fake)
  expect_error(yws_score(as_of = "2026-11-30"), "yws_prod", class = "yws_sql_error")
  expect_length(started_jobs(fake), 0)
})

test_that("batch ids never touch the random number stream (item 8)", {
  refused <- paste0("http://127.0.0.1:", refused_port())
  set.seed(42)
  seed <- .Random.seed
  ids <- replicate(50, yws:::new_batch_id())
  expect_identical(.Random.seed, seed)
  expect_equal(length(unique(ids)), 50)
  expect_match(ids, "^r-\\d{8}T\\d{6}Z?-[0-9a-f]{8}$")
  # nor does a failed request (httr2's back-off would draw from runif())
  try(yws_perform(yws_request("/x", host = refused, token = "t")), silent = TRUE)
  expect_identical(.Random.seed, seed)
  rm(".Random.seed", envir = globalenv())
  yws:::new_batch_id()
  expect_false(exists(".Random.seed", envir = globalenv()))
  fake <- fake_api(score_routes())
  with_fake_env(fake)
  set.seed(7)
  seed <- .Random.seed
  yws_score(as_of = "2026-11-30")
  expect_identical(.Random.seed, seed)
})

test_that("quarantined rows are announced with how to see them (item 11)", {
  fake <- fake_api(score_routes(quarantined = 2))
  with_fake_env(fake)
  expect_message(yws_score(as_of = "2026-11-30", batch_id = "b-q"),
                 'yws_quarantine("b-q")', fixed = TRUE, class = "yws_quarantined_rows")
  fake <- fake_api(score_routes(quarantined = 0))
  with_fake_env(fake)
  expect_no_message <- function(expr) {
    msgs <- character()
    withCallingHandlers(expr, yws_quarantined_rows = function(m) msgs <<- c(msgs, "q"))
    expect_length(msgs, 0)
  }
  expect_no_message(suppressMessages(yws_score(as_of = "2026-11-30")))
})
