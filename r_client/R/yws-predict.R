#' Score rows now with the model behind a Model Serving endpoint
#'
#' Sends the rows of `newdata` to a Model Serving endpoint (`POST
#' /serving-endpoints/{endpoint}/invocations`, the same call on a workspace and on the local
#' `yws serve`) and returns them with the model's answer: `probability`, `prediction` and
#' `band`, typed as [yws_score()] types them, and `error`, why a row was refused. No job runs
#' and nothing is written: this is for the rows you have in hand (a what-if, a few customers,
#' a file), while [yws_score()] scores the day's snapshot as an audited batch.
#'
#' # What is sent
#'
#' Every column of `newdata` (except `probability`, `prediction`, `band` and `error`, which
#' the answer replaces), in the split orientation (`dataframe_split`). The endpoint reads the
#' features its model needs and ignores the other columns; select columns first to send less.
#' A feature column missing from `newdata` refuses the whole request: a `yws_input_error`
#' with the endpoint's message naming it.
#'
#' | R | JSON |
#' |---|---|
#' | `NA` (any type) | `null`, a missing value (imputed or refused as the batch job would) |
#' | double | a number, exact to the last bit; `NaN`, `Inf`, `-Inf` as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (JSON has no such numbers), so the row is judged as the batch job judges it |
#' | integer, logical | a number, `true` / `false` |
#' | character, factor | a string (a factor's label) |
#' | `Date` | `"YYYY-MM-DD"` |
#' | `POSIXct` | `"YYYY-MM-DDTHH:MM:SS.ssssssZ"` (UTC) |
#'
#' Other column types (lists, complex, raw, ...) are a `yws_input_error` before anything is
#' sent. Large data goes in requests of at most `chunk_size` rows and 8 MB each (Model Serving
#' takes at most 16 MB per request), one after another with a progress bar; the rows come back
#' in their order.
#'
#' # Refused rows
#'
#' A row the batch job would quarantine (a required value missing, a number that is not
#' finite, an unknown category where the model refuses them) or a value of the wrong type is
#' refused: no probability, never a silent one. Its `probability`, `prediction` and `band` are
#' `NA` and `error` says why, e.g. `"tenure_months is infinite"`. With `on_error = "keep"`
#' (the default) every row is returned and a warning of class `yws_rejected_rows` counts the
#' refused rows by reason (fields `rows`, their row numbers in `newdata`, and `reasons`);
#' `on_error = "abort"` raises an error of class `yws_rejected_rows` instead, with the same
#' fields and the rows, scored or not, in `data`. It is a warning, where [yws_score()] gives a
#' message for the rows its batch set aside, because here the refused rows are in the result,
#' with `NA` scores that a summary would otherwise pass over.
#'
#' # Errors
#'
#' Each is a `yws_error` (see [yws-package]): `yws_input_error` (`newdata`, the endpoint's
#' name, a missing feature: the endpoint's HTTP 400 keeps its classes `yws_http_400` and
#' `yws_http`); `yws_http_403` (the token may not query the endpoint: it needs `CAN_QUERY`);
#' `yws_http_404` (no endpoint of that name); `yws_response_error` (an answer that does not have one prediction per row sent);
#' `yws_timeout`, `yws_connection_error`. `429` is retried as every request of the package
#' is; `503`, an endpoint scaled to zero that is starting, is retried until `timeout` (with a
#' message saying so), then is a `yws_http_503`. An invocation changes nothing, so a repeated
#' one is harmless.
#'
#' @param newdata A data frame or tibble, one row per entity to score.
#' @param endpoint The serving endpoint's name (letters, digits, `-`, `_`). `NULL`: option
#'   `yws.serving_endpoint`, then the variable `YWS_SERVING_ENDPOINT`, then `"yws_lr"`, the
#'   name the bundle gives it.
#' @param on_error `"keep"`: return refused rows with `error` set, and warn. `"abort"`: raise
#'   a `yws_rejected_rows` error when any row is refused.
#' @param chunk_size The most rows per request.
#' @param timeout Seconds for the whole call, every request included.
#' @param reasons `TRUE`: also ask each row's reason codes, the three features that raised its
#'   log-odds the most (the request's MLflow `params`, `{"reasons": true}`, which the logged
#'   model's signature declares).
#' @inheritParams yws_host
#' @return A tibble: the columns of `newdata`, then `probability` (double), `prediction`
#'   (integer), `band` (ordered factor GREEN < YELLOW < RED) and `error` (character, `NA`
#'   for a scored row), one row per row of `newdata`, in its order. With `reasons = TRUE`,
#'   then `reason_1`, `reason_1_contribution`, ..., `reason_3_contribution` (character and
#'   double; `NA` past a row's positive contributions, for a refused row, and for a model
#'   version without training means), as in [yws_predictions()].
#' @seealso <https://docs.databricks.com/en/machine-learning/model-serving/score-model-serving-endpoints.html>
#'   for the request format.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN) and a serving endpoint
#' customer <- data.frame(
#'   customer_id = "C00000042", tenure_months = 40, monthly_spend = 55.5,
#'   balance_utilization = 0.3, days_past_due_avg = 0, late_payments_12m = 0,
#'   credit_limit = 5000, support_calls_90d = 1, has_autopay = TRUE, is_business = FALSE,
#'   region = "north", product_tier = "gold", channel = "web")
#' yws_predict(customer)   # on the endpoint "yws_lr", the bundle's
#' # what if they had paid late twice this year?
#' yws_predict(transform(customer, late_payments_12m = 2))
#' @export
yws_predict <- function(newdata, endpoint = NULL, on_error = c("keep", "abort"),
                        chunk_size = 10000, timeout = 600, reasons = FALSE, host = NULL,
                        token = NULL) {
  on_error <- match.arg(on_error)
  if (!rlang::is_bool(reasons)) {
    yws_abort(paste("{.arg reasons} must be {.code TRUE} or {.code FALSE}, not",
                    "{.obj_type_friendly {reasons}}."), class = "yws_input_error")
  }
  local_deadline(timeout)
  endpoint <- serving_endpoint(endpoint)
  check_newdata(newdata)
  chunk_size <- check_chunk_size(chunk_size)
  yws_host(host)
  yws_token(token)
  data <- tibble::as_tibble(newdata, .name_repair = "minimal")
  outputs <- c(predict_outputs, if (reasons) reason_outputs)
  data <- data[setdiff(names(data), outputs)]
  n <- nrow(data)
  path <- paste0("/serving-endpoints/", endpoint, "/invocations")
  columns <- paste(json_string(names(data)), collapse = ",")
  parts <- list()
  cli::cli_progress_bar("Scoring {n} row{?s} on {.val {endpoint}}", total = n)
  # rows are encoded a chunk at a time (memory), and a chunk too large for one request is
  # split by size; requests go one after another, so the answers keep the rows' order
  for (start in if (n > 0) seq(1, n, by = chunk_size) else integer()) {
    block <- start:min(n, start + chunk_size - 1)
    rows <- json_rows(data[block, , drop = FALSE])
    for (sub in split_chunks(nchar(rows, type = "bytes"), chunk_size, predict_max_bytes)) {
      body <- paste0('{"dataframe_split":{"columns":[', columns, '],"data":[',
                     paste0("[", rows[sub], "]", collapse = ","), "]}",
                     if (reasons) ',"params":{"reasons":true}', "}")
      req <- httr2::req_body_raw(yws_request(path, host = host, token = token), body,
                                 type = "application/json")
      answer <- invoke(req, endpoint, host)
      parts[[length(parts) + 1]] <- predictions_frame(answer, length(sub), endpoint,
                                                      first = block[sub[[1]]],
                                                      reasons = reasons)
      cli::cli_progress_update(inc = length(sub))
    }
  }
  cli::cli_progress_done()
  scored <- if (length(parts)) do.call(rbind, parts) else
    predictions_frame(NULL, 0, endpoint, reasons = reasons)
  out <- tibble::as_tibble(data, .name_repair = "minimal")
  for (col in outputs) out[[col]] <- scored[[col]]
  report_rejected(out, endpoint, on_error)
}

