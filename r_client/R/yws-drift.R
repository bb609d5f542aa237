#' Drift of the latest scoring batches
#'
#' Each score run compares its batch with the training baseline of the model version that
#' scored it (the held-out rows, saved with the version) and stores one row per feature, plus
#' `__score__` (the predicted probability) and `__bands__` (the band mix). `yws_drift()` reads
#' those rows for the latest published batches from the view `v_yws_drift`, as
#' `yws monitor` prints them. Statuses: PSI below 0.1 is `OK`, from 0.1 `WARN`, from 0.25
#' `ALERT`; an unseen-level rate from 0.1% / 1%, a null rate 2 / 5 points above the
#' baseline's raise it too; `NO_BASELINE` for a version without a baseline (an R glm), whose
#' rows hold null and unseen-level rates only.
#'
#' @param batches How many of the latest published batches to read (newest as-of date
#'   first), a whole number from 1 to 1000.
#' @param batch_id Read this batch only (then `batches` is ignored).
#' @inheritParams yws_predictions
#' @return A tibble, one row per batch and feature: `batch_id`, `as_of_date` (Date),
#'   `feature`, `kind`, `status`, `psi`, `null_rate`, `baseline_null_rate`, `unseen_rate`,
#'   `rows_counted` (double), `shares_json` (the cells and each one's share of rows, batch and
#'   baseline, as JSON), `model_name`, `model_version` (integer), `computed_at` (POSIXct,
#'   UTC), `run_id`, `model_alias`, `official` (logical).
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' drift <- yws_drift(batches = 5)
#' drift[drift$status == "ALERT", c("batch_id", "feature", "psi")]
#' @export
yws_drift <- function(batches = 10, batch_id = NULL, via = c("sql", "odbc"), con = NULL,
                      host = NULL, token = NULL) {
  via <- match.arg(via)
  if (via == "odbc") check_con(con)
  view <- yws_table(contract$views[["drift"]])
  columns <- paste("batch_id, as_of_date, feature, kind, status, psi, null_rate,",
                   "baseline_null_rate, unseen_rate, rows_counted, shares_json, model_name,",
                   "model_version, computed_at, run_id, model_alias, official")
  if (!is.null(batch_id)) {
    where <- "batch_id = :batch_id"
    params <- list(batch_id = check_batch_id(batch_id))
  } else {
    # a checked whole number: the one value written into the text (LIMIT takes no parameter
    # on every route)
    where <- paste0("batch_id IN (SELECT batch_id FROM ", view, " GROUP BY batch_id ",
                    "ORDER BY MAX(as_of_date) DESC, MAX(computed_at) DESC, batch_id DESC ",
                    "LIMIT ", check_batches(batches), ")")
    params <- list()
  }
  sql <- paste0("SELECT ", columns, " FROM ", view, " WHERE ", where,
                " ORDER BY as_of_date DESC, batch_id DESC, feature")
  drift_types(read_query(sql, params, via = via, con = con, host = host, token = token))
}

check_batches <- function(batches) {
  if (!is.numeric(batches) || length(batches) != 1 || is.na(batches) || batches < 1 ||
      batches > 1000 || batches != round(batches)) {
    yws_abort("{.arg batches} must be a whole number from 1 to 1000, not {.val {batches}}.",
              class = "yws_input_error")
  }
  format(as.integer(batches))
}

# The drift view's R types, whatever route the rows took.
drift_types <- function(df) {
  if ("as_of_date" %in% names(df) && !inherits(df$as_of_date, "Date")) {
    df$as_of_date <- as.Date(as.character(df$as_of_date))
  }
  if ("computed_at" %in% names(df) && !inherits(df$computed_at, "POSIXct")) {
    df$computed_at <- parse_timestamp(as.character(df$computed_at))
  }
  for (col in intersect(c("psi", "null_rate", "baseline_null_rate", "unseen_rate",
                          "rows_counted"), names(df))) {
    df[[col]] <- as.numeric(df[[col]])
  }
  if ("model_version" %in% names(df)) df$model_version <- as.integer(df$model_version)
  for (col in intersect(c("batch_id", "feature", "kind", "status", "shares_json",
                          "model_name", "run_id", "model_alias"), names(df))) {
    df[[col]] <- as.character(df[[col]])
  }
  if ("official" %in% names(df) && !is.logical(df$official)) {
    df$official <- as_logical(df$official)
  }
  df
}
