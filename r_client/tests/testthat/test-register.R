# Registering, comparing and promoting an R model (issue 17), against a fake Files API and
# Jobs API (webfakes). The contract with the jobs: the description is uploaded with the Files
# API's "Upload a file", `PUT /api/2.0/fs/files{file_path}` with the raw bytes as an octet
# stream and the query parameter `overwrite`; a successful upload has no response body
# (Databricks REST API reference, https://docs.databricks.com/api/files/v2/upload-file).
# Each job's task ends its stdout (`GET /api/2.2/jobs/runs/get-output` -> `logs`) with one
# JSON object.

register_jobs <- list(
  list(job_id = 101, name = "yws_register_r_model",
       parameters = c("description", "model_name", "as_of")),
  list(job_id = 102, name = "yws_compare_models", parameters = c("models", "as_of")),
  list(job_id = 103, name = "yws_promote_model",
       parameters = c("model_name", "version", "as_of", "force"))
)

# `logs`: the task's stdout, by job name; `final`: the runs' end state; `upload_status`: the
# Files API's answer; uploads are written to `uploads` (a folder) with their Content-Type.
registry_routes <- function(logs = list(), final = run_state("TERMINATED", "SUCCESS"),
                            upload_status = 200, uploads = tempfile("uploads"),
                            never_ends = FALSE) {
  dir.create(uploads, showWarnings = FALSE)
  list(logs, final, upload_status, uploads, never_ends)  # evaluated here, sent to the server
  jobs <- register_jobs
  running <- run_state("RUNNING")
  key_of <- list(yws_register_r_model = "register", yws_compare_models = "compare",
                 yws_promote_model = "promote")
  serving_logs <- job_logs(list(endpoint = "yws_lr", updated = FALSE))
  job_of <- function(id) Filter(function(j) format(j$job_id) == format(id), jobs)[[1]]
  list(
    route("put", webfakes::new_regexp("^/api/2[.]0/fs/files/"), function(req, res) {
      if (upload_status != 200) {
        return(res$set_status(upload_status)$send_json(list(
          error_code = "PERMISSION_DENIED",
          message = "User ana@corp does not have WRITE VOLUME on Volume 'yws_dev.ml.r_models'."),
          auto_unbox = TRUE))
      }
      file <- file.path(uploads, basename(req$path))
      writeBin(req$.body, file)
      writeLines(as.character(req$get_header("Content-Type")), paste0(file, ".type"))
      res$set_status(200)$send("")
    }),
    route("get", "/api/2.2/jobs/list", function(req, res) {
      keep <- Filter(function(j) identical(j$name, req$query$name), jobs)
      res$send_json(list(jobs = lapply(keep, function(j) {
        list(job_id = j$job_id, settings = list(name = j$name))
      })), auto_unbox = TRUE)
    }),
    route("get", "/api/2.2/jobs/get", function(req, res) {
      j <- job_of(req$query$job_id)
      res$send_json(list(job_id = j$job_id, settings = list(
        name = j$name,
        parameters = lapply(j$parameters, function(p) list(name = p, default = "")))),
        auto_unbox = TRUE)
    }),
    route("post", "/api/2.2/jobs/run-now", function(req, res) {
      runs <- req$app$locals$runs
      token <- req$json$idempotency_token
      known <- Filter(function(r) identical(r$token, token), runs)
      if (length(known)) return(res$send_json(list(run_id = known[[1]]$run_id), auto_unbox = TRUE))
      run_id <- 9007199254 + length(runs)
      runs[[length(runs) + 1]] <- list(run_id = run_id, token = token,
                                       job = job_of(req$json$job_id)$name,
                                       params = if (is.null(req$json$job_parameters)) list() else
                                         req$json$job_parameters)
      req$app$locals$runs <- runs
      res$send_json(list(run_id = run_id), auto_unbox = TRUE)
    }),
    route("get", "/api/2.2/jobs/runs/get", function(req, res) {
      run <- Filter(function(r) format(r$run_id, scientific = FALSE) == req$query$run_id,
                    req$app$locals$runs)[[1]]
      state <- if (never_ends) running else final
      task_run <- run$run_id + 1000
      res$send_json(list(
        run_id = run$run_id,
        job_parameters = unname(Map(function(n, v) list(name = n, value = v),
                                    names(run$params), run$params)),
        state = state,
        # as jobs/resources/yws_r_models.yml: the answering task, and yws_promote_model's
        # serving task after it, which prints a JSON object of its own
        tasks = c(list(list(task_key = key_of[[run$job]], run_id = task_run,
                            attempt_number = 0, state = state)),
                  if (identical(run$job, "yws_promote_model"))
                    list(list(task_key = "serving", run_id = run$run_id + 2000,
                              attempt_number = 0, state = state)))),
        auto_unbox = TRUE, null = "null")
    }),
    route("get", "/api/2.2/jobs/runs/get-output", function(req, res) {
      task_run <- as.numeric(req$query$run_id)
      serving <- Filter(function(r) r$run_id + 2000 == task_run, req$app$locals$runs)
      if (length(serving)) {
        return(res$send_json(list(logs = serving_logs, logs_truncated = FALSE),
                             auto_unbox = TRUE))
      }
      run <- Filter(function(r) r$run_id + 1000 == task_run, req$app$locals$runs)[[1]]
      if (!identical(final$result_state, "SUCCESS")) {
        return(res$send_json(list(error = "PermissionError: no USE SCHEMA on yws_dev.ml",
                                  logs = "Traceback ..."), auto_unbox = TRUE))
      }
      text <- if (is.null(logs[[run$job]])) "" else logs[[run$job]]
      res$send_json(list(logs = text, logs_truncated = FALSE,
                         metadata = list(run_id = task_run)), auto_unbox = TRUE)
    }),
    route("post", "/api/2.2/jobs/runs/cancel", function(req, res) {
      res$send_json(structure(list(), names = character()), auto_unbox = TRUE)
    })
  )
}

