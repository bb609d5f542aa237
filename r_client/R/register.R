# An R model in the registry (issue 17): yws_register_model() uploads a glm's exact
# description to a UC Volume and runs the registration job; yws_compare_models() and
# yws_promote() run the comparison and promotion jobs. Each job ends its task's stdout with
# one JSON object, read by run_output(). The jobs do the work with their own identity and
# grants; nothing here needs Python. docs/r-models.md describes the jobs' side.

# The Volume the descriptions go to, in the package's catalog and schema.
yws_models_volume <- "r_models"

#' Register an R model in the Unity Catalog model registry
#'
#' Exports `fit` exactly ([yws_export_glm()]: anything it cannot describe is refused there,
#' with a `yws_unsupported_model` error), uploads the description through the Files API to
#' the Volume `r_models` of the package's catalog and schema ([yws_catalog()],
#' [yws_schema()]) under the SHA-256 of its text, and runs the job `yws_register_r_model`.
#' The job logs the model (flavour `r-glm`), registers it as a new version of `name`, points
#' `@challenger` at it, and evaluates the validation gate against the champion on the same
#' held-out rows; the gate's metrics and decision are logged and returned, but registration
#' never moves `@champion`: that is [yws_promote()]'s.
#'
#' Everything that can be checked is checked before anything is sent: the name, the date,
#' the model, the settings. The run has an idempotency token of its own (see
#' [yws_idempotency_token()]), so a request retried within the call never starts a second
#' run; every call starts its own. The wait is [yws_wait()]'s: one progress line, Esc or
#' Ctrl-C cancels the run, a failed run is a `yws_run_failed` error with the task's message.
#' Uploading needs `WRITE VOLUME` on the Volume; a refusal keeps its `yws_http_<status>`
#' class and names the Volume.
#'
#' @param fit A fitted [stats::glm()], or a description made by [yws_export_glm()].
#' @param name The registered model's three-part Unity Catalog name,
#'   `"<catalog>.<schema>.<model>"`, e.g. `"yws_dev.ml.yws_glm_r"`, in the package's catalog
#'   and schema (the jobs'): another is a `yws_model_name_error` (also `yws_input_error`)
#'   before anything is sent.
#' @param as_of The as-of date of the feature snapshot the model was trained on. `NULL`:
#'   the date [yws_features()] recorded on the data `fit` was fitted on, if any (or the
#'   description's). Sent to the job as `as_of`.
#' @param features_version The features table's version, passed to [yws_export_glm()].
#' @param timeout Seconds for the whole call: upload, run and wait. A run still going is
#'   cancelled.
#' @inheritParams yws_host
#' @return A `yws_model_version`: a list with `name`, `version` (a string, as the registry
#'   numbers versions), `aliases`, `family`, `gate` (a list: `metrics`, `champion_metrics`
#'   (`NULL` without a champion), `rows`, `promote` (what the gate would decide), `reason`),
#'   `run_id` (the MLflow run) and `job_run_id` (the Jobs API run). It prints as one line per
#'   fact.
#' @seealso [yws_compare_models()], [yws_promote()], `vignette("from-odbc-to-yws-score")`.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' d <- yws_features(as_of = "2026-08-31")
#' fit <- glm(defaulted_90d ~ tenure_months + balance_utilization + region + has_autopay,
#'            family = binomial, data = d)
#' v <- yws_register_model(fit, name = "yws_dev.ml.yws_glm_r")
#' v
#' @export
yws_register_model <- function(fit, name, as_of = NULL, features_version = NULL,
                               timeout = 3600, host = NULL, token = NULL) {
  local_deadline(timeout)
  name <- check_model_name(name)
  check_jobs_schema(name)
  description <- register_description(fit, as_of, features_version)
  yws_host(host)
  yws_token(token)
  json <- as.character(yws_glm_json(description))
  path <- upload_description(json, host = host, token = token)
  params <- list(description = path, model_name = name,
                 as_of = description$training$as_of)
  params <- Filter(Negate(is.null), params)
  out <- run_for_output("yws_register_r_model", params, host = host, token = token)
  version <- model_version_from(out$value, out$run_id, fields = c("model_name", "version"))
  version$gate <- out$value$gate
  version$run_id <- out$value$run_id
  version
}

