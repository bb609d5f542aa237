#' Read YWS predictions from the SQL views
#'
#' One batch per date: with `as_of` and no `batch_id`, `view = "all"` returns the batch that
#' counts for that date (the latest official one; a batch scored by another alias only when
#' no official batch exists), never every re-score of the date stacked together; pass
#' `all_batches = TRUE` for those. `view = "latest", as_of = d` is each entity's latest
#' official prediction as it stood on `d` (scored for `d` or before).
#'
#' @param as_of A snapshot date (a `Date` or `"YYYY-MM-DD"`); see the description.
#' @param batch_id Keep this scoring batch only.
#' @param bands Keep these bands only (`"GREEN"`, `"YELLOW"`, `"RED"`).
#' @param via `"sql"` (the Statement Execution API, no driver needed) or `"odbc"` (a
#'   connection in `con`).
#' @param con With `via = "odbc"`: a DBI connection (`DBI::dbConnect(odbc::databricks(),
#'   ...)`, brickster's, any `DBIConnection`) or an RODBC channel from [yws_odbc_connect()].
#' @param view `"all"` (published batches), `"latest"` (latest per entity) or `"warnings"`.
#' @param all_batches With `view = "all"` and `as_of`: every batch of that date.
#' @inheritParams yws_sql
#' @return A tibble: `entity_id`, `as_of_date` (Date), `batch_id`, `probability`,
#'   `prediction`, `band` (ordered factor GREEN < YELLOW < RED), `model_name`,
#'   `model_version`, `scored_at` (POSIXct, UTC), and with `view = "all"` `run_id`,
#'   `model_alias` and `official`; then the reason codes, why the model scored the row as it
#'   did: `reason_1`, `reason_2`, `reason_3` (character: the features that raised the
#'   log-odds most, a category as `feature=level`) and `reason_1_contribution`, ...
#'   (double: each one's contribution to the log-odds), `NA` past the row's positive
#'   contributions, for a batch scored with `--no-reasons` or by a model without reasons
#'   (an R glm).
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' yws_predictions(batch_id = "nightly-2026-11-30", bands = c("YELLOW", "RED"))
#' yws_predictions(as_of = "2026-11-30", view = "latest", n_max = 20)
#' @export
yws_predictions <- function(as_of = NULL, batch_id = NULL, bands = NULL,
                            via = c("sql", "odbc"), con = NULL,
                            view = c("all", "latest", "warnings"), all_batches = FALSE,
                            n_max = Inf, bigint = c("double", "integer64", "character"),
                            host = NULL, token = NULL) {
  via <- match.arg(via)
  view <- match.arg(view)
  bigint <- match.arg(bigint)
  n_max <- check_n_max(n_max)
  filters <- prediction_filters(as_of, batch_id, bands)
  if (via == "odbc") check_con(con)
  query <- prediction_query(view, filters, all_batches, via)
  out <- read_query(query$sql, query$params, via = via, con = con, n_max = n_max,
                    bigint = bigint, host = host, token = token)
  prediction_types(out)
}