# What the jobs print: log lines, then the answer on the last line, as json.dumps writes it.
job_logs <- function(value, before = "INFO yws.jobs: loading model {\"name\": \"x\"}\n") {
  paste0(before, jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA), "\n")
}

register_answer <- list(
  model_name = "yws_dev.ml.yws_glm_r", version = "3", aliases = list("challenger"),
  family = "r-glm", run_id = "b5e0c1f2",
  gate = list(metrics = list(auc_roc = 0.8123, auc_pr = 0.41, log_loss = 0.35, brier = 0.11),
              champion_metrics = list(auc_roc = 0.8011, auc_pr = 0.4, log_loss = 0.36,
                                      brier = 0.112),
              rows = 4000, promote = TRUE, reason = "auc_roc 0.8123 >= champion 0.8011"))

demo_fit <- function(with_features_attr = TRUE) {
  set.seed(17)
  n <- 200
  d <- data.frame(tenure_months = rpois(n, 30), has_autopay = runif(n) < 0.5,
                  region = factor(sample(c("north", "south", "east"), n, replace = TRUE)))
  d$defaulted_90d <- rbinom(n, 1, plogis(-0.5 - 0.02 * d$tenure_months))
  if (with_features_attr) {
    attr(d, "yws_features") <- list(table = "yws_dev.ml.yws_features", as_of = "2026-08-31")
  }
  glm(defaulted_90d ~ tenure_months + has_autopay + region, family = binomial, data = d)
}

paths <- function(fake) vapply(requests(fake), function(r) r$path, character(1))

run_nows <- function(fake) Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake))

sha256_file <- function(path) {
  out <- suppressWarnings(system2("sha256sum", shQuote(path), stdout = TRUE, stderr = FALSE))
  if (!length(out)) skip("sha256sum is not available")
  sub(" .*$", "", out[[1]])
}