#' Compare registered models on the same rows
#'
#' Runs the job `yws_compare_models`, which scores every model given on the same labelled
#' rows of the features table at `as_of` (whatever each model's family) and returns their
#' metrics side by side. Nothing is registered or moved.
#'
#' @param ... The models: `"<catalog>.<schema>.<model>@<alias>"` or
#'   `"<catalog>.<schema>.<model>/<version>"` strings, or `yws_model_version` objects (from
#'   [yws_register_model()] or [yws_promote()]), each a single model. At least one; no model
#'   twice.
#' @param as_of The snapshot date whose labelled rows the models are scored on (a `Date` or
#'   `"YYYY-MM-DD"`).
#' @inheritParams yws_register_model
#' @return A tibble with one row per model, in the order given: `ref` (as sent to the job),
#'   `version` (the version the reference resolved to), `family`, `auc_roc`, `auc_pr`,
#'   `log_loss`, `brier` (`NA` where the job reported no such metric) and `rows` (the rows
#'   scored). Attribute `as_of`: the date.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' yws_compare_models("yws_dev.ml.yws_lr@champion", "yws_dev.ml.yws_glm_r@challenger",
#'                    as_of = "2026-08-31")
#' @export
yws_compare_models <- function(..., as_of, timeout = 3600, host = NULL, token = NULL) {
  local_deadline(timeout)
  refs <- model_refs(list(...))
  if (missing(as_of)) {
    yws_abort("{.arg as_of} is required: the snapshot date to compare the models on.",
              class = "yws_input_error")
  }
  as_of <- check_date(as_of)
  yws_host(host)
  yws_token(token)
  params <- list(models = paste(refs, collapse = ","), as_of = as_of)
  out <- run_for_output("yws_compare_models", params, host = host, token = token)
  comparison_frame(out$value, refs, as_of, out$run_id)
}

#' Promote a model version through the validation gate
#'
#' Runs the job `yws_promote_model`, which scores the version and the current champion on
#' the same held-out rows and points `@champion` at the version only if the gate passes
#' (with `force = TRUE`, whatever the gate says; the decision is logged either way). A
#' refusal by the gate is not an error: the version comes back with `promoted = FALSE` and a
#' message of class `yws_not_promoted` saying why. A promotion is a message of class
#' `yws_promoted`. A run that fails is a `yws_run_failed` error, as for every job.
#'
#' @param v The version: a `yws_model_version` or a `"<catalog>.<schema>.<model>/<version>"`
#'   string (an alias is refused: say which version).
#' @param as_of The snapshot date whose labelled rows the gate scores (`NULL`: the job's
#'   default, the latest labelled snapshot).
#' @param force Promote even if the gate refuses (`TRUE` or `FALSE`).
#' @inheritParams yws_register_model
#' @return Invisibly, the `yws_model_version` as the registry now has it: `aliases` after
#'   the decision, `promoted`, and `gate` (`metrics`, `champion_metrics`, `promote`,
#'   `reason`).
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' v <- yws_promote("yws_dev.ml.yws_glm_r/3")
#' v$promoted
#' @export
yws_promote <- function(v, as_of = NULL, force = FALSE, timeout = 3600, host = NULL,
                        token = NULL) {
  local_deadline(timeout)
  ref <- parse_model_ref(v, what = "v")
  if (is.null(ref$version)) {
    yws_abort(c("{.arg v} must name a version, not an alias: {.val {ref$ref}}.",
                i = paste("Promote {.val {paste0(ref$name, '/<version>')}}, or the object",
                          "{.fn yws_register_model} returned.")),
              class = "yws_input_error")
  }
  if (!is.logical(force) || length(force) != 1 || is.na(force)) {
    yws_abort("{.arg force} must be TRUE or FALSE.", class = "yws_input_error")
  }
  if (!is.null(as_of)) as_of <- check_date(as_of)
  yws_host(host)
  yws_token(token)
  params <- list(model_name = ref$name, version = ref$version, as_of = as_of,
                 force = if (force) "true" else "false")
  params <- Filter(Negate(is.null), params)
  out <- run_for_output("yws_promote_model", params, host = host, token = token)
  value <- out$value
  if (!is.logical(value$promoted) || length(value$promoted) != 1 || is.na(value$promoted)) {
    output_error(out$run_id, "its {.field promoted} is not true or false")
  }
  result <- model_version_from(value, out$run_id, fields = c("model_name", "version"))
  result$family <- result$family %||% (if (inherits(v, "yws_model_version")) v$family)
  result$promoted <- value$promoted
  result$gate <- list(metrics = value$metrics, champion_metrics = value$champion_metrics,
                      rows = value$rows, promote = value$promoted, reason = value$reason)
  label <- paste0(result$name, " version ", result$version)
  reason <- value$reason %||% "no reason given"
  if (value$promoted) {
    cli::cli_inform(c(v = "{label} is now {.val @champion}: {reason}"),
                    class = "yws_promoted")
  } else {
    cli::cli_inform(c("!" = "{label} was not promoted: {reason}",
                      i = if (!force) "To promote it anyway: {.code yws_promote(v, force = TRUE)}."),
                    class = "yws_not_promoted")
  }
  invisible(result)
}

