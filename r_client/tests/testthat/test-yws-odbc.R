# ODBC through unixODBC and the SQLite ODBC driver (a real driver manager and driver), and DBI
# through RSQLite. SQLite has no catalogs, so the catalog option is "" and the schema is an
# attached database.
fixture_sql <- function() {
  c(paste("CREATE TABLE ml.v_yws_predictions (entity_id TEXT, as_of_date TEXT, batch_id TEXT,",
          "probability REAL, prediction INTEGER, band TEXT, model_name TEXT,",
          "model_version INTEGER, scored_at TEXT, run_id TEXT, model_alias TEXT,",
          "official INTEGER, reason_1 TEXT, reason_1_contribution REAL, reason_2 TEXT,",
          "reason_2_contribution REAL, reason_3 TEXT, reason_3_contribution REAL)"),
    paste("INSERT INTO ml.v_yws_predictions (entity_id, as_of_date, batch_id, probability,",
          "prediction, band, model_name, model_version, scored_at, run_id, model_alias,",
          "official) VALUES",
          "('C1','2026-11-30','b1',0.05,0,'GREEN','m',3,'2026-11-30 06:00:00','r1','champion',1),",
          "('C2','2026-11-30','b1',0.55,1,'RED','m',3,'2026-11-30 06:00:00','r1','champion',1),",
          "('C3','2026-10-31','b0',0.25,0,'YELLOW','m',2,'2026-10-31 06:00:00','r0','champion',1),",
          "('C1','2026-10-31','b0',0.45,0,'YELLOW','m',2,'2026-10-31 06:00:00','r0','champion',1),",
          "('O''Brien','2026-11-30','b1',0.2,0,'YELLOW','m',3,'2026-11-30 06:00:00','r1','champion',1),",
          # a re-score of 2026-11-30, older, and a challenger batch: never stacked with b1
          "('C1','2026-11-30','b1-old',0.9,1,'RED','m',3,'2026-11-30 05:00:00','r2','champion',1),",
          "('C1','2026-11-30','b1-chal',0.7,1,'RED','m',4,'2026-11-30 07:00:00','r3','challenger',0)"),
    paste("UPDATE ml.v_yws_predictions SET reason_1 = 'balance_utilization',",
          "reason_1_contribution = 1.21 WHERE entity_id = 'C2'"),
    paste("CREATE TABLE ml.v_yws_score_runs (run_id TEXT, batch_id TEXT, as_of_date TEXT,",
          "model_name TEXT, model_alias TEXT, model_version INTEGER, rows_read INTEGER,",
          "rows_scored INTEGER, rows_quarantined INTEGER, quarantine_rate REAL,",
          "started_at TEXT, ended_at TEXT, duration_seconds REAL, status TEXT, official INTEGER,",
          "drift_status TEXT, drift_worst_feature TEXT, drift_worst_psi REAL)"),
    paste("INSERT INTO ml.v_yws_score_runs VALUES",
          "('r1','b1','2026-11-30','m','champion',3,4,3,1,0.25,'2026-11-30 06:00:00','2026-11-30 06:00:05',5,'SUCCEEDED',1,'ALERT','balance_utilization',0.31),",
          "('r2','b1-old','2026-11-30','m','champion',3,4,4,0,0,'2026-11-30 05:00:00','2026-11-30 05:00:05',5,'SUCCEEDED',1,NULL,NULL,NULL),",
          "('r3','b1-chal','2026-11-30','m','challenger',4,4,4,0,0,'2026-11-30 07:00:00','2026-11-30 07:00:05',5,'SUCCEEDED',0,'OK','tenure_months',0.02),",
          "('r0','b0','2026-10-31','m','champion',2,2,2,0,0,'2026-10-31 06:00:00','2026-10-31 06:00:05',5,'SUCCEEDED',1,NULL,NULL,NULL)"))
}

sqlite_channel <- function(env = parent.frame()) {
  skip_if_not_installed("RODBC")
  drivers <- system("odbcinst -q -d", intern = TRUE, ignore.stderr = TRUE)
  skip_if_not(any(grepl("SQLite3", drivers)), "the SQLite3 ODBC driver is not installed")
  skip_if_not_installed("withr")
  dir <- withr::local_tempdir(.local_envir = env)
  con <- yws_odbc_connect(connection = paste0("Driver=SQLite3;Database=",
                                              file.path(dir, "main.db")))
  # the SQLite driver warns on disconnect after ATTACH; the data is gone with the tempdir
  withr::defer(suppressWarnings(try(RODBC::odbcClose(con), silent = TRUE)), envir = env)
  RODBC::sqlQuery(con, paste0("ATTACH DATABASE '", file.path(dir, "ml.db"), "' AS ml"))
  for (sql in fixture_sql()) RODBC::sqlQuery(con, sql)
  con
}

dbi_connection <- function(env = parent.frame()) {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  skip_if_not_installed("withr")
  dir <- withr::local_tempdir(.local_envir = env)
  con <- DBI::dbConnect(RSQLite::SQLite(), file.path(dir, "main.db"))
  withr::defer(DBI::dbDisconnect(con), envir = env)
  DBI::dbExecute(con, paste0("ATTACH DATABASE '", file.path(dir, "ml.db"), "' AS ml"))
  for (sql in fixture_sql()) DBI::dbExecute(con, sql)
  con
}