test_that("yws_register_model uploads the description, then runs the registration job", {
  uploads <- tempfile("uploads")
  fake <- fake_api(registry_routes(logs = list(yws_register_r_model = job_logs(register_answer)),
                                   uploads = uploads))
  with_fake_env(fake)
  fit <- demo_fit()
  v <- suppressMessages(yws_register_model(fit, name = "yws_dev.ml.yws_glm_r"))

  # the upload: the exact bytes of yws_glm_json(), named by their SHA-256, as an octet stream
  json <- as.character(yws_glm_json(yws_export_glm(fit, as_of = "2026-08-31")))
  files <- list.files(uploads, pattern = "[.]json$", full.names = TRUE)
  expect_length(files, 1)
  expect_identical(readBin(files, "raw", 1e6), charToRaw(json))
  sha <- sha256_file(files)
  expect_identical(basename(files), paste0(sha, ".json"))
  expect_identical(readLines(paste0(files, ".type")), "application/octet-stream")
  reqs <- requests(fake)
  put <- Filter(function(r) toupper(r$method) == "PUT", reqs)
  expect_length(put, 1)
  expect_identical(put[[1]]$path, paste0("/api/2.0/fs/files/Volumes/yws_dev/ml/r_models/",
                                         sha, ".json"))
  expect_identical(put[[1]]$query, list(overwrite = "true"))
  expect_identical(put[[1]]$auth, "Bearer dapi-r-test")

  # then the run, with the Volume path, the full name and the export's as_of
  expect_lt(match("PUT", toupper(vapply(reqs, function(r) r$method, ""))),
            match("/api/2.2/jobs/run-now", paths(fake)))
  post <- run_nows(fake)
  expect_length(post, 1)
  expect_identical(post[[1]]$body$job_id, 101L)
  expect_identical(post[[1]]$body$job_parameters, list(
    description = paste0("/Volumes/yws_dev/ml/r_models/", sha, ".json"),
    model_name = "yws_dev.ml.yws_glm_r", as_of = "2026-08-31"))
  expect_match(post[[1]]$body$idempotency_token, "^[0-9a-f]{64}$")
  outputs <- Filter(function(r) r$path == "/api/2.2/jobs/runs/get-output", reqs)
  expect_identical(outputs[[1]]$query$run_id, "9007200254")  # the task's run, not the job's

  # the answer
  expect_s3_class(v, "yws_model_version")
  expect_identical(v$name, "yws_dev.ml.yws_glm_r")
  expect_identical(v$version, "3")
  expect_identical(v$aliases, "challenger")
  expect_identical(v$family, "r-glm")
  expect_identical(v$run_id, "b5e0c1f2")
  expect_equal(v$job_run_id, 9007199254)
  expect_equal(v$gate$metrics$auc_roc, 0.8123)
  expect_equal(v$gate$champion_metrics$auc_roc, 0.8011)
  expect_true(v$gate$promote)
  expect_equal(v$gate$rows, 4000)
  printed <- capture.output(print(v))
  expect_identical(printed[[1]],
                   "<yws_model_version> yws_dev.ml.yws_glm_r version 3 (r-glm) @challenger")
  expect_match(printed[[2]], "gate (4000 rows): passes - auc_roc 0.8123 >= champion 0.8011",
               fixed = TRUE)
  expect_match(printed[[3]], "auc_roc 0.8123, auc_pr 0.41", fixed = TRUE)
  expect_match(printed[[4]], "champion: +auc_roc 0.8011")
})

test_that("the catalog and schema of the upload are the package's settings", {
  fake <- fake_api(registry_routes(logs = list(yws_register_r_model = job_logs(register_answer))))
  with_fake_env(fake)
  withr::local_options(yws.catalog = "yws_prod", yws.schema = "models")
  suppressMessages(yws_register_model(demo_fit(), name = "yws_prod.models.yws_glm_r"))
  put <- Filter(function(r) toupper(r$method) == "PUT", requests(fake))
  expect_match(put[[1]]$path,
               "^/api/2.0/fs/files/Volumes/yws_prod/models/r_models/[0-9a-f]{64}[.]json$")
  expect_match(run_nows(fake)[[1]]$body$job_parameters$description,
               "^/Volumes/yws_prod/models/r_models/[0-9a-f]{64}[.]json$")
})