#' @export
print.yws_model_version <- function(x, ...) {
  aliases <- if (length(x$aliases)) paste0(" @", x$aliases, collapse = "") else ""
  family <- if (!is.null(x$family)) paste0(" (", x$family, ")") else ""
  cat("<yws_model_version> ", x$name, " version ", x$version, family, aliases, "\n", sep = "")
  if (!is.null(x$promoted)) {
    cat("  promoted: ", if (isTRUE(x$promoted)) "yes" else "no", "\n", sep = "")
  }
  gate <- x$gate
  if (length(gate)) {
    cat("  gate", if (!is.null(gate$rows)) paste0(" (", gate$rows, " rows)"), ": ", sep = "")
    cat(if (isTRUE(gate$promote)) "passes" else "refuses",
        if (!is.null(gate$reason)) paste0(" - ", gate$reason), "\n", sep = "")
    if (length(gate$metrics)) {
      cat("    this version: ", format_metrics(gate$metrics), "\n", sep = "")
    }
    cat("    champion:     ", if (length(gate$champion_metrics))
      format_metrics(gate$champion_metrics) else "none", "\n", sep = "")
  }
  invisible(x)
}

format_metrics <- function(m) {
  m <- Filter(function(v) is.numeric(v) && length(v) == 1, m)
  paste(names(m), vapply(m, function(v) format(v, digits = 4), character(1)),
        sep = " ", collapse = ", ")
}

# -- inputs -----------------------------------------------------------------------------------

# "<catalog>.<schema>.<model>", each part an identifier as the contract defines one.
check_model_name <- function(x, what = "name", call = rlang::caller_env()) {
  parts <- if (is.character(x) && length(x) == 1 && !is.na(x)) strsplit(x, ".", fixed = TRUE)[[1]]
  ok <- length(parts) == 3 && !grepl("\\.$", x) &&
    all(grepl(contract$identifier_pattern, parts))
  if (!ok) {
    yws_abort(c(paste("{.arg {what}} must be a three-part Unity Catalog name,",
                      "{.val <catalog>.<schema>.<model>}, not {.val {format(x)}}."),
                i = "Each part: letters, digits and {.code _}, not starting with a digit."),
              class = "yws_input_error", call = call)
  }
  x
}