predict_outputs <- c("probability", "prediction", "band", "error")

# With reasons = TRUE (python/yws/model/evaluator.py, REASON_OUTPUTS), in this order.
reason_outputs <- c(rbind(paste0("reason_", 1:3), paste0("reason_", 1:3, "_contribution")))

# Model Serving's limit is 16 MB per request: stay well under it.
predict_max_bytes <- 8e6

# Databricks: letters, digits, '-' and '_', at most 63 characters. It also goes into the URL
# path, so nothing else may pass.
endpoint_pattern <- "^[A-Za-z0-9_-]{1,63}$"

# The bundle's name for it (jobs/databricks.yml, variable serving_endpoint).
default_endpoint <- "yws_lr"

serving_endpoint <- function(endpoint = NULL, call = rlang::caller_env()) {
  endpoint <- endpoint %||% getOption("yws.serving_endpoint") %||%
    env_or_null("YWS_SERVING_ENDPOINT") %||% default_endpoint
  if (!is.character(endpoint) || length(endpoint) != 1 || is.na(endpoint) ||
      !grepl(endpoint_pattern, endpoint)) {
    yws_abort(paste("{.arg endpoint} must be a serving endpoint's name (1-63 letters, digits,",
                    "{.code -} or {.code _}), not {.val {endpoint}}."),
              class = "yws_input_error", call = call)
  }
  endpoint
}