test_that("as_of comes from the argument, the fitted data, or is not sent", {
  fake <- fake_api(registry_routes(logs = list(yws_register_r_model = job_logs(register_answer))))
  with_fake_env(fake)
  suppressMessages(yws_register_model(demo_fit(FALSE), name = "yws_dev.ml.yws_glm_r"))
  suppressMessages(yws_register_model(demo_fit(FALSE), name = "yws_dev.ml.yws_glm_r",
                                      as_of = as.Date("2026-07-31")))
  x <- yws_export_glm(demo_fit(FALSE), as_of = "2026-06-30")
  suppressMessages(yws_register_model(x, name = "yws_dev.ml.yws_glm_r"))
  params <- lapply(run_nows(fake), function(r) r$body$job_parameters)
  expect_named(params[[1]], c("description", "model_name"))  # no date known: none sent
  expect_identical(params[[2]]$as_of, "2026-07-31")
  expect_identical(params[[3]]$as_of, "2026-06-30")
  # each call is its own run, even for the same model
  tokens <- vapply(run_nows(fake), function(r) r$body$idempotency_token, "")
  expect_identical(anyDuplicated(tokens), 0L)
  err <- expect_error(yws_register_model(x, "yws_dev.ml.yws_glm_r", as_of = "2026-08-31"),
                      class = "yws_input_error")
  expect_match(conditionMessage(err), "trained on 2026-06-30", fixed = TRUE)
})

test_that("bad names, dates and models are refused before anything is sent", {
  fake <- fake_api(registry_routes())
  with_fake_env(fake)
  fit <- demo_fit()
  for (name in list("ml.yws_glm_r", "yws_glm_r", "yws_dev.ml.yws glm", "yws_dev.ml.yws_glm_r.",
                    "yws_dev..yws_glm_r", "1cat.ml.m", "a.b.c.d", NA_character_, 3,
                    c("a.b.c", "a.b.d"))) {
    err <- expect_error(yws_register_model(fit, name = name), class = "yws_input_error")
    expect_match(conditionMessage(err), "three-part Unity Catalog name", fixed = TRUE)
  }
  expect_error(yws_register_model(fit, "yws_dev.ml.m", as_of = "2026-02-30"),
               class = "yws_input_error")
  expect_error(yws_register_model(fit, "yws_dev.ml.m", as_of = "31/08/2026"),
               class = "yws_input_error")
  d <- fit$data
  inter <- glm(defaulted_90d ~ tenure_months * has_autopay, family = binomial, data = d)
  expect_error(yws_register_model(inter, "yws_dev.ml.m"), class = "yws_unsupported_model")
  expect_error(yws_register_model(lm(defaulted_90d ~ tenure_months, d), "yws_dev.ml.m"),
               class = "yws_unsupported_model")
  expect_length(requests(fake), 0)
})

test_that("a refused upload is yws_http_403 naming the Volume, and no job runs", {
  fake <- fake_api(registry_routes(upload_status = 403))
  with_fake_env(fake)
  err <- expect_error(suppressMessages(yws_register_model(demo_fit(), "yws_dev.ml.yws_glm_r")),
                      class = "yws_http_403")
  expect_identical(class(err)[1:3], c("yws_http_403", "yws_http", "yws_error"))
  expect_identical(err$status, 403L)
  expect_identical(err$error_code, "PERMISSION_DENIED")
  expect_match(err$path, "^/Volumes/yws_dev/ml/r_models/[0-9a-f]{64}[.]json$")
  msg <- conditionMessage(err)
  expect_match(msg, "does not have WRITE VOLUME", fixed = TRUE)
  expect_match(msg, "WRITE VOLUME` on the Volume \"yws_dev.ml.r_models\"", fixed = TRUE)
  expect_false("/api/2.2/jobs/run-now" %in% paths(fake))
  expect_false("/api/2.2/jobs/list" %in% paths(fake))
})

test_that("a failed registration run is yws_run_failed with the task's error", {
  fake <- fake_api(registry_routes(final = run_state("TERMINATED", "FAILED", "Task failed")))
  with_fake_env(fake)
  err <- expect_error(suppressMessages(yws_register_model(demo_fit(), "yws_dev.ml.yws_glm_r")),
                      class = "yws_run_failed")
  expect_identical(err$result_state, "FAILED")
  expect_identical(err$task_error,
                   "register: PermissionError: no USE SCHEMA on yws_dev.ml")
  expect_equal(err$run_id, 9007199254)
})