prediction_query <- function(view, filters, all_batches, via) {
  date <- function(name) if (via == "sql") paste0("CAST(:", name, " AS DATE)") else
    paste0(":", name)
  band_list <- if (length(filters$bands)) {
    paste0("band IN (", paste0(":band", seq_along(filters$bands), collapse = ", "), ")")
  }
  columns <- paste("entity_id, as_of_date, batch_id, probability, prediction, band,",
                   "model_name, model_version, scored_at,",
                   paste(reason_columns, collapse = ", "))
  if (view == "latest" && !is.null(filters$as_of)) {
    # each entity's latest official prediction as it stood on as_of
    inner <- paste0("SELECT ", columns, ", ROW_NUMBER() OVER (PARTITION BY entity_id ",
                    "ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC) AS yws_recency ",
                    "FROM ", yws_table(contract$views[["predictions"]]),
                    " WHERE official AND as_of_date <= ", date("as_of"))
    where <- c("yws_recency = 1", if (!is.null(filters$batch_id)) "batch_id = :batch_id",
               band_list)
    sql <- paste0("SELECT ", columns, " FROM (", inner, ") latest WHERE ",
                  paste(where, collapse = " AND "), " ORDER BY entity_id")
  } else {
    table <- yws_table(contract$views[[c(all = "predictions", latest = "latest",
                                         warnings = "warnings")[[view]]]])
    one_batch <- view == "all" && !is.null(filters$as_of) && is.null(filters$batch_id) &&
      !isTRUE(all_batches)
    where <- c(if (!is.null(filters$as_of)) paste0("as_of_date = ", date("as_of")),
               if (!is.null(filters$batch_id)) "batch_id = :batch_id",
               if (one_batch) paste0(
                 "batch_id = (SELECT batch_id FROM ", yws_table(contract$views[["score_runs"]]),
                 " WHERE as_of_date = ", date("as_of"),
                 " ORDER BY official DESC, ended_at DESC, run_id DESC LIMIT 1)"),
               band_list)
    sql <- paste0("SELECT * FROM ", table,
                  if (length(where)) paste0(" WHERE ", paste(where, collapse = " AND ")),
                  " ORDER BY entity_id, batch_id")
  }
  bands <- as.list(filters$bands)
  if (length(bands)) names(bands) <- paste0("band", seq_along(bands))
  params <- c(list(as_of = if (!is.null(filters$as_of)) as.Date(filters$as_of),
                   batch_id = filters$batch_id), bands)
  list(sql = sql, params = Filter(Negate(is.null), params))
}

#' Scoring batches and the rows they set aside
#'
#' `yws_batches()` lists published scoring batches from the audit view `v_yws_score_runs`,
#' newest first: batch, as-of date, model alias and version, rows read, scored and
#' quarantined, timings, status and the batch's drift summary (`drift_status`: OK, WARN,
#' ALERT or NO_BASELINE; the worst feature and its PSI; details in [yws_drift()]).
#' `yws_quarantine()` returns the rows a batch could not score and why (from the view
#' `v_yws_quarantine`; the input rows themselves stay in the governed table, readable by the
#' jobs' principal).
#'
#' @param as_of Keep batches of this snapshot date only.
#' @param batch_id The batch whose quarantined rows to read.
#' @inheritParams yws_predictions
#' @return A tibble.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' yws_batches(n_max = 10)
#' yws_quarantine("nightly-2026-11-30")
#' @export
yws_batches <- function(as_of = NULL, via = c("sql", "odbc"), con = NULL, n_max = 100,
                        bigint = c("double", "integer64", "character"), host = NULL,
                        token = NULL) {
  via <- match.arg(via)
  bigint <- match.arg(bigint)
  n_max <- check_n_max(n_max)
  if (via == "odbc") check_con(con)
  as_of <- if (!is.null(as_of)) check_date(as_of)
  date <- if (via == "sql") "CAST(:as_of AS DATE)" else ":as_of"
  sql <- paste0("SELECT batch_id, as_of_date, model_alias, model_version, rows_read, ",
                "rows_scored, rows_quarantined, quarantine_rate, started_at, ended_at, ",
                "duration_seconds, status, official, run_id, model_name, drift_status, ",
                "drift_worst_feature, drift_worst_psi FROM ",
                yws_table(contract$views[["score_runs"]]),
                if (!is.null(as_of)) paste0(" WHERE as_of_date = ", date),
                " ORDER BY ended_at DESC, run_id DESC")
  params <- if (!is.null(as_of)) list(as_of = as.Date(as_of)) else list()
  out <- read_query(sql, params, via = via, con = con, n_max = n_max, bigint = bigint,
                    host = host, token = token)
  prediction_types(out)
}

#' @rdname yws_batches
#' @export
yws_quarantine <- function(batch_id, via = c("sql", "odbc"), con = NULL, n_max = Inf,
                           host = NULL, token = NULL) {
  via <- match.arg(via)
  n_max <- check_n_max(n_max)
  if (via == "odbc") check_con(con)
  batch_id <- check_batch_id(batch_id)
  sql <- paste0("SELECT * FROM ", yws_table(contract$views[["quarantine"]]),
                " WHERE batch_id = :batch_id ORDER BY entity_id")
  out <- read_query(sql, list(batch_id = batch_id), via = via, con = con, n_max = n_max,
                    host = host, token = token)
  prediction_types(out)
}

