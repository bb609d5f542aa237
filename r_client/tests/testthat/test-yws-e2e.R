# Against a real `yws serve` on the local target, started by `make test` (scripts/test-r.sh),
# which sets YWS_E2E=1 with DATABRICKS_HOST / DATABRICKS_TOKEN for it. The tests run in order:
# the first one trains the model the others score with.
skip_unless_e2e <- function() {
  skip_if_not(identical(Sys.getenv("YWS_E2E"), "1"), "no yws serve to test against")
  skip_if_not_installed("withr")
}

test_that("train, yws_score() and the rows equal the predictions table for that batch", {
  skip_unless_e2e()
  run <- yws_train(as_of = Sys.getenv("YWS_E2E_TRAIN_DAY"), timeout = 600)
  expect_s3_class(run, "yws_run")
  expect_message(preds <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), timeout = 600),
                 "yws_quarantine", class = "yws_quarantined_rows")  # the generated anomalies
  expect_s3_class(preds, "tbl_df")
  expect_gt(nrow(preds), 0)
  batch <- unique(preds$batch_id)
  expect_length(batch, 1)
  expect_match(batch, "^r-")
  expect_equal(unique(format(preds$as_of_date)), Sys.getenv("YWS_E2E_SCORE_DAY"))
  # the rows the batch set aside, and why, through the quarantine view
  held <- yws_quarantine(batch)
  expect_s3_class(held, "tbl_df")
  expect_gt(nrow(held), 0)
  expect_equal(unique(held$batch_id), batch)
  expect_true(all(nzchar(held$reason)))
  expect_false("record" %in% names(held))
  expect_length(intersect(held$entity_id, preds$entity_id[!is.na(preds$entity_id)]), 0)
  # the same batch through the Python read API (reticulate), in a process of its own so an
  # embedded interpreter never shares this one
  skip_if_not_installed("reticulate")
  rds <- tempfile(fileext = ".rds")
  code <- sprintf(paste0('library(yws); saveRDS(list(all = yws_py_predictions(batch_id = "%s"),',
                         ' red = yws_py_predictions(batch_id = "%s", bands = "RED"),',
                         ' warnings = yws_py_predictions(view = "warnings")), "%s")'),
                  batch, batch, rds)
  log <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)), stdout = TRUE,
                 stderr = TRUE)
  expect_true(file.exists(rds), info = paste(log, collapse = "\n"))
  py <- readRDS(rds)
  direct <- py$all
  expect_equal(nrow(preds), nrow(direct))
  expect_equal(preds$entity_id, direct$entity_id)
  expect_equal(preds$probability, direct$probability, tolerance = 1e-12)
  expect_equal(as.character(preds$band), as.character(direct$band))
  # item 14: one band is a band, not its letters; the bridge types columns as the SQL path
  expect_equal(py$red$entity_id, preds$entity_id[preds$band == "RED"])
  sql_warnings <- yws_predictions(view = "warnings")
  expect_type(py$warnings$already_flagged, "logical")
  expect_equal(py$warnings$already_flagged, sql_warnings$already_flagged)
  expect_equal(py$warnings$band, sql_warnings$band)
})

test_that("a subset, and a run started now and read later", {
  skip_unless_e2e()
  day <- Sys.getenv("YWS_E2E_SCORE_DAY")
  preds <- yws_predictions(as_of = day)
  subset <- suppressMessages(yws_score(as_of = day, entities = head(preds$entity_id, 3),
                                       timeout = 600))
  expect_equal(sort(subset$entity_id), sort(head(preds$entity_id, 3)))
  later <- yws_score(as_of = day, wait = FALSE)
  expect_s3_class(later, "yws_run")
  yws_wait(later, timeout = 600)
  expect_equal(nrow(yws_predictions(batch_id = later$batch_id)), nrow(preds))
})

test_that("a batch id reused for another date returns that date's rows (item 1)", {
  skip_unless_e2e()
  first <- suppressMessages(yws_score(as_of = Sys.getenv("YWS_E2E_TRAIN_DAY"),
                                      batch_id = "r-e2e-reused", timeout = 600))
  expect_equal(unique(format(first$as_of_date)), Sys.getenv("YWS_E2E_TRAIN_DAY"))
  second <- suppressMessages(yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"),
                                       batch_id = "r-e2e-reused", timeout = 600))
  expect_equal(unique(format(second$as_of_date)), Sys.getenv("YWS_E2E_SCORE_DAY"))
  expect_equal(unique(second$batch_id), "r-e2e-reused")
  # the same call again is the same run (its idempotency token), and the same rows
  again <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), batch_id = "r-e2e-reused",
                     wait = FALSE)
  expect_equal(yws_run_status(again)$job_parameters$as_of_date, Sys.getenv("YWS_E2E_SCORE_DAY"))
})

