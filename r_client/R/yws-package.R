#' yws: trigger YWS scoring and read its predictions from R
#'
#' One call, [yws_score()], starts the scoring job and returns the predictions; [yws_predict()]
#' scores the rows you have in hand on a Model Serving endpoint. The package is thin: the
#' Databricks jobs, the serving endpoint and the SQL views do the work. Settings come from the
#' standard `DATABRICKS_HOST` / `DATABRICKS_TOKEN` variables (or a `~/.databrickscfg` profile)
#' and can be overridden per call.
#'
#' @section Error classes:
#' Every error the package raises is an rlang error of class `yws_error` with one more
#' specific class, so a caller can handle a kind of failure, or all of them:
#' `tryCatch(yws_score(), yws_http_403 = function(e) ..., yws_error = function(e) ...)`.
#'
#' * `yws_config_error`: no host or token, or a SQL warehouse that cannot be used or picked.
#' * `yws_input_error`: an argument the package cannot use (a date, a batch id, a band, a
#'   name, a model name, version or reference, job parameters, a connection, rows to score);
#'   from [yws_predict()] also an endpoint's HTTP 400 (a feature column missing), then also
#'   `yws_http_400` and `yws_http`.
#' * `yws_connection_error`: the host cannot be reached (field `host`).
#' * `yws_timeout`: the call's `timeout` ran out (a run still going was cancelled);
#'   `yws_http_timeout`, also a `yws_timeout`: one request got no answer in time (field
#'   `host`).
#' * `yws_http_<status>`, e.g. `yws_http_404`, then `yws_http`: the REST API answered with an
#'   error status (fields `status` and `error_code`). Its classes are
#'   `c("yws_http_404", "yws_http", "yws_error", "rlang_error", "error", "condition")`.
#' * `yws_sql_error`: a SQL statement failed (fields `error_code` and `sql_state`);
#'   `yws_truncated`: the warehouse truncated a result that was asked for in full.
#' * `yws_job_not_found`: no job, or more than one, has the name.
#' * `yws_run_failed`: the run ended without success (fields `run_id`, `result_state`,
#'   `task_error`).
#' * `yws_run_mismatch`: the run or the rows that came back are not those that were asked
#'   for (field `run_id`).
#' * `yws_odbc_error`: an ODBC or DBI connection or query failed.
#' * `yws_response_error`: a serving endpoint's answer is not one prediction per row sent.
#' * `yws_rejected_rows`: with `yws_predict(on_error = "abort")`, the endpoint refused rows
#'   (fields `rows`, `reasons`, `data`).
#' * `yws_unsupported_model`: [yws_export_glm()] (and so [yws_register_model()]) cannot
#'   describe the model exactly (an interaction, a function of a column, an offset, another
#'   family or link, ...); the message says what is supported.
#' * `yws_run_output_error`: a run succeeded but its task's output does not end with the JSON
#'   object the job promises ([yws_register_model()], [yws_compare_models()],
#'   [yws_promote()]), or that object lacks what the call needs (field `run_id`).
#'
#' Not errors: the warnings `yws_empty_batch` (a run succeeded with no rows) and
#' `yws_rejected_rows` (`yws_predict()` returned rows the endpoint refused, fields `rows` and
#' `reasons`), the message `yws_quarantined_rows` (a batch set rows aside), and the messages
#' `yws_promoted` and `yws_not_promoted` ([yws_promote()]: the gate's decision; a refusal by
#' the gate is not an error).
#'
#' @keywords internal
#' @importFrom rlang %||%
"_PACKAGE"
