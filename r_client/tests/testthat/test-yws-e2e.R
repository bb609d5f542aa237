# Against a real `yws serve` on the local target, started by `make test` (scripts/test-r.sh),
# which sets YWS_E2E=1 with DATABRICKS_HOST / DATABRICKS_TOKEN for it.
test_that("train, yws_score() and the rows equal the predictions table for that batch", {
  skip_if_not(identical(Sys.getenv("YWS_E2E"), "1"), "no yws serve to test against")
  run <- yws_train(as_of = Sys.getenv("YWS_E2E_TRAIN_DAY"), timeout = 600)
  expect_s3_class(run, "yws_run")
  preds <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), timeout = 600)
  expect_gt(nrow(preds), 0)
  batch <- unique(preds$batch_id)
  expect_length(batch, 1)
  expect_match(batch, "^r-")
  # the same batch through the Python read API (reticulate), in a process of its own so an
  # embedded interpreter never shares this one
  skip_if_not_installed("reticulate")
  rds <- tempfile(fileext = ".rds")
  code <- sprintf('library(yws); saveRDS(yws_py_predictions(batch_id = "%s"), "%s")', batch, rds)
  log <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)), stdout = TRUE,
                 stderr = TRUE)
  expect_true(file.exists(rds), info = paste(log, collapse = "\n"))
  direct <- readRDS(rds)
  expect_equal(nrow(preds), nrow(direct))
  expect_equal(preds$entity_id, direct$entity_id)
  expect_equal(preds$probability, direct$probability, tolerance = 1e-12)
  expect_equal(as.character(preds$band), as.character(direct$band))
  subset <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"),
                      entities = head(preds$entity_id, 3), timeout = 600)
  expect_equal(sort(subset$entity_id), sort(head(preds$entity_id, 3)))
  later <- yws_score(as_of = Sys.getenv("YWS_E2E_SCORE_DAY"), wait = FALSE)
  expect_s3_class(later, "yws_run")
  yws_wait(later, timeout = 600)
  expect_equal(nrow(yws_predictions(batch_id = later$batch_id)), nrow(preds))
})

test_that("a failing job over yws serve raises yws_run_failed with its message", {
  skip_if_not(identical(Sys.getenv("YWS_E2E"), "1"), "no yws serve to test against")
  run <- yws_run_job("yws_score", list(model_alias = "staging"))
  err <- expect_error(yws_wait(run, timeout = 600), class = "yws_run_failed")
  expect_match(err$task_error, "no version with alias @staging")
})