# The registration job writes only to the catalog and schema it runs in, the package's
# (yws_catalog(), yws_schema()), where the description is uploaded too: another name would
# only fail the job after the upload. Refused here, before anything is sent.
check_jobs_schema <- function(name, what = "name", call = rlang::caller_env()) {
  home <- paste0(yws_catalog(), ".", yws_schema())
  if (!startsWith(name, paste0(home, "."))) {
    yws_abort(c("{.arg {what}} {.val {name}} is not in {.val {home}}: the jobs register models in their own catalog and schema only.",
                i = paste("Register it as {.val {paste0(home, '.', sub('^.*[.]', '', name))}},",
                          "or set {.code options(yws.catalog =, yws.schema =)} to the",
                          "deployment's.")),
              class = c("yws_model_name_error", "yws_input_error"), call = call)
  }
  invisible(name)
}

check_version <- function(x, what = "version", call = rlang::caller_env()) {
  text <- if (is.numeric(x) && length(x) == 1 && !is.na(x) && x == round(x) && x >= 1 &&
              x < 2^53) format(x, scientific = FALSE) else if (is.character(x)) x else NA
  if (length(text) != 1 || is.na(text) || !grepl("^[1-9][0-9]{0,15}$", text)) {
    yws_abort("{.arg {what}} must be a positive whole number, not {.val {format(x)}}.",
              class = "yws_input_error", call = call)
  }
  text
}

# A model reference: list(ref, name, version, alias), from "name@alias", "name/version" or a
# yws_model_version.
parse_model_ref <- function(x, what = "model", call = rlang::caller_env()) {
  if (inherits(x, "yws_model_version")) {
    name <- check_model_name(x$name, what, call = call)
    version <- check_version(x$version, what, call = call)
    return(list(ref = paste0(name, "/", version), name = name, version = version,
                alias = NULL))
  }
  if (!is.character(x) || length(x) != 1 || is.na(x)) {
    yws_abort(c(paste("{.arg {what}} must be a {.val <name>@<alias>} or {.val <name>/<version>}",
                      "string or a {.cls yws_model_version}."),
                x = "It is {.obj_type_friendly {x}}."),
              class = "yws_input_error", call = call)
  }
  if (grepl("/", x, fixed = TRUE)) {
    name <- sub("/[^/]*$", "", x)
    version <- check_version(sub("^.*/", "", x), paste0(what, "'s version"), call = call)
    check_model_name(name, what, call = call)
    return(list(ref = paste0(name, "/", version), name = name, version = version,
                alias = NULL))
  }
  if (grepl("@", x, fixed = TRUE)) {
    name <- sub("@[^@]*$", "", x)
    alias <- sub("^.*@", "", x)
    check_model_name(name, what, call = call)
    check_alias(alias, what = paste0("The alias of ", x))
    return(list(ref = x, name = name, version = NULL, alias = alias))
  }
  check_model_name(x, what, call = call)
  yws_abort(c("{.arg {what}} {.val {x}} names a model, not one of its versions.",
              i = "Add an alias ({.val {x}@champion}) or a version ({.val {x}/3})."),
            class = "yws_input_error", call = call)
}

model_refs <- function(models, call = rlang::caller_env()) {
  if (!length(models)) {
    yws_abort("Give at least one model to compare.", class = "yws_input_error", call = call)
  }
  refs <- vapply(seq_along(models), function(i) {
    parse_model_ref(models[[i]], what = paste0("model ", i), call = call)$ref
  }, character(1))
  twice <- unique(refs[duplicated(refs)])
  if (length(twice)) {
    yws_abort("{.val {twice}} {?is/are} given more than once.", class = "yws_input_error",
              call = call)
  }
  refs
}

