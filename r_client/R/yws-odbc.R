#' Connect over ODBC, the way R-Studio users already do
#'
#' `yws_odbc_connection_string()` builds the Databricks ODBC driver's connection string from the
#' host, the warehouse's HTTP path and a token. `yws_odbc_connect()` opens an RODBC channel
#' from a DSN or that string. With `via = "odbc"`, [yws_predictions()] reads through such a
#' channel; RODBC has no bound parameters, so every value is validated and quoted first.
#'
#' @param http_path The warehouse's HTTP path, e.g. `/sql/1.0/warehouses/abc123`.
#' @param driver The ODBC driver's name as installed.
#' @inheritParams yws_host
#' @param dsn A data source name configured in `odbc.ini`.
#' @param connection A full connection string (overrides the others).
#' @return `yws_odbc_connection_string()`: a string. `yws_odbc_connect()`: an RODBC channel.
#' @examples
#' yws_odbc_connection_string(host = "https://adb-1.2.azuredatabricks.net",
#'                            http_path = "/sql/1.0/warehouses/abc", token = "dapi-x")
#' @export
yws_odbc_connection_string <- function(host = NULL, http_path, token = NULL,
                                       driver = "Simba Spark ODBC Driver") {
  hostname <- sub("^https?://", "", yws_host(host))
  for (v in list(hostname, http_path, yws_token(token), driver)) {
    if (grepl("[;{}]", v)) {
      cli::cli_abort("ODBC settings cannot contain ';', '{{' or '}}'.",
                     class = c("yws_input_error", "yws_error"))
    }
  }
  paste0("Driver=", driver, ";Host=", hostname, ";Port=443;HTTPPath=", http_path,
         ";SSL=1;ThriftTransport=2;AuthMech=3;UID=token;PWD=", yws_token(token))
}

#' @rdname yws_odbc_connection_string
#' @export
yws_odbc_connect <- function(dsn = NULL, connection = NULL) {
  rlang::check_installed("RODBC")
  con <- if (!is.null(connection)) {
    RODBC::odbcDriverConnect(connection, believeNRows = FALSE)
  } else if (!is.null(dsn)) {
    RODBC::odbcConnect(dsn, believeNRows = FALSE)
  } else {
    cli::cli_abort("Give {.arg dsn} or {.arg connection}.",
                   class = c("yws_input_error", "yws_error"))
  }
  if (!inherits(con, "RODBC")) {
    cli::cli_abort("The ODBC connection failed.", class = c("yws_odbc_error", "yws_error"))
  }
  con
}

quote_literal <- function(x) paste0("'", gsub("'", "''", x, fixed = TRUE), "'")

odbc_predictions <- function(con, table, filters) {
  if (!inherits(con, "RODBC")) {
    cli::cli_abort("{.arg con} must be an RODBC channel from {.fn yws_odbc_connect}.",
                   class = c("yws_input_error", "yws_error"))
  }
  where <- c(if (!is.null(filters$as_of)) paste0("as_of_date = ", quote_literal(filters$as_of)),
             if (!is.null(filters$batch_id)) paste0("batch_id = ",
                                                    quote_literal(filters$batch_id)),
             if (length(filters$bands)) paste0("band IN (", paste(quote_literal(filters$bands),
                                                                  collapse = ", "), ")"))
  sql <- paste0("SELECT * FROM ", table,
                if (length(where)) paste0(" WHERE ", paste(where, collapse = " AND ")),
                " ORDER BY entity_id, batch_id")
  out <- RODBC::sqlQuery(con, sql, believeNRows = FALSE, errors = TRUE,
                         stringsAsFactors = FALSE)
  if (!is.data.frame(out)) {
    cli::cli_abort(c("The ODBC query failed.", x = "{paste(out, collapse = ' ')}"),
                   class = c("yws_odbc_error", "yws_error"))
  }
  typed_predictions(out)
}