test_that("a run whose output has no JSON object is yws_run_output_error", {
  fake <- fake_api(registry_routes(logs = list(
    yws_register_r_model = "registered. done\n",
    yws_promote_model = job_logs(list(model_name = "yws_dev.ml.m", version = "3",
                                      promoted = "maybe")),
    yws_compare_models = job_logs(list(as_of = "2026-08-31", rows = 10, models = list(
      list(ref = "yws_dev.ml.m/3", metrics = list(auc_roc = 0.7))))))))
  with_fake_env(fake)
  err <- expect_error(suppressMessages(yws_register_model(demo_fit(), "yws_dev.ml.yws_glm_r")),
                      class = "yws_run_output_error")
  expect_s3_class(err, "yws_error")
  expect_equal(err$run_id, 9007199254)
  expect_match(conditionMessage(err),
               "Run 9007199254 succeeded but its task's output has no JSON object", fixed = TRUE)
  err <- expect_error(yws_promote("yws_dev.ml.m/3"), class = "yws_run_output_error")
  expect_match(conditionMessage(err), "promoted")
  # a model asked for and not answered
  err <- expect_error(yws_compare_models("yws_dev.ml.m/3", "yws_dev.ml.m@champion",
                                         as_of = "2026-08-31"),
                      class = "yws_run_output_error")
  expect_match(conditionMessage(err), "not yws_dev.ml.m/3, yws_dev.ml.m@champion", fixed = TRUE)
})

test_that("an answer without a version is yws_run_output_error", {
  fake <- fake_api(registry_routes(logs = list(
    yws_register_r_model = job_logs(list(model_name = "yws_dev.ml.yws_glm_r")))))
  with_fake_env(fake)
  err <- expect_error(suppressMessages(yws_register_model(demo_fit(), "yws_dev.ml.yws_glm_r")),
                      class = "yws_run_output_error")
  expect_match(conditionMessage(err), "has no version", fixed = TRUE)
})

test_that("the answer is the last top-level JSON object of the logs", {
  expect_null(last_json_object(""))
  expect_null(last_json_object("no json here"))
  expect_null(last_json_object("{not json}"))
  expect_null(last_json_object("[1, 2]"))
  expect_null(last_json_object(NA_character_))
  # earlier objects, nested objects, a brace in a string, non-ASCII text, a closing line
  logs <- paste0(
    "INFO start {\"a\": 1}\n", "{\"version\": \"2\"}\n",
    "{\"version\": \"3\", \"gate\": {\"metrics\": {\"auc_roc\": 0.8}},",
    " \"reason\": \"r\u00e9gion {ok} }\"}\n", "done\n")
  got <- last_json_object(logs)
  expect_identical(got$version, "3")
  expect_identical(got$gate$metrics$auc_roc, 0.8)
  expect_identical(got$reason, "r\u00e9gion {ok} }")
  # pretty-printed over several lines
  pretty <- paste0("log\n", jsonlite::toJSON(list(version = "4", aliases = list("challenger")),
                                             auto_unbox = TRUE, pretty = TRUE), "\n")
  expect_identical(last_json_object(pretty)$aliases, list("challenger"))
})