# The description to register: exported here from a glm, or made before by yws_export_glm().
# as_of defaults to the date yws_features() recorded on the fitted data.
register_description <- function(fit, as_of, features_version, call = rlang::caller_env()) {
  if (!is.null(as_of)) as_of <- glm_as_of(as_of, call = call)
  if (inherits(fit, "yws_glm_export")) {
    recorded <- fit$training$as_of
    if (!is.null(as_of) && !is.null(recorded) && !identical(as_of, recorded)) {
      yws_abort("{.arg as_of} is {as_of} but the description says it was trained on {recorded}.",
                class = "yws_input_error", call = call)
    }
    if (!is.null(features_version)) {
      yws_abort(paste("{.arg features_version} goes to {.fn yws_export_glm}, not with a",
                      "description made by it."),
                class = "yws_input_error", call = call)
    }
    if (is.null(recorded)) fit$training["as_of"] <- list(as_of)
    return(fit)
  }
  if (is.null(as_of) && inherits(fit, "glm")) {
    as_of <- attr(fit$data, "yws_features")$as_of
  }
  yws_export_glm(fit, as_of = as_of, features_version = features_version)
}

# -- the upload -------------------------------------------------------------------------------

# PUT /api/2.0/fs/files/Volumes/<catalog>/<schema>/r_models/<sha256>.json?overwrite=true:
# the Files API (Databricks REST reference, "Upload a file"), the body the bytes as they are.
# Named by its content, the same description is always the same file.
upload_description <- function(json, host = NULL, token = NULL, call = rlang::caller_env()) {
  bytes <- charToRaw(enc2utf8(json))
  volume <- c(yws_catalog(), yws_schema(), yws_models_volume)
  path <- paste0("/Volumes/", paste(volume, collapse = "/"), "/", cli::hash_raw_sha256(bytes),
                 ".json")
  req <- yws_request(paste0("/api/2.0/fs/files", path), query = list(overwrite = "true"),
                     host = host, token = token)
  req <- httr2::req_body_raw(req, bytes, type = "application/octet-stream")
  req <- httr2::req_method(req, "PUT")
  cli::cli_progress_step("Uploading the model's description to {.path {path}}")
  tryCatch(yws_perform(req, call = call), yws_http = function(e) {
    full <- paste(volume, collapse = ".")
    yws_abort(c("Cannot write the model's description to {.path {path}}.",
                x = "Databricks answered {e$status} {e$error_code}: {e$server_message}",
                i = if (e$status == 404) "Does the Volume {.val {full}} exist?" else
                  "Writing needs {.code WRITE VOLUME} on the Volume {.val {full}}."),
              class = class(e)[seq_len(match("yws_http", class(e)))], status = e$status,
              error_code = e$error_code, server_message = e$server_message, path = path,
              parent = e, call = call)
  })
  path
}

# -- the run and its output -------------------------------------------------------------------

# Start `job`, wait for it (yws_run_job() and yws_wait(): token, progress line, Ctrl-C,
# yws_run_failed) and read the JSON object its task printed last. A token of its own per call
# (the parameters and a call id): a retried request returns this call's run, never a run of an
# earlier call, whose model or champion may have been another.
run_for_output <- function(job, params, host = NULL, token = NULL, call = rlang::caller_env()) {
  the$calls <- (the$calls %||% 0) + 1
  call_id <- paste(format(as.numeric(Sys.time()), digits = 17), Sys.getpid(), the$calls)
  idem <- yws_idempotency_token(job, c(params, list(.call = call_id)))
  run <- yws_run_job(job, params, idempotency_token = idem, host = host, token = token)
  status <- yws_wait(run, timeout = time_left(), host = host, token = token)
  list(value = task_output(status, run$run_id, host = host, token = token,
                           task_key = unname(answering_task[job]), call = call),
       run_id = run$run_id)
}

# The task that answers for each job (its other tasks, such as yws_promote_model's `serving`,
# print their own results).
answering_task <- c(yws_register_r_model = "register", yws_compare_models = "compare",
                    yws_promote_model = "promote")

