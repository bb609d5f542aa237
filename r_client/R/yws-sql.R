#' Run a query on the SQL warehouse through the Statement Execution API
#'
#' Named parameters (`:name` in the statement) are sent as parameters with their type and
#' bound by the warehouse; they never become part of the SQL text. Long results are followed
#' chunk by chunk. Every column gets its R type from the result manifest, and from nothing
#' else: a column named `band` or `prediction` in your query stays what the query made it.
#'
#' | SQL type | R type |
#' |---|---|
#' | `BOOLEAN` | logical |
#' | `BYTE`, `SHORT`, `INT` | integer |
#' | `LONG` (`BIGINT`) | see `bigint` |
#' | `FLOAT`, `DOUBLE`, `DECIMAL` | double |
#' | `DATE` | `Date` |
#' | `TIMESTAMP`, `TIMESTAMP_NTZ` | `POSIXct` in UTC |
#' | anything else | character (arrays, maps and structs as JSON text) |
#'
#' A statement that fails (a syntax error, a missing table, a missing grant) raises a
#' `yws_sql_error` carrying the warehouse's `error_code`, `sql_state` and message.
#'
#' @param statement One SQL query with `:name` parameters.
#' @param params A named list of parameter values, each of length one. Their SQL type follows
#'   the R class: `Date` is `DATE`, `POSIXct` is `TIMESTAMP`, integer is `INT`, double is
#'   `DOUBLE`, logical is `BOOLEAN`, `integer64` is `BIGINT`, anything else `STRING`.
#' @param warehouse_id The SQL warehouse; see [yws_warehouse_id()].
#' @param timeout Seconds to wait for the whole call (the statement is cancelled after it).
#' @param n_max The most rows to return (`Inf`: all). The warehouse stops there, so a
#'   first look at a large view is cheap.
#' @param bigint How to return `BIGINT` (`LONG`) columns: `"double"` (exact up to 2^53),
#'   `"integer64"` (the bit64 package) or `"character"`.
#' @inheritParams yws_host
#' @return A tibble.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' yws_sql("SELECT * FROM yws_dev.ml.v_yws_warnings WHERE band = :band",
#'         list(band = "RED"), n_max = 100)
#' @export
yws_sql <- function(statement, params = list(), warehouse_id = NULL, timeout = 600,
                    n_max = Inf, bigint = c("double", "integer64", "character"),
                    host = NULL, token = NULL) {
  bigint <- match.arg(bigint)
  if (bigint == "integer64") rlang::check_installed("bit64", "to return BIGINT as integer64")
  n_max <- check_n_max(n_max)
  local_deadline(timeout)
  if (length(params) && (is.null(names(params)) || any(!nzchar(names(params))))) {
    yws_abort("{.arg params} must be a named list.", class = "yws_input_error")
  }
  warehouse_id <- warehouse_id %||% yws_warehouse_id(host, token)
  body <- list(statement = statement, warehouse_id = warehouse_id,
               wait_timeout = wait_timeout(), on_wait_timeout = "CONTINUE",
               format = "JSON_ARRAY", disposition = "INLINE",
               row_limit = if (is.finite(n_max)) n_max,
               parameters = unname(Map(sql_parameter, names(params), params)))
  if (!length(params)) body$parameters <- NULL
  if (is.null(body$row_limit)) body$row_limit <- NULL
  out <- statement_call(yws_request("/api/2.0/sql/statements", body = body, host = host,
                                    token = token))
  id <- out$statement_id
  out <- tryCatch(finish_statement(out, host, token), interrupt = function(cnd) {
    cancel_statement(id, host, token)
    rlang::interrupt()
  }, yws_timeout = function(e) {
    cancel_statement(id, host, token)
    yws_abort("The statement did not finish within {timeout} s; it was cancelled.",
              class = "yws_timeout", parent = e)
  })
  columns <- out$manifest$schema$columns %||% list()
  if (isTRUE(out$manifest$truncated) && !is.finite(n_max)) {
    yws_abort(c("The warehouse truncated the result of statement {id}.",
                i = "Ask for fewer rows ({.arg n_max}) or filter the query."),
              class = "yws_truncated")
  }
  rows <- read_chunks(out, host, token)
  as_frame(rows, vapply(columns, function(c) c$name, character(1)),
           vapply(columns, function(c) c$type_name %||% "STRING", character(1)), bigint)
}

# A statement's execution errors: HTTP 200 with status FAILED (Databricks), or HTTP 400 (an
# older yws serve); both raise a yws_sql_error with the warehouse's message.
statement_call <- function(req, call = rlang::caller_env()) {
  out <- tryCatch(perform_json(req, call = call, rows = TRUE), yws_http_400 = function(e) {
    abort_sql(e$error_code, NULL, rlang::cnd_message(e), call = call)
  })
  check_statement(out, call)
}

check_statement <- function(out, call = rlang::caller_env()) {
  state <- out$status$state %||% "UNKNOWN"
  if (state %in% c("FAILED", "CANCELED", "CLOSED")) {
    error <- out$status$error
    abort_sql(error$error_code %||% state, out$status$sql_state %||% error$sql_state,
              error$message %||% paste("The statement ended", state), call = call)
  }
  out
}