for (kind in c("RODBC", "DBI")) {
  connect <- if (kind == "RODBC") sqlite_channel else dbi_connection

  test_that(paste(kind, "predictions filter with quoted values and get R types (item 9)"), {
    con <- connect()
    withr::local_options(yws.catalog = "")
    out <- yws_predictions(batch_id = "b1", bands = c("RED", "YELLOW"), via = "odbc", con = con)
    expect_s3_class(out, "tbl_df")
    expect_equal(out$entity_id, c("C2", "O'Brien"))
    expect_s3_class(out$as_of_date, "Date")
    expect_s3_class(out$scored_at, "POSIXct")
    expect_true(is.ordered(out$band))
    expect_type(out$model_version, "integer")
    expect_type(out$official, "logical")
    expect_equal(out$reason_1, c("balance_utilization", NA))  # the reason codes, typed
    expect_equal(out$reason_1_contribution, c(1.21, NA))
    expect_type(out$reason_2, "character")  # all NULL over ODBC, still character and double
    expect_type(out$reason_3_contribution, "double")
    out <- yws_predictions(as_of = "2026-10-31", via = "odbc", con = con)
    expect_equal(out$entity_id, c("C1", "C3"))
    expect_equal(nrow(yws_predictions(via = "odbc", con = con, n_max = 2)), 2)
  })

  test_that(paste(kind, "as_of gives one batch per date; latest as_of is as of that date (item 11)"), {
    con <- connect()
    withr::local_options(yws.catalog = "")
    out <- yws_predictions(as_of = "2026-11-30", via = "odbc", con = con)
    expect_equal(unique(out$batch_id), "b1")  # the latest official batch, not all three
    expect_equal(nrow(out), 3)
    all <- yws_predictions(as_of = "2026-11-30", all_batches = TRUE, via = "odbc", con = con)
    expect_setequal(unique(all$batch_id), c("b1", "b1-old", "b1-chal"))
    then <- yws_predictions(as_of = "2026-10-31", view = "latest", via = "odbc", con = con)
    expect_equal(then$entity_id, c("C1", "C3"))
    expect_equal(then$batch_id, c("b0", "b0"))
    now <- yws_predictions(as_of = "2026-11-30", view = "latest", via = "odbc", con = con)
    expect_equal(now$entity_id, c("C1", "C2", "C3", "O'Brien"))
    expect_equal(now$batch_id, c("b1", "b1", "b0", "b1"))  # C3 was not scored on 11-30
  })

  test_that(paste(kind, "yws_batches lists the audit view, newest first (item 11)"), {
    con <- connect()
    withr::local_options(yws.catalog = "")
    out <- yws_batches(via = "odbc", con = con)
    expect_equal(out$batch_id, c("b1-chal", "b1", "b1-old", "b0"))
    expect_equal(out$rows_quarantined, c(0, 1, 0, 0))
    expect_equal(out$drift_status, c("OK", "ALERT", NA, NA))
    expect_equal(out$drift_worst_psi, c(0.02, 0.31, NA, NA))
    expect_s3_class(out$as_of_date, "Date")
    expect_equal(yws_batches(as_of = "2026-10-31", via = "odbc", con = con)$batch_id, "b0")
  })

  test_that(paste(kind, "values that could break out of a literal never reach the driver"), {
    con <- connect()
    withr::local_options(yws.catalog = "")
    evil <- "b1' OR '1'='1"
    expect_error(yws_predictions(batch_id = evil, via = "odbc", con = con),
                 class = "yws_input_error")
    expect_error(yws_predictions(as_of = "2026-11-30' --", via = "odbc", con = con),
                 class = "yws_input_error")
  })

  test_that(paste(kind, "query errors are classed yws_odbc_error"), {
    con <- connect()
    withr::local_options(yws.catalog = "", yws.schema = "nope")
    expect_error(yws_predictions(via = "odbc", con = con), class = "yws_odbc_error")
  })
}

test_that("anything but a connection is refused", {
  expect_error(yws_predictions(via = "odbc", con = "not a channel"), class = "yws_input_error")
  expect_error(yws_predictions(via = "odbc"), class = "yws_input_error")
  expect_equal(yws:::quote_literal("O'Brien"), "'O''Brien'")
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  con <- DBI::dbConnect(RSQLite::SQLite(), ":memory:")
  DBI::dbDisconnect(con)
  expect_error(yws_predictions(via = "odbc", con = con), "no longer valid",
               class = "yws_input_error")
})

test_that("connection strings split host and port (item 9)", {
  expect_equal(
    yws_odbc_connection_string(host = "https://adb-1.2.azuredatabricks.net",
                               http_path = "/sql/1.0/warehouses/abc", token = "dapi-x"),
    paste0("Driver=Simba Spark ODBC Driver;Host=adb-1.2.azuredatabricks.net;Port=443;",
           "HTTPPath=/sql/1.0/warehouses/abc;SSL=1;ThriftTransport=2;AuthMech=3;UID=token;",
           "PWD=dapi-x"))
  s <- yws_odbc_connection_string(host = "https://proxy.internal:8443/",
                                  http_path = "/p", token = "t")
  expect_match(s, "Host=proxy.internal;Port=8443;", fixed = TRUE)
  s <- yws_odbc_connection_string(host = "proxy.internal:8443", http_path = "/p",
                                  token = "t", port = 9443)
  expect_match(s, "Host=proxy.internal;Port=9443;", fixed = TRUE)
  expect_error(yws_odbc_connection_string(host = "h", http_path = "/p;Driver=evil",
                                          token = "t"), class = "yws_input_error")
  expect_error(yws_odbc_connection_string(host = "h", http_path = "/p", token = "t",
                                          port = "443;x"), class = "yws_input_error")
})

test_that("a failed ODBC connection carries the driver's reason (item 9)", {
  skip_if_not_installed("RODBC")
  err <- expect_error(yws_odbc_connect(connection = "Driver=NoSuchDriver;Host=h"),
                      class = "yws_odbc_error")
  expect_match(conditionMessage(err), "NoSuchDriver|not found|Can't open lib",
               ignore.case = TRUE)
  expect_true(length(err$reasons) > 0)
})