check_newdata <- function(newdata, call = rlang::caller_env()) {
  if (!is.data.frame(newdata)) {
    yws_abort("{.arg newdata} must be a data frame or tibble, not {.cls {class(newdata)}}.",
              class = "yws_input_error", call = call)
  }
  names <- names(newdata)
  if (!length(names) || anyNA(names) || any(!nzchar(names)) || anyDuplicated(names)) {
    yws_abort("{.arg newdata} must have columns with distinct, non-empty names.",
              class = "yws_input_error", call = call)
  }
  for (name in setdiff(names, predict_outputs)) {
    x <- newdata[[name]]
    if (!is_sendable(x)) {
      yws_abort(c("Column {.field {name}} cannot be sent: it is {.cls {class(x)}}.",
                  i = paste("Send numbers, logicals, text, factors, Dates or POSIXct;",
                            "drop or convert it.")),
                class = "yws_input_error", column = name, call = call)
    }
    if (is.character(x) || is.factor(x)) {
      text <- enc2utf8(as.character(x))
      bad <- which(!is.na(text) & !validUTF8(text))
      if (length(bad)) {
        yws_abort(paste("Column {.field {name}} has text that is not valid UTF-8",
                        "(row{?s} {utils::head(bad, 5)})."),
                  class = "yws_input_error", column = name, call = call)
      }
    }
  }
  invisible(newdata)
}

is_sendable <- function(x) {
  if (is.object(x)) {
    return(inherits(x, c("factor", "Date", "POSIXt", "integer64")) && !is.list(x) ||
             inherits(x, "POSIXlt"))
  }
  is.atomic(x) && (is.logical(x) || is.numeric(x) || is.character(x)) && is.null(dim(x))
}

check_chunk_size <- function(x, call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x < 1 || x != round(x)) {
    yws_abort("{.arg chunk_size} must be a whole number of rows, at least 1.",
              class = "yws_input_error", call = call)
  }
  x
}

# One JSON array body per row (without its brackets): each column becomes JSON literals,
# vectorised, then the columns are pasted side by side.
json_rows <- function(data) {
  if (!nrow(data)) return(character())
  if (!ncol(data)) return(rep("", nrow(data)))
  tokens <- lapply(data, json_values)
  do.call(paste, c(unname(tokens), sep = ","))
}