test_that("yws_compare_models sends the references and returns one row per model", {
  answer <- list(as_of = "2026-08-31", rows = 4000, models = list(
    list(ref = "yws_dev.ml.yws_glm_r/3", name = "yws_dev.ml.yws_glm_r", version = "3",
         family = "r-glm", metrics = list(auc_roc = 0.81, auc_pr = 0.41, log_loss = 0.35,
                                          brier = 0.11)),
    list(ref = "yws_dev.ml.yws_lr@champion", name = "yws_dev.ml.yws_lr", version = "7",
         family = "spark-lr", metrics = list(auc_roc = 0.8, auc_pr = 0.4, log_loss = 0.36))))
  fake <- fake_api(registry_routes(logs = list(yws_compare_models = job_logs(answer))))
  with_fake_env(fake)
  v <- structure(list(name = "yws_dev.ml.yws_glm_r", version = "3"),
                 class = "yws_model_version")
  out <- yws_compare_models("yws_dev.ml.yws_lr@champion", v, as_of = as.Date("2026-08-31"))
  post <- run_nows(fake)
  expect_identical(post[[1]]$body$job_id, 102L)
  expect_identical(post[[1]]$body$job_parameters,
                   list(models = "yws_dev.ml.yws_lr@champion,yws_dev.ml.yws_glm_r/3",
                        as_of = "2026-08-31"))
  expect_s3_class(out, "tbl_df")
  expect_named(out, c("ref", "version", "family", "auc_roc", "auc_pr", "log_loss", "brier",
                      "rows"))
  # in the order asked, whatever the job's order
  expect_identical(out$ref, c("yws_dev.ml.yws_lr@champion", "yws_dev.ml.yws_glm_r/3"))
  expect_identical(out$version, c("7", "3"))
  expect_identical(out$family, c("spark-lr", "r-glm"))
  expect_identical(out$auc_roc, c(0.8, 0.81))
  expect_identical(out$brier, c(NA, 0.11))  # a metric the job did not report
  expect_identical(out$rows, c(4000, 4000))
  expect_identical(attr(out, "as_of"), "2026-08-31")
})

test_that("malformed model references are refused before anything is sent", {
  fake <- fake_api(registry_routes())
  with_fake_env(fake)
  bad <- list("yws_dev.ml.yws_lr", "yws_dev.ml.yws_lr@latest", "yws_dev.ml.yws_lr@v3",
              "yws_dev.ml.yws_lr@", "yws_dev.ml.yws_lr/0", "yws_dev.ml.yws_lr/1.5",
              "yws_dev.ml.yws_lr/-2", "yws_dev.ml.yws_lr/", "ml.yws_lr@champion",
              "yws_dev.ml.yws_lr@a,b", 42, NA_character_, c("a.b.c@x", "a.b.c@y"),
              structure(list(name = "a.b.c", version = "0"), class = "yws_model_version"))
  for (ref in bad) {
    expect_error(yws_compare_models(ref, as_of = "2026-08-31"), class = "yws_input_error")
  }
  err <- expect_error(yws_compare_models("yws_dev.ml.yws_lr", as_of = "2026-08-31"),
                      class = "yws_input_error")
  expect_match(conditionMessage(err), "names a model, not one of its versions", fixed = TRUE)
  expect_error(yws_compare_models(as_of = "2026-08-31"), class = "yws_input_error")
  err <- expect_error(yws_compare_models("a.b.c/1", "a.b.c/1", as_of = "2026-08-31"),
                      class = "yws_input_error")
  expect_match(conditionMessage(err), "more than once")
  expect_error(yws_compare_models("a.b.c/1"), class = "yws_input_error")
  expect_error(yws_compare_models("a.b.c/1", as_of = "2026-13-01"), class = "yws_input_error")
  expect_length(requests(fake), 0)
})

promote_answer <- function(promoted, reason) {
  list(model_name = "yws_dev.ml.yws_glm_r", version = "3", promoted = promoted,
       reason = reason, metrics = list(auc_roc = 0.81),
       champion_metrics = list(auc_roc = 0.8),
       aliases = if (promoted) list("champion") else list("challenger"))
}

test_that("yws_promote runs the gate and says it promoted", {
  fake <- fake_api(registry_routes(logs = list(
    yws_promote_model = job_logs(promote_answer(TRUE, "auc_roc 0.81 >= 0.80")))))
  with_fake_env(fake)
  v <- structure(list(name = "yws_dev.ml.yws_glm_r", version = "3", aliases = "challenger",
                      family = "r-glm"), class = "yws_model_version")
  expect_message(out <- withVisible(yws_promote(v)), class = "yws_promoted")
  expect_false(out$visible)
  out <- out$value
  post <- run_nows(fake)
  expect_identical(post[[1]]$body$job_id, 103L)
  expect_identical(post[[1]]$body$job_parameters,
                   list(model_name = "yws_dev.ml.yws_glm_r", version = "3", force = "false"))
  expect_s3_class(out, "yws_model_version")
  expect_true(out$promoted)
  expect_identical(out$aliases, "champion")
  expect_identical(out$family, "r-glm")
  expect_identical(out$gate$reason, "auc_roc 0.81 >= 0.80")
  expect_equal(out$gate$champion_metrics$auc_roc, 0.8)
  msg <- tryCatch(yws_promote(v), yws_promoted = conditionMessage)
  expect_match(msg, "yws_dev.ml.yws_glm_r version 3 is now \"@champion\": auc_roc 0.81 >= 0.80",
               fixed = TRUE)
  expect_match(capture.output(print(out))[[2]], "promoted: yes")
})