# The tasks' stdout (GET /api/2.2/jobs/runs/get-output, per task run): the answering task's
# (`task_key`), else the last task first; the first JSON object found is the run's answer.
task_output <- function(status, run_id, host = NULL, token = NULL, task_key = NULL,
                        call = rlang::caller_env()) {
  tasks <- Filter(function(t) !is.null(t$run_id), latest_attempts(status$tasks))
  mine <- Filter(function(t) identical(t$task_key, task_key), tasks)
  if (length(mine)) tasks <- mine
  truncated <- FALSE
  for (task in rev(tasks)) {
    out <- yws_perform(yws_request("/api/2.2/jobs/runs/get-output",
                                   query = list(run_id = format_id(task$run_id)),
                                   host = host, token = token))
    truncated <- truncated || isTRUE(out$logs_truncated)
    value <- last_json_object(out$logs %||% "")
    if (!is.null(value)) return(value)
  }
  output_error(run_id, if (!length(tasks)) "it has no task runs" else
    if (truncated) "its logs were truncated before the JSON object" else
      "its task's output has no JSON object", call = call)
}

# The last top-level JSON object in `text`: it ends at the last "}" (text after it without a
# brace, such as a closing log line, is ignored) and starts at the "{" closest to it from which
# the rest parses as one JSON object. NULL when there is none.
last_json_object <- function(text, max_tries = 10000) {
  if (!is.character(text) || length(text) != 1 || is.na(text)) return(NULL)
  closes <- gregexpr("}", text, fixed = TRUE)[[1]]
  if (closes[[1]] < 0) return(NULL)
  end <- max(closes)
  opens <- gregexpr("{", text, fixed = TRUE)[[1]]
  opens <- rev(opens[opens > 0 & opens < end])
  for (start in utils::head(opens, max_tries)) {
    value <- tryCatch(jsonlite::parse_json(substr(text, start, end), simplifyVector = FALSE),
                      error = function(e) NULL)
    if (is.list(value) && !is.null(names(value))) return(value)
  }
  NULL
}

output_error <- function(run_id, problem, call = rlang::caller_env()) {
  id <- format_id(run_id)
  yws_abort(c("Run {id} succeeded but {problem}.",
              i = "The job's task must end its output with one JSON object; see its logs."),
            class = "yws_run_output_error", run_id = run_id, call = call)
}

model_version_from <- function(value, run_id, fields, call = rlang::caller_env()) {
  missing <- Filter(function(f) !is_text(value[[f]]), fields)
  if (length(missing)) {
    output_error(run_id, paste0("its JSON object has no ", paste(missing, collapse = ", ")),
                 call = call)
  }
  structure(list(name = value$model_name, version = as.character(value$version),
                 aliases = as.character(unlist(value$aliases %||% list())),
                 family = value$family, gate = NULL, run_id = NULL, job_run_id = run_id),
            class = "yws_model_version")
}

is_text <- function(x) (is.character(x) || is.numeric(x)) && length(x) == 1 && !is.na(x)

comparison_frame <- function(value, refs, as_of, run_id, call = rlang::caller_env()) {
  models <- value$models
  if (!is.list(models) || !length(models)) {
    output_error(run_id, "its JSON object has no models", call = call)
  }
  got <- vapply(models, function(m) if (is_text(m$ref)) m$ref else NA_character_, character(1))
  if (!setequal(got, refs) || anyDuplicated(got)) {
    output_error(run_id, paste0("it compared ", paste(got, collapse = ", "), ", not ",
                               paste(refs, collapse = ", ")), call = call)
  }
  models <- models[match(refs, got)]
  metric <- function(name) vapply(models, function(m) {
    v <- m$metrics[[name]]
    if (is.numeric(v) && length(v) == 1) as.numeric(v) else NA_real_
  }, numeric(1))
  text <- function(name) vapply(models, function(m) {
    if (is_text(m[[name]])) as.character(m[[name]]) else NA_character_
  }, character(1))
  rows <- value$rows
  out <- tibble::tibble(ref = refs, version = text("version"), family = text("family"),
                        auc_roc = metric("auc_roc"), auc_pr = metric("auc_pr"),
                        log_loss = metric("log_loss"), brier = metric("brier"),
                        rows = if (is.numeric(rows) && length(rows) == 1) as.numeric(rows) else
                          NA_real_)
  attr(out, "as_of") <- value$as_of %||% as_of
  out
}
