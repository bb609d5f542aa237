#' Build and perform a request to the Databricks REST API
#'
#' `yws_request()` sets the user agent and bearer authentication. `yws_perform()` runs it with
#' an HTTP timeout and turns every failure into a classed condition:
#'
#' * an error answer: `yws_http_<status>` (e.g. `yws_http_404`), then `yws_http`, then
#'   `yws_error`, with Databricks' message and the fields `status` and `error_code`;
#' * a refused or unresolvable connection: `yws_connection_error`, at once, naming the host
#'   (a server that is not there does not become one by waiting);
#' * no answer within the timeout: `yws_http_timeout` (also a `yws_timeout`).
#'
#' All the package's error classes are listed in [yws-package].
#'
#' Only `429 Too Many Requests` and `503 Service Unavailable` are retried (up to 4 tries,
#' honouring `Retry-After`). Each request waits at most `getOption("yws.http_timeout", 60)`
#' seconds, and never beyond the deadline of the call it belongs to (for example
#' `yws_score(timeout = )`).
#'
#' @param path API path, e.g. `/api/2.2/jobs/list`.
#' @param query A named list of query parameters.
#' @param body A list sent as the JSON body (the request becomes a POST).
#' @inheritParams yws_host
#' @param req A request from `yws_request()`.
#' @param call The caller's environment, for error messages.
#' @return `yws_request()`: an httr2 request. `yws_perform()`: the parsed JSON answer.
#' @examples
#' req <- yws_request("/api/2.2/jobs/list", query = list(name = "yws_score"),
#'                    host = "http://127.0.0.1:8765", token = "dapi-example")
#' req$url
#' @export
yws_request <- function(path, query = list(), body = NULL, host = NULL, token = NULL) {
  req <- httr2::request(paste0(yws_host(host), path))
  req <- httr2::req_user_agent(req, paste0("yws-r/", utils::packageVersion("yws")))
  req <- httr2::req_auth_bearer_token(req, yws_token(token))
  query <- Filter(Negate(is.null), query)
  if (length(query)) req <- do.call(httr2::req_url_query, c(list(req), query))
  if (!is.null(body)) req <- httr2::req_body_json(req, body, auto_unbox = TRUE, null = "null")
  # one try inside httr2, and no back-off after a failed one (httr2 0.2.2 would sleep 1-2 s,
  # drawn with runif(), i.e. from the caller's random number stream): yws_perform() retries
  req <- httr2::req_retry(req, max_tries = 1, backoff = function(i) 0)
  httr2::req_error(req, is_error = function(resp) FALSE)
}

#' @rdname yws_request
#' @export
yws_perform <- function(req, call = rlang::caller_env()) {
  perform_json(req, call = call)
}

# `rows = TRUE`: a statement result, whose `data_array` becomes a character matrix in
# jsonlite's C parser (5x faster than lists of lists at 50,000 rows). `frames = TRUE`: arrays
# of objects become data frames (a serving endpoint's predictions).
perform_json <- function(req, call = rlang::caller_env(), rows = FALSE, frames = FALSE) {
  force(req)  # settings errors (no host, no token) surface as themselves, here
  max_tries <- 4
  for (try in seq_len(max_tries)) {
    resp <- perform_once(req, call)
    status <- httr2::resp_status(resp)
    if (!status %in% c(429, 503) || try == max_tries) break
    pause <- retry_pause(resp, try)
    if (pause >= time_left()) break
    Sys.sleep(pause)
  }
  body <- tryCatch(
    if (rows) {
      jsonlite::fromJSON(httr2::resp_body_string(resp), simplifyVector = TRUE,
                         simplifyDataFrame = FALSE, simplifyMatrix = TRUE)
    } else if (frames) {
      jsonlite::fromJSON(httr2::resp_body_string(resp), simplifyVector = TRUE,
                         simplifyDataFrame = TRUE, simplifyMatrix = FALSE)
    } else {
      httr2::resp_body_json(resp)
    },
    error = function(e) list())
  if (status >= 400) {
    code <- body$error_code %||% "UNKNOWN"
    message <- body$message %||% httr2::resp_status_desc(resp)
    yws_abort(c("Databricks answered {status} {code}.", x = "{message}"),
              class = c(paste0("yws_http_", status), "yws_http"), status = status,
              error_code = code, server_message = message, call = call)
  }
  body
}

# One try: no retries inside httr2 (it would retry a refused connection for ~25 s).
perform_once <- function(req, call) {
  left <- time_left()
  if (left <= 0) abort_deadline(call)
  seconds <- min(http_timeout(), left)
  started <- Sys.time()
  resp <- tryCatch(httr2::req_perform(httr2::req_timeout(req, max(seconds, 0.001))),
                   httr2_failed = function(e) e)
  if (!inherits(resp, "httr2_failed")) return(resp)
  reason <- conditionMessage(resp)
  host <- url_host(req$url)
  if (grepl("aborted by an application callback", reason, fixed = TRUE)) {
    rlang::interrupt()  # curl stopped the transfer because the user pressed Ctrl-C
  }
  if (grepl("Timeout was reached|timed out", reason, ignore.case = TRUE)) {
    waited <- round(as.numeric(difftime(Sys.time(), started, units = "secs")), 1)
    yws_abort(c("{.val {host}} did not answer within {waited} s.",
                i = "Request: {.url {req$url}}.",
                i = paste("Each request waits at most {.code getOption(\"yws.http_timeout\",",
                          "60)} seconds, and never beyond the call's {.arg timeout}.")),
              class = c("yws_http_timeout", "yws_timeout"), host = host, call = call)
  }
  yws_abort(c("Cannot reach {.val {host}}.", x = reason,
              i = "Check {.envvar DATABRICKS_HOST} and that the server is running."),
            class = "yws_connection_error", host = host, call = call)
}

retry_pause <- function(resp, try) {
  after <- suppressWarnings(as.numeric(httr2::resp_header(resp, "Retry-After") %||% NA))
  if (is.na(after)) after <- min(2^(try - 1), 30)
  max(after, 0)
}

url_host <- function(url) sub("^(https?://[^/?#]+).*$", "\\1", url)

http_timeout <- function() {
  value <- getOption("yws.http_timeout", 60)
  if (!is.numeric(value) || length(value) != 1 || is.na(value) || value <= 0) {
    yws_abort("Option {.code yws.http_timeout} must be a positive number of seconds.",
              class = "yws_config_error")
  }
  value
}

# The deadline of the outermost call that set one (yws_score(timeout =), yws_sql(timeout =)):
# every request and every wait below it stops there.
the <- new.env(parent = emptyenv())

local_deadline <- function(seconds, env = parent.frame()) {
  old <- the$deadline
  new <- Sys.time() + seconds
  the$deadline <- if (is.null(old)) new else min(old, new)
  withr_defer(the$deadline <- old, env)
  invisible(the$deadline)
}

time_left <- function() {
  if (is.null(the$deadline)) return(Inf)
  as.numeric(difftime(the$deadline, Sys.time(), units = "secs"))
}

abort_deadline <- function(call = rlang::caller_env(), message = NULL) {
  yws_abort(message %||% "The call did not finish within its {.arg timeout}.",
            class = "yws_timeout", call = call)
}

# on.exit() in another frame, without a hard dependency on withr.
withr_defer <- function(expr, env) {
  thunk <- as.call(list(function() expr))
  do.call(base::on.exit, list(thunk, TRUE, FALSE), envir = env)
}
