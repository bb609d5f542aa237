#' Connect over ODBC, the way R-Studio users already do
#'
#' `yws_odbc_connection_string()` builds the Databricks ODBC driver's connection string from the
#' host (its port, when the URL names one, else 443), the warehouse's HTTP path and a token.
#' `yws_odbc_connect()` opens an RODBC channel from a DSN or that string; when the driver
#' refuses, the error carries the driver's own reason.
#'
#' With `via = "odbc"`, [yws_predictions()], [yws_batches()] and [yws_score()] read through a
#' connection: any DBI connection (`DBI::dbConnect(odbc::databricks(), ...)`, brickster's, or
#' another `DBIConnection`) or an RODBC channel. Values are validated and quoted as literals
#' first (RODBC has no bound parameters).
#'
#' @param http_path The warehouse's HTTP path, e.g. `/sql/1.0/warehouses/abc123`.
#' @param driver The ODBC driver's name as installed.
#' @param port The port; `NULL` takes it from the host's URL, else 443.
#' @inheritParams yws_host
#' @param dsn A data source name configured in `odbc.ini`.
#' @param connection A full connection string (overrides the others).
#' @return `yws_odbc_connection_string()`: a string. `yws_odbc_connect()`: an RODBC channel.
#' @examples
#' yws_odbc_connection_string(host = "https://adb-1.2.azuredatabricks.net",
#'                            http_path = "/sql/1.0/warehouses/abc", token = "dapi-x")
#' yws_odbc_connection_string(host = "https://proxy.internal:8443",
#'                            http_path = "/sql/1.0/warehouses/abc", token = "dapi-x")
#' @export
yws_odbc_connection_string <- function(host = NULL, http_path, token = NULL,
                                       driver = "Simba Spark ODBC Driver", port = NULL) {
  url <- yws_host(host)
  authority <- sub("/.*$", "", sub("^https?://", "", url))
  hostname <- sub(":[0-9]+$", "", authority)
  from_url <- if (grepl(":[0-9]+$", authority)) sub("^.*:", "", authority)
  port <- as.character(port %||% from_url %||% "443")
  if (!grepl("^[0-9]{1,5}$", port) || as.integer(port) > 65535) {
    yws_abort("{.arg port} must be a port number, not {.val {port}}.", class = "yws_input_error")
  }
  for (v in list(hostname, http_path, yws_token(token), driver)) {
    if (grepl("[;{}]", v)) {
      yws_abort("ODBC settings cannot contain ';', '{{' or '}}'.", class = "yws_input_error")
    }
  }
  paste0("Driver=", driver, ";Host=", hostname, ";Port=", port, ";HTTPPath=", http_path,
         ";SSL=1;ThriftTransport=2;AuthMech=3;UID=token;PWD=", yws_token(token))
}

#' @rdname yws_odbc_connection_string
#' @export
yws_odbc_connect <- function(dsn = NULL, connection = NULL) {
  rlang::check_installed("RODBC")
  if (is.null(connection) && is.null(dsn)) {
    yws_abort("Give {.arg dsn} or {.arg connection}.", class = "yws_input_error")
  }
  reasons <- character()
  con <- withCallingHandlers(
    if (!is.null(connection)) {
      RODBC::odbcDriverConnect(connection, believeNRows = FALSE)
    } else {
      RODBC::odbcConnect(dsn, believeNRows = FALSE)
    },
    warning = function(w) {
      reasons <<- c(reasons, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  if (!inherits(con, "RODBC")) {
    shown <- unique(reasons[nzchar(reasons)])
    yws_abort(c("The ODBC connection failed.",
                if (length(shown)) rlang::set_names(shown, rep("x", length(shown))) else
                  c(x = "The driver gave no reason."),
                i = if (!is.null(dsn)) "Data source: {.val {dsn}}."),
              class = "yws_odbc_error", reasons = shown)
  }
  con
}

check_con <- function(con) {
  if (inherits(con, "RODBC")) {
    if (!isTRUE(tryCatch(RODBC::odbcGetInfo(con)[[1]] != "", error = function(e) FALSE))) {
      yws_abort("The RODBC channel in {.arg con} is closed.", class = "yws_input_error")
    }
    return(invisible(con))
  }
  if (inherits(con, "DBIConnection")) {
    if (!DBI::dbIsValid(con)) {
      yws_abort("The DBI connection in {.arg con} is no longer valid.", class = "yws_input_error")
    }
    return(invisible(con))
  }
  yws_abort(c(
    "{.code via = \"odbc\"} needs a connection in {.arg con}.",
    i = "A DBI connection ({.code DBI::dbConnect(odbc::databricks(), ...)}) or an RODBC channel from {.fn yws_odbc_connect}."),
    class = "yws_input_error")
}

quote_literal <- function(x) paste0("'", gsub("'", "''", x, fixed = TRUE), "'")

# ":name" placeholders become quoted literals (the values were validated before).
bind_literals <- function(sql, params, con = NULL) {
  for (name in names(params)[order(-nchar(names(params)))]) {
    value <- params[[name]]
    text <- if (inherits(value, "Date")) format(value) else as.character(value)
    literal <- if (inherits(con, "DBIConnection")) {
      as.character(DBI::dbQuoteString(con, text))
    } else {
      quote_literal(text)
    }
    sql <- gsub(paste0(":", name, "\\b"), literal, sql, perl = TRUE)
  }
  sql
}

odbc_query <- function(con, sql, n_max = Inf, bigint = "double") {
  check_con(con)
  if (inherits(con, "DBIConnection")) {
    out <- tryCatch(DBI::dbGetQuery(con, sql, n = if (is.finite(n_max)) n_max else -1),
                    error = function(e) {
                      yws_abort(c("The query failed.", x = conditionMessage(e)),
                                class = "yws_odbc_error", parent = e)
                    })
  } else {
    out <- RODBC::sqlQuery(con, sql, believeNRows = FALSE, errors = TRUE,
                           stringsAsFactors = FALSE, max = if (is.finite(n_max)) n_max else 0)
    if (!is.data.frame(out)) {
      yws_abort(c("The ODBC query failed.", x = "{paste(out, collapse = ' ')}"),
                class = "yws_odbc_error")
    }
  }
  for (col in names(out)) {
    if (inherits(out[[col]], "integer64") && bigint != "integer64") {
      out[[col]] <- if (bigint == "character") as.character(out[[col]]) else
        as.numeric(out[[col]])
    }
  }
  tibble::as_tibble(out, .name_repair = "minimal")
}
