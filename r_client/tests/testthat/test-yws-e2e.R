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

# Issue 16: on-demand scoring through yws serve's Model Serving API. It runs after the first
# test trained the model; it skips while the server has no serving endpoint.
serving_endpoint_e2e <- function() {
  listed <- tryCatch(yws_perform(yws_request("/api/2.0/serving-endpoints")),
                     yws_http_404 = function(e) NULL, yws_http_405 = function(e) NULL,
                     yws_http_501 = function(e) NULL)
  names <- vapply(listed$endpoints %||% list(), function(e) e$name %||% "", character(1))
  skip_if(!length(names), "yws serve has no serving endpoint (yet)")
  expect_true("yws_lr" %in% names)  # the bundle's name, yws_predict()'s default
  "yws_lr"
}

# The feature rows of a day, read as the local stack's owner through the yws command (the
# R users' token may read the views only, not the base table).
features_e2e <- function(day) {
  yws <- file.path(dirname(Sys.getenv("RETICULATE_PYTHON")), "yws")
  skip_if_not(file.exists(yws), "no yws command beside RETICULATE_PYTHON")
  sql <- paste0("SELECT * FROM ", yws_table("yws_features"),
                " WHERE as_of_date = DATE '", day, "' ORDER BY customer_id")
  csv <- system2(yws, c("sql", "query", "--format", "csv", shQuote(sql)), stdout = TRUE)
  features <- utils::read.csv(text = csv, stringsAsFactors = FALSE, na.strings = c("", "NA"))
  features$as_of_date <- as.Date(features$as_of_date)
  for (col in c("has_autopay", "is_business")) {  # the table's BOOLEANs, as R's logicals
    features[[col]] <- as.logical(toupper(features[[col]]))
  }
  tibble::as_tibble(features)
}

test_that("yws_predict() scores rows on yws serve's endpoint and says why it refuses some", {
  skip_unless_e2e()
  endpoint <- serving_endpoint_e2e()
  day <- as.Date(Sys.getenv("YWS_E2E_SCORE_DAY"))
  rows <- tibble::tibble(
    customer_id = c("W1", "W2", "W3", "W4", "W5"), as_of_date = day,
    tenure_months = c(40, 12, Inf, 40, 40), monthly_spend = 55.5,
    balance_utilization = c(0.3, 0.95, 0.3, 0.3, 0.3), days_past_due_avg = c(0, 25, 0, 0, 0),
    late_payments_12m = c(0L, 6L, 0L, 0L, 0L), credit_limit = c(5000, 800, 5000, NA, 5000),
    support_calls_90d = c(1, 7, 1, 1, 1), has_autopay = c(TRUE, FALSE, TRUE, TRUE, TRUE),
    is_business = FALSE, region = factor(c("north", "west", "north", "north", "north")),
    product_tier = c("gold", "bronze", "gold", "gold", "diamond"),
    channel = c("web", "phone", "web", "web", "web"))
  w <- expect_warning(out <- yws_predict(rows), class = "yws_rejected_rows")
  expect_identical(w$rows, 3:5)
  expect_named(out, c(names(rows), "probability", "prediction", "band", "error"))
  expect_identical(out$customer_id, rows$customer_id)
  expect_true(all(out$probability[1:2] > 0 & out$probability[1:2] < 1))
  expect_gt(out$probability[2], out$probability[1])  # the troubled account is riskier
  expect_identical(levels(out$band), contract$bands)
  expect_false(anyNA(out$band[1:2]))
  expect_identical(out$error[1:2], c(NA_character_, NA_character_))
  expect_true(all(is.na(out$probability[3:5])) && all(is.na(out$band[3:5])))
  expect_match(out$error[3], "tenure_months")
  expect_match(out$error[4], "credit_limit")
  expect_match(out$error[5], "product_tier")
  # a request per row gives the same answer, in the same order
  again <- suppressWarnings(yws_predict(rows, endpoint = endpoint, chunk_size = 1))
  expect_identical(again, out)
  expect_error(yws_predict(rows, endpoint = endpoint, on_error = "abort"),
               class = "yws_rejected_rows")
  expect_error(yws_predict(rows[, c("customer_id", "tenure_months")], endpoint = endpoint),
               "credit_limit", class = "yws_input_error")
  expect_error(yws_predict(rows, endpoint = "yws-no-such-endpoint"), class = "yws_http_404")
})