test_that("a gate that refuses is a message, not an error; force and as_of are sent", {
  fake <- fake_api(registry_routes(logs = list(
    yws_promote_model = job_logs(promote_answer(FALSE, "auc_roc 0.79 < champion 0.80")))))
  with_fake_env(fake)
  msg <- tryCatch(yws_promote("yws_dev.ml.yws_glm_r/3"), yws_not_promoted = conditionMessage)
  expect_match(msg, "version 3 was not promoted: auc_roc 0.79 < champion 0.80", fixed = TRUE)
  expect_match(msg, "force = TRUE", fixed = TRUE)
  out <- suppressMessages(yws_promote("yws_dev.ml.yws_glm_r/3", as_of = "2026-08-31",
                                      force = TRUE))
  expect_false(out$promoted)
  expect_identical(out$aliases, "challenger")
  expect_null(out$family)
  params <- lapply(run_nows(fake), function(r) r$body$job_parameters)
  expect_identical(params[[2]], list(model_name = "yws_dev.ml.yws_glm_r", version = "3",
                                     as_of = "2026-08-31", force = "true"))
})

test_that("yws_promote refuses aliases and bad arguments, and a failed run is an error", {
  fake <- fake_api(registry_routes(final = run_state("TERMINATED", "FAILED")))
  with_fake_env(fake)
  err <- expect_error(yws_promote("yws_dev.ml.yws_glm_r@challenger"), class = "yws_input_error")
  expect_match(conditionMessage(err), "must name a version, not an alias", fixed = TRUE)
  expect_error(yws_promote("yws_dev.ml.yws_glm_r/3", force = NA), class = "yws_input_error")
  expect_error(yws_promote("yws_dev.ml.yws_glm_r/3", force = "yes"), class = "yws_input_error")
  expect_error(yws_promote("yws_dev.ml.yws_glm_r/3", as_of = "tomorrow"),
               class = "yws_input_error")
  expect_error(yws_promote("yws_dev.yws_glm_r/3"), class = "yws_input_error")
  expect_length(requests(fake), 0)
  err <- expect_error(yws_promote("yws_dev.ml.yws_glm_r/3"), class = "yws_run_failed")
  expect_match(err$task_error, "PermissionError", fixed = TRUE)
})

test_that("the wait is yws_wait's: a run past the timeout is cancelled", {
  fake <- fake_api(registry_routes(never_ends = TRUE))
  with_fake_env(fake)
  expect_error(suppressMessages(yws_compare_models("a.b.c/1", as_of = "2026-08-31",
                                                   timeout = 1)),
               class = "yws_timeout")
  cancel <- Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake))
  expect_length(cancel, 1)
  expect_equal(cancel[[1]]$body$run_id, 9007199254)
})

test_that("Ctrl-C during the registration's wait cancels the run", {
  skip_on_os("windows")
  fake <- fake_api(registry_routes(never_ends = TRUE))
  with_fake_env(fake)
  interrupt_in(1.5)
  msgs <- character()
  got <- withCallingHandlers(
    tryCatch(yws_register_model(demo_fit(), "yws_dev.ml.yws_glm_r", timeout = 30),
             interrupt = function(e) "interrupted"),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
  expect_identical(got, "interrupted")
  expect_length(Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake)), 1)
  expect_match(paste(msgs, collapse = "\n"), "run 9007199254 was cancelled", fixed = TRUE)
})