json_values <- function(x) {
  if (inherits(x, "POSIXt")) {
    x <- as.POSIXct(x)
    out <- json_string(format(x, "%Y-%m-%dT%H:%M:%OS6Z", tz = "UTC"))
  } else if (inherits(x, "Date")) {
    out <- json_string(format(x))
  } else if (is.factor(x) || is.character(x)) {
    out <- json_string(as.character(x))
  } else if (inherits(x, "integer64")) {
    out <- as.character(x)
  } else if (is.logical(x)) {
    out <- ifelse(x, "true", "false")
  } else if (is.integer(x)) {
    out <- as.character(x)
  } else {
    return(json_number(as.double(x)))
  }
  out[is.na(x)] <- "null"
  out
}

# Doubles exactly: the shortest of 15 or 17 significant digits that reads back as the same
# double. JSON has no NaN or infinity: they go as the strings the endpoint reads as such.
json_number <- function(x) {
  out <- sprintf("%.15g", x)
  finite <- is.finite(x)
  lossy <- which(finite)[as.double(out[finite]) != x[finite]]
  out[lossy] <- sprintf("%.17g", x[lossy])
  out[is.na(x)] <- "null"
  out[is.nan(x)] <- '"NaN"'
  out[!is.na(x) & x == Inf] <- '"Infinity"'
  out[!is.na(x) & x == -Inf] <- '"-Infinity"'
  out
}

# JSON string literals (RFC 8259: escape the quote, the backslash and control characters;
# everything else goes as UTF-8).
json_string <- function(x) {
  x <- enc2utf8(as.character(x))
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("\"", "\\\"", x, fixed = TRUE)
  control <- which(grepl("[\001-\037]", x, useBytes = TRUE))
  if (length(control)) {
    for (code in 1:31) {
      x[control] <- gsub(intToUtf8(code), sprintf("\\u%04x", code), x[control],
                         fixed = TRUE)
    }
  }
  out <- paste0("\"", x, "\"")
  out[is.na(x)] <- "null"
  out
}

# Row indices per request: at most `size` rows and `max_bytes` bytes of row JSON (a single
# larger row still goes, alone).
split_chunks <- function(bytes, size, max_bytes) {
  n <- length(bytes)
  chunks <- list()
  start <- 1
  while (start <= n) {
    end <- min(n, start + size - 1)
    total <- cumsum(bytes[start:end] + 3)  # "[", "]" and ","
    fits <- max(1, sum(total <= max_bytes))
    end <- start + fits - 1
    chunks[[length(chunks) + 1]] <- start:end
    start <- end + 1
  }
  chunks
}

# One invocation; the endpoint's refusals become what they mean for the caller. An endpoint
# scaled to zero answers 503 while it starts (minutes): an invocation is safe to repeat, so it
# is repeated until the call's deadline.
invoke <- function(req, endpoint, host, call = rlang::caller_env()) {
  refused <- function(e, class, head, hint = NULL) {
    yws_abort(c(head, x = "{server_message(e)}", i = hint),
              class = c(class, paste0("yws_http_", e$status), "yws_http"), status = e$status,
              error_code = e$error_code, endpoint = endpoint, call = call)
  }
  told <- FALSE
  repeat {
    answer <- tryCatch(
      perform_json(req, call = call, frames = TRUE),
      yws_http_503 = function(e) {
        if (time_left() <= starting_pause() + 1) {  # leave a try its time
          refused(e, NULL, "Endpoint {.val {endpoint}} is not ready ({e$error_code}).",
                  "It may be starting from zero: try again, or give a longer {.arg timeout}.")
        }
        e
      },
      yws_http_400 = function(e) {
        refused(e, "yws_input_error",
                "Endpoint {.val {endpoint}} refused the request ({e$error_code}).")
      },
      yws_http_403 = function(e) {
        refused(e, NULL, "This token may not query endpoint {.val {endpoint}} ({e$error_code}).",
                paste("Querying needs {.code CAN_QUERY} on the endpoint (the bundle grants it",
                      "to the R users' group)."))
      },
      yws_http_404 = function(e) {
        refused(e, NULL, paste("No serving endpoint {.val {endpoint}} on",
                               "{.val {yws_host(host)}} ({e$error_code})."),
                paste("List the endpoints with",
                      "{.code yws_perform(yws_request(\"/api/2.0/serving-endpoints\"))}."))
      })
    if (!inherits(answer, "yws_http_503")) return(answer)
    if (!told) {
      cli::cli_inform(c(i = paste("Endpoint {.val {endpoint}} is not ready (it may be starting",
                                  "from zero); waiting for it.")))
      told <- TRUE
    }
    Sys.sleep(starting_pause())
  }
}