test_that("yws_predict() gives the batch job's probabilities for the rows it scored", {
  skip_unless_e2e()
  endpoint <- serving_endpoint_e2e()
  day <- Sys.getenv("YWS_E2E_SCORE_DAY")
  batch <- yws_predictions(as_of = day)
  features <- features_e2e(day)
  expect_gt(nrow(features), 1000)
  scored <- withCallingHandlers(yws_predict(features, endpoint = endpoint, chunk_size = 500),
                                yws_rejected_rows = function(w) invokeRestart("muffleWarning"))
  expect_identical(scored$customer_id, features$customer_id)
  at <- match(batch$entity_id, scored$customer_id)
  expect_false(anyNA(at))
  expect_true(all(is.na(scored$error[at])))
  expect_equal(scored$probability[at], batch$probability, tolerance = 1e-9)
  expect_identical(scored$band[at], batch$band)
  # asked for them, the endpoint gives each row the reasons the batch job stored for it
  explained <- withCallingHandlers(
    yws_predict(features, endpoint = endpoint, chunk_size = 500, reasons = TRUE),
    yws_rejected_rows = function(w) invokeRestart("muffleWarning"))
  expect_identical(explained$probability, scored$probability)
  for (k in 1:3) {
    expect_identical(explained[[paste0("reason_", k)]][at], batch[[paste0("reason_", k)]])
    expect_equal(explained[[paste0("reason_", k, "_contribution")]][at],
                 batch[[paste0("reason_", k, "_contribution")]], tolerance = 1e-9)
  }
  expect_gt(sum(!is.na(explained$reason_1[at])), length(at) / 2)
  # a row the endpoint refuses is one the batch set aside
  held <- yws_quarantine(unique(batch$batch_id))
  expect_true(all(scored$customer_id[!is.na(scored$error)] %in% held$entity_id))
})

# Issue 17: an R user's glm in the registry, beside the SparkML model the first test trained:
# fitted on the governed features table, registered (@challenger, with the gate's verdict),
# compared with yws_lr@champion on the same held-out rows, promoted to @champion of its own
# name, and scored by the batch job exactly as predict() scores it in this session. Its batch
# is not official: only the deployment's model (yws_lr) at @champion makes one.
test_that("an R glm: register, compare, promote, score as R does (issue 17)", {
  skip_unless_e2e()
  train_day <- Sys.getenv("YWS_E2E_TRAIN_DAY")
  score_day <- Sys.getenv("YWS_E2E_SCORE_DAY")
  prefix <- paste0(yws_catalog(), ".", yws_schema(), ".")
  name <- paste0(prefix, "yws_glm_r")
  d <- yws_features(as_of = train_day)
  expect_gt(nrow(d), 1000)
  fit <- glm(defaulted_90d ~ tenure_months + balance_utilization + region + has_autopay,
             family = binomial, data = d)
  expect_true(fit$converged)

  v <- yws_register_model(fit, name = name, timeout = 600)
  expect_s3_class(v, "yws_model_version")
  expect_identical(v$name, name)
  expect_identical(v$family, "r-glm")
  expect_true("challenger" %in% v$aliases)
  expect_false("champion" %in% v$aliases)  # registering never promotes
  # a new name has no champion: the gate would promote it, and says why
  expect_null(v$gate$champion_metrics)
  expect_true(v$gate$promote)
  expect_match(v$gate$reason, "no champion")
  expect_gt(v$gate$metrics$auc_roc, 0.5)

  cmp <- yws_compare_models(paste0(prefix, "yws_lr@champion"), v, as_of = train_day,
                            timeout = 600)
  expect_identical(cmp$ref, c(paste0(prefix, "yws_lr@champion"), paste0(name, "/", v$version)))
  expect_identical(cmp$family, c("spark-lr", "r-glm"))
  expect_identical(cmp$version[2], v$version)
  expect_length(unique(cmp$rows), 1)  # both families on the same held-out rows
  expect_gt(cmp$rows[1], 100)
  expect_true(all(cmp$auc_roc > 0.5 & cmp$auc_roc <= 1))
  # the gate scored the same rows of the same date with the same model
  expect_equal(cmp$auc_roc[2], v$gate$metrics$auc_roc, tolerance = 1e-12)

  expect_message(p <- yws_promote(v, as_of = train_day, timeout = 600), "@champion",
                 class = "yws_promoted")
  expect_true(p$promoted)
  expect_true(p$gate$promote)
  expect_match(p$gate$reason, "no champion")
  expect_true(all(c("champion", "challenger") %in% p$aliases))
  expect_identical(p$version, v$version)

  expect_message(preds <- yws_score(as_of = score_day, model = paste0(name, "@champion"),
                                    timeout = 600),
                 "yws_quarantine", class = "yws_quarantined_rows")  # the generated anomalies
  batch <- unique(preds$batch_id)
  expect_length(batch, 1)
  expect_equal(unique(preds$model_name), name)
  expect_equal(unique(as.character(preds$model_version)), v$version)
  expect_identical(preds, yws_predictions(batch_id = batch))
  held <- yws_quarantine(batch)
  audit <- yws_batches(as_of = score_day)
  audit <- audit[audit$batch_id == batch, ]
  expect_equal(nrow(audit), 1)
  # another model's @champion: the batch is the R user's, not the deployment's official one
  expect_false(audit$official)

  # R's own answer for every row of that snapshot, in this session: NA for a missing value,
  # and none for a level the fit never saw (predict() would stop for the whole call)
  new <- yws_features(as_of = score_day)
  expect_equal(audit$rows_read, nrow(new))
  expect_equal(audit$rows_scored, nrow(preds))
  expect_equal(audit$rows_quarantined, nrow(held))
  expect_equal(audit$rows_read, nrow(preds) + nrow(held))
  unseen <- !is.na(new$region) & !(as.character(new$region) %in% fit$xlevels$region)
  expect_r <- rep(NA_real_, nrow(new))
  expect_r[!unseen] <- predict(fit, newdata = new[!unseen, ], type = "response",
                               na.action = na.pass)
  # every row R has no answer for was held back, with a reason naming a column R reads
  none <- new$customer_id[is.na(expect_r)]
  expect_gt(length(none), 0)
  expect_length(intersect(none, preds$entity_id), 0)
  expect_true(all(none %in% held$entity_id))
  reads <- attr(terms(fit), "term.labels")
  names_r <- paste0("\\b(", paste(reads, collapse = "|"), ")\\b")
  dup <- new$customer_id[duplicated(new$customer_id)]  # held whatever the model says
  expect_gt(length(dup), 0)
  expect_true(all(grepl(names_r, held$reason[held$entity_id %in% setdiff(none, dup)])))
  expect_true(all(grepl("duplicate customer_id in the snapshot",
                        held$reason[held$entity_id %in% dup], fixed = TRUE)))
  # every other held-back row broke a rule of the snapshot itself (a duplicated key, an
  # infinite value in a column R does not read), as it would for the SparkML model
  other <- held[!held$entity_id %in% none, ]
  expect_false(any(grepl(names_r, other$reason)))
  expect_true(all(grepl("^(duplicate customer_id in the snapshot|[a-z_0-9]+ is (infinite|null( or NaN)?))(; |$)",
                        other$reason)))
  expect_setequal(c(preds$entity_id, held$entity_id), new$customer_id)
  r <- expect_r[match(preds$entity_id, new$customer_id)]
  expect_lte(max(abs(preds$probability - r)), 1e-12)
  expect_equal(preds$probability, r, tolerance = 1e-12)
})