abort_sql <- function(code, sql_state, message, call = rlang::caller_env()) {
  yws_abort(c("The SQL statement failed ({code}).", x = "{message}"),
            class = "yws_sql_error", error_code = code, sql_state = sql_state, call = call)
}

finish_statement <- function(out, host, token) {
  pause <- 0.1
  while (out$status$state %in% c("PENDING", "RUNNING")) {
    if (time_left() <= pause) abort_deadline()
    Sys.sleep(pause)
    pause <- min(pause * 2, 1)
    out <- statement_call(yws_request(paste0("/api/2.0/sql/statements/", out$statement_id),
                                      host = host, token = token))
  }
  out
}

cancel_statement <- function(id, host, token) {
  if (is.null(id)) return(invisible())
  old <- the$deadline
  the$deadline <- Sys.time() + 10
  on.exit(the$deadline <- old)
  tryCatch(yws_perform(yws_request(paste0("/api/2.0/sql/statements/", id, "/cancel"),
                                   body = structure(list(), names = character()),
                                   host = host, token = token)),
           yws_error = function(e) NULL)
  invisible()
}

# wait_timeout is 0 or 5-50 s: hold the first request while the call has time for it.
wait_timeout <- function() {
  seconds <- floor(min(time_left(), http_timeout()) - 2)
  if (seconds >= 5) paste0(min(seconds, 10), "s") else "0s"
}

read_chunks <- function(out, host, token) {
  chunk <- out$result
  parts <- list(as_rows(chunk$data_array))
  while (!is.null(chunk$next_chunk_index)) {
    path <- chunk$next_chunk_internal_link %||%
      paste0("/api/2.0/sql/statements/", out$statement_id, "/result/chunks/",
             chunk$next_chunk_index)
    chunk <- perform_json(yws_request(path, host = host, token = token), rows = TRUE)
    parts[[length(parts) + 1]] <- as_rows(chunk$data_array)
  }
  do.call(rbind, parts)
}

# data_array as a character matrix, one row per result row (NULL: none).
as_rows <- function(data) {
  if (is.null(data) || !length(data)) return(NULL)
  if (is.matrix(data)) {
    storage.mode(data) <- "character"
    return(data)
  }
  if (is.list(data)) {  # rows jsonlite could not simplify (ragged or nested values)
    return(do.call(rbind, lapply(data, function(r) vapply(r, function(v) {
      if (is.null(v)) NA_character_ else paste(as.character(unlist(v)), collapse = ",")
    }, character(1)))))
  }
  matrix(as.character(data), nrow = 1)  # one row with one value
}

sql_parameter <- function(name, value) {
  if (length(value) > 1) {
    yws_abort("Parameter {.val {name}} must be one value, not {length(value)}.",
              class = "yws_input_error")
  }
  type <- if (inherits(value, "Date")) "DATE"
    else if (inherits(value, "POSIXct")) "TIMESTAMP"
    else if (inherits(value, "integer64")) "BIGINT"
    else if (is.integer(value)) "INT"
    else if (is.double(value)) "DOUBLE"
    else if (is.logical(value)) "BOOLEAN"
    else "STRING"
  text <- if (is.null(value) || (length(value) == 1 && is.na(value))) NULL
    else if (inherits(value, "POSIXct")) format(value, "%Y-%m-%dT%H:%M:%OS6Z", tz = "UTC")
    else if (is.logical(value)) tolower(as.character(value))
    else if (is.double(value) && !inherits(value, "Date")) format(value, digits = 17)
    else as.character(value)
  list(name = name, value = text, type = type)
}

check_n_max <- function(n_max) {
  if (!is.numeric(n_max) || length(n_max) != 1 || is.na(n_max) || n_max < 0 ||
      (is.finite(n_max) && n_max != round(n_max))) {
    yws_abort("{.arg n_max} must be a whole number of rows or {.code Inf}.",
              class = "yws_input_error")
  }
  n_max
}

as_frame <- function(rows, names, types, bigint = "double") {
  if (!is.matrix(rows)) rows <- as_rows(rows) %||% matrix(character(), 0, length(names))
  cols <- lapply(seq_along(names), function(i) convert(unname(rows[, i]), types[[i]], bigint))
  names(cols) <- make.unique(names)
  tibble::as_tibble(cols, .name_repair = "minimal")
}

convert <- function(values, type, bigint = "double") {
  switch(type,
    INT = , SHORT = , BYTE = as.integer(values),
    LONG = switch(bigint, double = as.numeric(values), character = values,
                  integer64 = bit64::as.integer64(values)),
    DOUBLE = , FLOAT = , DECIMAL = as.numeric(values),
    BOOLEAN = ifelse(is.na(values), NA, values == "true"),
    DATE = as.Date(values),
    TIMESTAMP = , TIMESTAMP_NTZ = parse_timestamp(values),
    values)
}

parse_timestamp <- function(values) {
  text <- sub("(Z|[+-]00:?00)$", "", sub("T", " ", values, fixed = TRUE))
  out <- as.POSIXct(text, tz = "UTC", format = "%Y-%m-%d %H:%M:%OS")
  short <- is.na(out) & !is.na(text)
  out[short] <- as.POSIXct(text[short], tz = "UTC", format = "%Y-%m-%d")
  out
}