test_that("batches, one batch per date, and what the audit says (item 11)", {
  skip_unless_e2e()
  day <- Sys.getenv("YWS_E2E_SCORE_DAY")
  batches <- yws_batches(as_of = day)
  expect_s3_class(batches, "tbl_df")
  expect_gt(nrow(batches), 1)  # scored several times above
  expect_true(all(c("batch_id", "as_of_date", "model_version", "rows_read", "rows_scored",
                    "rows_quarantined", "status") %in% names(batches)))
  expect_true(all(batches$rows_quarantined > 0))
  expect_equal(batches$rows_read, batches$rows_scored + batches$rows_quarantined)
  one <- yws_predictions(as_of = day)
  expect_length(unique(one$batch_id), 1)
  expect_equal(unique(one$batch_id), batches$batch_id[batches$official][1])
  expect_false(anyDuplicated(one$entity_id) > 0)
  latest <- yws_predictions(as_of = day, view = "latest")
  expect_false(anyDuplicated(latest$entity_id) > 0)
  expect_true(all(format(latest$as_of_date) <= day))
})

test_that("the vignette's local chunks run as written against yws serve (item 13)", {
  skip_unless_e2e()
  path <- test_path("..", "..", "vignettes", "from-odbc-to-yws-score.Rmd")
  skip_if_not(file.exists(path), "the vignette source is not here")
  lines <- readLines(path)
  starts <- grep("^```\\{r (settings-local|local-[a-z]+)\\}", lines)
  chunks <- vapply(starts, function(i) {
    end <- i + which(lines[-seq_len(i)] == "```")[1]
    paste(lines[(i + 1):(end - 1)], collapse = "\n")
  }, character(1))
  expect_length(chunks, 5)
  code <- paste(chunks, collapse = "\n")
  # the settings chunk names yws up's port and token; the test server has its own
  code <- sub("http://127.0.0.1:8765", Sys.getenv("DATABRICKS_HOST"), code, fixed = TRUE)
  code <- sub("<the token yws up printed>", Sys.getenv("DATABRICKS_TOKEN"), code, fixed = TRUE)
  withr::local_envvar(DATABRICKS_HOST = Sys.getenv("DATABRICKS_HOST"),
                      DATABRICKS_TOKEN = Sys.getenv("DATABRICKS_TOKEN"),
                      YWS_WAREHOUSE_ID = Sys.getenv("YWS_WAREHOUSE_ID"))
  env <- new.env()
  capture.output(suppressMessages(eval(parse(text = code), envir = env)))
  expect_s3_class(env$preds, "tbl_df")
  expect_gt(nrow(env$preds), 0)
  expect_equal(unique(env$preds$batch_id), env$run$batch_id)
})

test_that("a failing job over yws serve raises yws_run_failed with its message", {
  skip_unless_e2e()
  run <- yws_run_job("yws_score", list(model_alias = "staging"))
  err <- expect_error(yws_wait(run, timeout = 600), class = "yws_run_failed")
  expect_match(err$task_error, "no version with alias @staging")
})

test_that("Ctrl-C while yws_score waits cancels the run on the server (item 6)", {
  skip_unless_e2e()
  # a run ahead of it in the job's queue (max_concurrent_runs 1) keeps it waiting, so the
  # interrupt lands before it could publish anything
  ahead <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), wait = FALSE)
  interrupt_in(1.5)
  msgs <- character()
  got <- withCallingHandlers(
    tryCatch(yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), batch_id = "r-e2e-ctrl-c",
                       timeout = 600),
             interrupt = function(e) "interrupted"),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
  expect_equal(got, "interrupted")
  text <- paste(msgs, collapse = "\n")
  expect_match(text, "batch r-e2e-ctrl-c was cancelled", fixed = TRUE)
  id <- as.numeric(sub("^.*Interrupted: run ([0-9]+),.*$", "\\1",
                       grep("Interrupted: run", msgs, value = TRUE)[1]))
  deadline <- Sys.time() + 120
  repeat {
    status <- yws_run_status(id)
    if (status$life_cycle_state %in% c("TERMINATED", "SKIPPED", "INTERNAL_ERROR") ||
        Sys.time() > deadline) break
    Sys.sleep(0.5)
  }
  expect_equal(status$life_cycle_state, "TERMINATED")
  expect_equal(status$result_state, "CANCELED")
  expect_equal(nrow(yws_predictions(batch_id = "r-e2e-ctrl-c")), 0)
  expect_equal(suppressMessages(yws_wait(ahead, timeout = 600))$result_state, "SUCCESS")
})