# The registry's model names, read as the local stack's owner (the R users' token runs jobs;
# it cannot list the registry).
registered_models_e2e <- function() {
  python <- Sys.getenv("RETICULATE_PYTHON")
  skip_if_not(file.exists(python), "no RETICULATE_PYTHON to read the registry with")
  code <- paste("import mlflow; from yws.config import Settings; from yws.model import registry;",
                "registry.configure(Settings.load());",
                "print('\\n'.join(m.name for m in mlflow.MlflowClient().search_registered_models()))")
  out <- system2(python, c("-c", shQuote(code)), stdout = TRUE, stderr = FALSE)
  expect_null(attr(out, "status"))
  out
}

test_that("an R model named outside the jobs' catalog and schema is refused; nothing registered", {
  skip_unless_e2e()
  d <- yws_features(as_of = Sys.getenv("YWS_E2E_TRAIN_DAY"))
  fit <- glm(defaulted_90d ~ tenure_months + region, family = binomial, data = d)
  home <- paste0(yws_catalog(), ".", yws_schema())
  before <- registered_models_e2e()
  expect_true(paste0(home, ".yws_lr") %in% before)
  for (name in c(paste0("yws_elsewhere.", yws_schema(), ".yws_glm_r"),
                 paste0(yws_catalog(), ".elsewhere.yws_glm_r"))) {
    # the R package refuses before it uploads or runs anything
    err <- expect_error(yws_register_model(fit, name = name, timeout = 600),
                        class = "yws_model_name_error")
    expect_s3_class(err, "yws_input_error")
    expect_match(conditionMessage(err), name, fixed = TRUE)
    expect_match(conditionMessage(err), home, fixed = TRUE)
    # and the job, run directly with a description that is in the volume, refuses it too
    path <- suppressMessages(upload_description(as.character(yws_glm_json(yws_export_glm(fit)))))
    run <- yws_run_job("yws_register_r_model", list(description = path, model_name = name))
    err <- expect_error(suppressMessages(yws_wait(run, timeout = 600)), class = "yws_run_failed")
    expect_match(err$task_error, paste0("model '", name, "' is not in ", home), fixed = TRUE)
  }
  expect_identical(registered_models_e2e(), before)
})
