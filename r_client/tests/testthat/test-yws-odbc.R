# ODBC through unixODBC and the SQLite ODBC driver: a real driver manager and driver. SQLite
# has no catalogs, so the catalog option is "" and the schema is an attached database.
sqlite_channel <- function(env = parent.frame()) {
  skip_if_not_installed("RODBC")
  drivers <- system("odbcinst -q -d", intern = TRUE, ignore.stderr = TRUE)
  skip_if_not(any(grepl("SQLite3", drivers)), "the SQLite3 ODBC driver is not installed")
  dir <- withr::local_tempdir(.local_envir = env)
  con <- yws_odbc_connect(connection = paste0("Driver=SQLite3;Database=",
                                              file.path(dir, "main.db")))
  # the SQLite driver warns on disconnect after ATTACH; the data is gone with the tempdir
  withr::defer(suppressWarnings(try(RODBC::odbcClose(con), silent = TRUE)), envir = env)
  RODBC::sqlQuery(con, paste0("ATTACH DATABASE '", file.path(dir, "ml.db"), "' AS ml"))
  RODBC::sqlQuery(con, paste(
    "CREATE TABLE ml.v_yws_predictions (entity_id TEXT, as_of_date TEXT, batch_id TEXT,",
    "probability REAL, prediction INTEGER, band TEXT, model_name TEXT, model_version INTEGER,",
    "scored_at TEXT)"))
  rows <- c("('C1','2026-11-30','b1',0.05,0,'GREEN','m',3,'2026-11-30 06:00:00')",
            "('C2','2026-11-30','b1',0.55,1,'RED','m',3,'2026-11-30 06:00:00')",
            "('C3','2026-10-31','b0',0.25,0,'YELLOW','m',2,'2026-10-31 06:00:00')",
            "('O''Brien','2026-11-30','b1',0.2,0,'YELLOW','m',3,'2026-11-30 06:00:00')")
  RODBC::sqlQuery(con, paste("INSERT INTO ml.v_yws_predictions VALUES",
                             paste(rows, collapse = ", ")))
  con
}

test_that("predictions over ODBC filter with quoted values and get R types", {
  con <- sqlite_channel()
  withr::local_options(yws.catalog = "")
  out <- yws_predictions(batch_id = "b1", bands = c("RED", "YELLOW"), via = "odbc", con = con)
  expect_equal(out$entity_id, c("C2", "O'Brien"))
  expect_s3_class(out$as_of_date, "Date")
  expect_s3_class(out$scored_at, "POSIXct")
  expect_true(is.ordered(out$band))
  expect_type(out$model_version, "integer")
  out <- yws_predictions(as_of = "2026-10-31", via = "odbc", con = con)
  expect_equal(out$entity_id, "C3")
})

test_that("values that could break out of a literal never reach the driver", {
  con <- sqlite_channel()
  withr::local_options(yws.catalog = "")
  evil <- "b1' OR '1'='1"
  expect_error(yws_predictions(batch_id = evil, via = "odbc", con = con),
               class = "yws_input_error")
  expect_error(yws_predictions(as_of = "2026-11-30' --", via = "odbc", con = con),
               class = "yws_input_error")
  expect_equal(nrow(RODBC::sqlQuery(con, "SELECT * FROM ml.v_yws_predictions")), 4)
  expect_equal(yws:::quote_literal("O'Brien"), "'O''Brien'")
})

test_that("ODBC errors are classed and connection strings are built for Databricks", {
  con <- sqlite_channel()
  withr::local_options(yws.catalog = "")
  withr::local_options(yws.schema = "nope")
  expect_error(yws_predictions(via = "odbc", con = con), class = "yws_odbc_error")
  expect_error(yws_predictions(via = "odbc", con = "not a channel"), class = "yws_input_error")
  expect_equal(
    yws_odbc_connection_string(host = "https://adb-1.2.azuredatabricks.net",
                               http_path = "/sql/1.0/warehouses/abc", token = "dapi-x"),
    paste0("Driver=Simba Spark ODBC Driver;Host=adb-1.2.azuredatabricks.net;Port=443;",
           "HTTPPath=/sql/1.0/warehouses/abc;SSL=1;ThriftTransport=2;AuthMech=3;UID=token;",
           "PWD=dapi-x"))
  expect_error(yws_odbc_connection_string(host = "h", http_path = "/p;Driver=evil",
                                          token = "t"), class = "yws_input_error")
})