starting_pause <- function() the$starting_pause %||% 5  # tests shorten it

server_message <- function(e) {
  e$server_message %||% "(no message)"
}

# The answer's predictions as typed columns, one per row sent: records (a data frame once
# parsed, what the YWS endpoint answers) or columns ({"probability": [...], ...}).
predictions_frame <- function(answer, n, endpoint, first = 1, reasons = FALSE,
                              call = rlang::caller_env()) {
  preds <- answer$predictions
  if (is.data.frame(preds)) {
    cols <- as.list(preds)
  } else if (is.list(preds) && !is.null(names(preds))) {
    cols <- lapply(preds, function(v) unlist(lapply(v, function(x) x %||% NA)))
  } else if (is.null(answer) || (is.list(preds) && !length(preds))) {
    cols <- list()
  } else {
    cols <- NULL
  }
  got <- if (length(cols)) max(lengths(cols)) else 0L
  if (is.null(cols) || got != n || any(lengths(cols) != n) ||
      (n > 0 && !"probability" %in% names(cols))) {
    yws_abort(c(paste("Endpoint {.val {endpoint}} did not answer one prediction with a",
                      "{.field probability} for each of rows {first} to {first + n - 1}."),
                i = "Is it serving the YWS model?"),
              class = "yws_response_error", endpoint = endpoint, call = call)
  }
  value <- function(name, convert) {
    v <- cols[[name]]
    convert(if (is.null(v)) rep(NA, n) else v)
  }
  out <- tibble::tibble(probability = value("probability", as.numeric),
                        prediction = value("prediction", as.integer),
                        band = factor(value("band", as.character), levels = contract$bands,
                                      ordered = TRUE),
                        error = value("error", as.character))
  if (reasons) {
    for (col in reason_outputs) {
      out[[col]] <- value(col, if (endsWith(col, "_contribution")) as.numeric else
        as.character)
    }
  }
  out
}

# Refused rows: a warning that counts them by reason, or an error.
report_rejected <- function(out, endpoint, on_error, call = rlang::caller_env()) {
  rows <- which(!is.na(out$error))
  if (!length(rows)) return(out)
  counts <- sort(table(out$error[rows]), decreasing = TRUE)
  reasons <- stats::setNames(as.integer(counts), names(counts))
  shown <- utils::head(reasons, 5)
  lines <- sprintf("%s: %d row%s", names(shown), shown, ifelse(shown == 1, "", "s"))
  more <- length(reasons) - length(shown)
  if (more > 0) lines <- c(lines, sprintf("... and %d other reason%s", more,
                                          if (more == 1) "" else "s"))
  # the endpoint's text, shown as it is (cli would interpolate braces)
  lines <- stats::setNames(gsub("([{}])", "\\1\\1", lines), rep("*", length(lines)))
  head <- paste("{length(rows)} of {nrow(out)} row{?s} {?was/were} refused by endpoint",
                "{.val {endpoint}} (not scored).")
  if (on_error == "abort") {
    yws_abort(c(head, lines, i = paste("Their row numbers are in the error's {.field rows};",
                                       "the rows, scored or not, in {.field data}.")),
              class = "yws_rejected_rows", rows = rows, reasons = reasons, data = out,
              endpoint = endpoint, call = call)
  }
  cli::cli_warn(c(head, lines, i = "Column {.field error} says why; {.field probability} is NA."),
                class = "yws_rejected_rows", rows = rows, reasons = reasons,
                endpoint = endpoint)
  out
}
