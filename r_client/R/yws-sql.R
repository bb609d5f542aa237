#' Run a query on the SQL warehouse through the Statement Execution API
#'
#' Named parameters (`:name` in the statement) are sent as parameters and bound by the
#' warehouse; they never become part of the SQL text. Long results are followed chunk by
#' chunk. Columns get R types from the result's schema.
#'
#' @param statement One SQL query with `:name` parameters.
#' @param params A named list of parameter values.
#' @param warehouse_id The SQL warehouse; see [yws_warehouse_id()].
#' @param timeout Seconds to wait for the statement.
#' @inheritParams yws_host
#' @return A data frame.
#' @examples
#' \dontrun{
#' yws_sql("SELECT * FROM yws_dev.ml.v_yws_warnings WHERE band = :band",
#'         list(band = "RED"))
#' }
#' @export
yws_sql <- function(statement, params = list(), warehouse_id = NULL, timeout = 600,
                    host = NULL, token = NULL) {
  warehouse_id <- warehouse_id %||% yws_warehouse_id(host, token)
  if (length(params) && (is.null(names(params)) || any(!nzchar(names(params))))) {
    cli::cli_abort("{.arg params} must be a named list.", class = c("yws_input_error",
                                                                   "yws_error"))
  }
  body <- list(statement = statement, warehouse_id = warehouse_id, wait_timeout = "30s",
               on_wait_timeout = "CONTINUE", format = "JSON_ARRAY", disposition = "INLINE",
               parameters = unname(Map(function(name, value) {
                 list(name = name, value = if (is.null(value)) NULL else as.character(value))
               }, names(params), params)))
  if (!length(params)) body$parameters <- NULL
  out <- yws_perform(yws_request("/api/2.0/sql/statements", body = body, host = host,
                                 token = token))
  deadline <- Sys.time() + timeout
  while (out$status$state %in% c("PENDING", "RUNNING")) {
    if (Sys.time() > deadline) {
      yws_perform(yws_request(paste0("/api/2.0/sql/statements/", out$statement_id, "/cancel"),
                              body = list(), host = host, token = token))
      cli::cli_abort("The statement did not finish within {timeout} s; it was cancelled.",
                     class = c("yws_timeout", "yws_error"))
    }
    Sys.sleep(0.5)
    out <- yws_perform(yws_request(paste0("/api/2.0/sql/statements/", out$statement_id),
                                   host = host, token = token))
  }
  if (!identical(out$status$state, "SUCCEEDED")) {
    cli::cli_abort(c("The statement {out$status$state}.",
                     x = "{out$status$error$message %||% 'no message'}"),
                   class = c("yws_sql_error", "yws_error"))
  }
  columns <- out$manifest$schema$columns
  rows <- out$result$data_array %||% list()
  chunk <- out$result
  while (!is.null(chunk$next_chunk_index)) {
    chunk <- yws_perform(yws_request(
      paste0("/api/2.0/sql/statements/", out$statement_id, "/result/chunks/",
             chunk$next_chunk_index), host = host, token = token))
    rows <- c(rows, chunk$data_array %||% list())
  }
  as_frame(rows, vapply(columns, function(c) c$name, character(1)),
           vapply(columns, function(c) c$type_name, character(1)))
}

as_frame <- function(rows, names, types) {
  cols <- lapply(seq_along(names), function(i) {
    values <- vapply(rows, function(r) {
      v <- r[[i]]
      if (is.null(v)) NA_character_ else as.character(v)
    }, character(1))
    convert(values, types[[i]])
  })
  names(cols) <- names
  out <- as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE)
  if (!length(rows)) out <- out[0, , drop = FALSE]
  typed_predictions(out)
}

convert <- function(values, type) {
  switch(type,
    INT = , SHORT = , BYTE = as.integer(values),
    LONG = , DOUBLE = , FLOAT = , DECIMAL = as.numeric(values),
    BOOLEAN = values == "true",
    DATE = as.Date(values),
    TIMESTAMP = as.POSIXct(sub("Z$", "", sub("T", " ", values)), tz = "UTC",
                           tryFormats = c("%Y-%m-%d %H:%M:%OS", "%Y-%m-%d")),
    values)
}

# The prediction columns' R types, whatever route the rows took.
typed_predictions <- function(df) {
  if ("band" %in% names(df)) {
    df$band <- factor(df$band, levels = c("GREEN", "YELLOW", "RED"), ordered = TRUE)
  }
  if ("as_of_date" %in% names(df) && !inherits(df$as_of_date, "Date")) {
    df$as_of_date <- as.Date(as.character(df$as_of_date))
  }
  if ("scored_at" %in% names(df) && !inherits(df$scored_at, "POSIXct")) {
    df$scored_at <- as.POSIXct(sub("Z$", "", sub("T", " ", as.character(df$scored_at))),
                               tz = "UTC")
  }
  for (col in intersect(c("prediction", "model_version"), names(df))) {
    df[[col]] <- as.integer(df[[col]])
  }
  if ("probability" %in% names(df)) df$probability <- as.numeric(df$probability)
  df
}

