#' Read a feature snapshot from the governed features table
#'
#' The rows of one snapshot date of the features table (`yws_features`, the table the jobs
#' train and score on), so a model is fitted on the governed data, not on a copy. Read
#' through the SQL Statement Execution API (`via = "sql"`, no driver needed) or a connection
#' (`via = "odbc"`: a DBI connection or an RODBC channel), like [yws_predictions()]; the
#' date is sent as a parameter (or a validated literal over ODBC), never pasted into SQL.
#'
#' Columns come typed for modelling: numbers as doubles, the label `defaulted_90d` as an
#' integer, booleans (`has_autopay`, `is_business`) as logicals, `as_of_date` as a `Date`,
#' the entity key `customer_id` as character, and every other text column (`region`,
#' `product_tier`, `channel`) as a factor with its levels sorted as [factor()] sorts them,
#' the levels [glm()] would record for a character column. Missing values are `NA`.
#'
#' A model fitted on the result can be exported with [yws_export_glm()]; the snapshot's
#' table and date are in `attr(x, "yws_features")` for its `as_of`.
#'
#' @param as_of The snapshot date (a `Date` or `"YYYY-MM-DD"`). Required: a snapshot is one
#'   date. A date with no rows is an error.
#' @param columns The columns to read (names of the table's columns), or `NULL` for all of
#'   them.
#' @param table The features table's name in the catalog and schema; default: option
#'   `yws.features_table`, else `"yws_features"`.
#' @inheritParams yws_predictions
#' @return A tibble, one row per entity of the snapshot ordered by `customer_id`, with the
#'   attribute `yws_features`: `list(table = <catalog.schema.table>, as_of = "YYYY-MM-DD")`.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' d <- yws_features(as_of = "2026-08-31")
#' fit <- glm(defaulted_90d ~ tenure_months + balance_utilization + region + has_autopay,
#'            family = binomial, data = d)
#' yws_export_glm(fit, as_of = attr(d, "yws_features")$as_of)
#' @export
yws_features <- function(as_of, columns = NULL, via = c("sql", "odbc"), con = NULL,
                         n_max = Inf, table = NULL, host = NULL, token = NULL) {
  if (missing(as_of) || is.null(as_of)) {
    yws_abort(c("{.fn yws_features} needs {.arg as_of}: the snapshot date to read.",
                i = "A Date or \"YYYY-MM-DD\", e.g. {.code as_of = \"2026-08-31\"}."),
              class = "yws_input_error")
  }
  via <- match.arg(via)
  as_of <- check_date(as_of)
  n_max <- check_n_max(n_max)
  columns <- check_columns(columns)
  table <- check_identifier(table %||% getOption("yws.features_table") %||% features$table,
                            "table")
  if (via == "odbc") check_con(con)
  name <- yws_table(table)
  date <- if (via == "sql") "CAST(:as_of AS DATE)" else ":as_of"
  sql <- paste0("SELECT ", if (is.null(columns)) "*" else paste(columns, collapse = ", "),
                " FROM ", name, " WHERE ", features$as_of, " = ", date,
                " ORDER BY ", features$key)
  out <- read_query(sql, list(as_of = as.Date(as_of)), via = via, con = con, n_max = n_max,
                    host = host, token = token)
  if (!nrow(out) && n_max > 0) {
    yws_abort(c("{.val {name}} has no snapshot for {.arg as_of} {.val {as_of}}.",
                i = "Snapshots are written by the data jobs; ask for a date that has one."),
              class = "yws_input_error")
  }
  out <- feature_types(out)
  attr(out, "yws_features") <- list(table = name, as_of = as_of)
  out
}

# The features table (sql/10_tables/10_yws_features.sql): its default name, its entity key
# and snapshot date, and the columns an ODBC driver may return in another type than the SQL
# API's manifest gives (booleans as 0/1 or text, the label as a double).
features <- list(table = "yws_features", key = "customer_id", as_of = "as_of_date",
                 logical = c("has_autopay", "is_business"), integer = "defaulted_90d")

check_columns <- function(columns) {
  if (is.null(columns)) return(NULL)
  ok <- is.character(columns) && length(columns) > 0 && !anyNA(columns) &&
    all(grepl(contract$identifier_pattern, columns))
  if (!ok || anyDuplicated(columns)) {
    yws_abort(c("{.arg columns} must be distinct column names (letters, digits and '_').",
                x = "Got {.val {columns}}."), class = "yws_input_error")
  }
  columns
}

# The modelling types, whatever route the rows took.
feature_types <- function(df) {
  for (col in names(df)) {
    x <- df[[col]]
    if (col == features$as_of) {
      if (!inherits(x, "Date")) df[[col]] <- as.Date(as.character(x))
    } else if (col %in% features$logical) {
      if (!is.logical(x)) df[[col]] <- as_logical(x)
    } else if (col %in% features$integer) {
      df[[col]] <- as.integer(x)
    } else if (is.character(x) && col != features$key) {
      df[[col]] <- factor(x)
    }
  }
  df
}