# One query through the chosen route; the ODBC route gets validated, quoted literals.
read_query <- function(sql, params, via, con, n_max = Inf, bigint = "double", host = NULL,
                       token = NULL) {
  if (via == "sql") {
    return(yws_sql(sql, params, n_max = n_max, bigint = bigint, host = host, token = token))
  }
  odbc_query(con, bind_literals(sql, params, con), n_max = n_max, bigint = bigint)
}

prediction_filters <- function(as_of, batch_id, bands) {
  list(as_of = if (!is.null(as_of)) check_date(as_of),
       batch_id = if (!is.null(batch_id)) check_batch_id(batch_id),
       bands = if (!is.null(bands)) check_bands(bands))
}

# The prediction views' R types, whatever route the rows took (an ODBC driver may return
# dates as text): only for the package's own views, never for a user's query.
prediction_types <- function(df) {
  if ("band" %in% names(df)) {
    df$band <- factor(as.character(df$band), levels = contract$bands, ordered = TRUE)
  }
  if ("previous_band" %in% names(df)) {
    df$previous_band <- factor(as.character(df$previous_band), levels = contract$bands,
                               ordered = TRUE)
  }
  for (col in intersect(c("as_of_date"), names(df))) {
    if (!inherits(df[[col]], "Date")) df[[col]] <- as.Date(as.character(df[[col]]))
  }
  for (col in intersect(c("scored_at", "started_at", "ended_at", "quarantined_at"), names(df))) {
    if (!inherits(df[[col]], "POSIXct")) df[[col]] <- parse_timestamp(as.character(df[[col]]))
  }
  for (col in intersect(c("prediction", "model_version"), names(df))) {
    df[[col]] <- as.integer(df[[col]])
  }
  for (col in intersect(c("probability", "quarantine_rate", "duration_seconds"), names(df))) {
    df[[col]] <- as.numeric(df[[col]])
  }
  for (col in intersect(c("official", "already_flagged"), names(df))) {
    if (!is.logical(df[[col]])) df[[col]] <- as_logical(df[[col]])
  }
  # the reason codes: all NA in a batch without reasons, which a driver may hand back as
  # logical; always character names and double contributions
  for (col in intersect(reason_columns, names(df))) {
    df[[col]] <- if (endsWith(col, "_contribution")) as.numeric(df[[col]]) else
      as.character(df[[col]])
  }
  df
}

# The reason code columns of the predictions views, in order.
reason_columns <- c("reason_1", "reason_1_contribution", "reason_2", "reason_2_contribution",
                    "reason_3", "reason_3_contribution")

as_logical <- function(x) {
  if (is.numeric(x)) return(x != 0)
  text <- tolower(as.character(x))
  ifelse(is.na(text), NA, text %in% c("true", "1", "t", "yes"))
}

check_date <- function(x) {
  text <- if (inherits(x, "Date")) format(x) else as.character(x)
  if (length(text) != 1 || is.na(text) || !grepl("^\\d{4}-\\d{2}-\\d{2}$", text) ||
      is.na(as.Date(text, optional = TRUE))) {
    yws_abort("{.arg as_of} must be one date (a Date or \"YYYY-MM-DD\"), not {.val {x}}.",
              class = "yws_input_error")
  }
  text
}

check_batch_id <- function(x) {
  if (!is.character(x) || length(x) != 1 || !grepl(contract$batch_id_pattern, x)) {
    yws_abort(paste("{.arg batch_id} must be 1-128 letters, digits, '_', '-', '.' or ':',",
                    "not {.val {x}}."), class = "yws_input_error")
  }
  x
}

check_bands <- function(x) {
  x <- toupper(as.character(x))
  bad <- setdiff(x, contract$bands)
  if (!length(x) || length(bad)) {
    known <- paste(contract$bands, collapse = ", ")
    yws_abort("{.arg bands} must be some of {known}; not {.val {bad}}.", class = "yws_input_error")
  }
  unique(x)
}

# catalog.schema.name; an empty catalog option ("") leaves the connection's default catalog.
yws_table <- function(name) {
  catalog <- getOption("yws.catalog") %||% env_or_null("YWS_CATALOG")
  if (identical(catalog, "")) return(paste(yws_schema(), name, sep = "."))
  paste(yws_catalog(), yws_schema(), name, sep = ".")
}