#' Read YWS predictions from the SQL views
#'
#' @param as_of Keep this snapshot date only (a `Date` or `"YYYY-MM-DD"`).
#' @param batch_id Keep this scoring batch only.
#' @param bands Keep these bands only (`"GREEN"`, `"YELLOW"`, `"RED"`).
#' @param via `"sql"` (the Statement Execution API, no driver needed) or `"odbc"` (an RODBC
#'   channel, see [yws_odbc_connect()]).
#' @param con The RODBC channel when `via = "odbc"`.
#' @param view `"all"` (every batch), `"latest"` (latest per entity) or `"warnings"`.
#' @inheritParams yws_host
#' @return A data frame: `entity_id`, `as_of_date` (Date), `batch_id`, `probability`,
#'   `prediction`, `band` (ordered factor GREEN < YELLOW < RED), `model_name`,
#'   `model_version`, `scored_at` (POSIXct, UTC).
#' @examples
#' \dontrun{
#' yws_predictions(batch_id = "nightly-2026-11-30", bands = c("YELLOW", "RED"))
#' }
#' @export
yws_predictions <- function(as_of = NULL, batch_id = NULL, bands = NULL,
                            via = c("sql", "odbc"), con = NULL,
                            view = c("all", "latest", "warnings"), host = NULL,
                            token = NULL) {
  via <- match.arg(via)
  view <- match.arg(view)
  table <- yws_table(c(all = "v_yws_predictions", latest = "v_yws_predictions_latest",
                       warnings = "v_yws_warnings")[[view]])
  filters <- prediction_filters(as_of, batch_id, bands)
  if (via == "odbc") return(odbc_predictions(con, table, filters))
  where <- c(if (!is.null(filters$as_of)) "as_of_date = CAST(:as_of AS DATE)",
             if (!is.null(filters$batch_id)) "batch_id = :batch_id",
             if (length(filters$bands)) {
               paste0("band IN (", paste0(":band", seq_along(filters$bands), collapse = ", "),
                      ")")
             })
  sql <- paste0("SELECT * FROM ", table,
                if (length(where)) paste0(" WHERE ", paste(where, collapse = " AND ")),
                " ORDER BY entity_id, batch_id")
  bands <- as.list(filters$bands)
  if (length(bands)) names(bands) <- paste0("band", seq_along(bands))
  params <- c(list(as_of = filters$as_of, batch_id = filters$batch_id), bands)
  yws_sql(sql, Filter(Negate(is.null), params), host = host, token = token)
}

prediction_filters <- function(as_of, batch_id, bands) {
  list(as_of = if (!is.null(as_of)) check_date(as_of),
       batch_id = if (!is.null(batch_id)) check_batch_id(batch_id),
       bands = if (!is.null(bands)) check_bands(bands))
}

check_date <- function(x) {
  text <- if (inherits(x, "Date")) format(x) else as.character(x)
  if (length(text) != 1 || is.na(text) || !grepl("^\\d{4}-\\d{2}-\\d{2}$", text) ||
      is.na(as.Date(text, optional = TRUE))) {
    cli::cli_abort("{.arg as_of} must be one date (a Date or \"YYYY-MM-DD\"), not {.val {x}}.",
                   class = c("yws_input_error", "yws_error"))
  }
  text
}

check_batch_id <- function(x) {
  if (!is.character(x) || length(x) != 1 || !grepl("^[A-Za-z0-9_.:-]{1,128}$", x)) {
    cli::cli_abort(paste("{.arg batch_id} must be 1-128 letters, digits, '_', '-', '.' or ':',",
                         "not {.val {x}}."), class = c("yws_input_error", "yws_error"))
  }
  x
}

check_bands <- function(x) {
  x <- toupper(as.character(x))
  bad <- setdiff(x, c("GREEN", "YELLOW", "RED"))
  if (!length(x) || length(bad)) {
    cli::cli_abort("{.arg bands} must be some of GREEN, YELLOW, RED; not {.val {bad}}.",
                   class = c("yws_input_error", "yws_error"))
  }
  unique(x)
}

# catalog.schema.name; an empty catalog option ("") leaves the connection's default catalog.
yws_table <- function(name) {
  catalog <- getOption("yws.catalog") %||% env_or_null("YWS_CATALOG")
  if (identical(catalog, "")) return(paste(yws_schema(), name, sep = "."))
  paste(yws_catalog(), yws_schema(), name, sep = ".")
}
