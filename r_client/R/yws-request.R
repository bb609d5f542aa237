#' Build and perform a request to the Databricks REST API
#'
#' `yws_request()` sets the user agent, bearer authentication and retries (429 and 503 are
#' retried, honouring `Retry-After`). `yws_perform()` runs it and turns an error answer into a
#' classed condition: `yws_http_<status>` and `yws_error`, with Databricks' `error_code` and
#' `message`.
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
  req <- httr2::req_retry(req, max_tries = 4,
                          is_transient = function(resp) httr2::resp_status(resp) %in% c(429, 503))
  httr2::req_error(req, is_error = function(resp) FALSE)
}

#' @rdname yws_request
#' @export
yws_perform <- function(req, call = rlang::caller_env()) {
  resp <- tryCatch(httr2::req_perform(req), error = function(e) {
    cli::cli_abort(c("Cannot reach {.url {req$url}}.", x = conditionMessage(e)),
                   class = c("yws_connection_error", "yws_error"), call = call)
  })
  status <- httr2::resp_status(resp)
  body <- tryCatch(httr2::resp_body_json(resp), error = function(e) list())
  if (status >= 400) {
    code <- body$error_code %||% "UNKNOWN"
    message <- body$message %||% httr2::resp_status_desc(resp)
    cli::cli_abort(c("Databricks answered {status} {code}.", x = "{message}"),
                   class = c(paste0("yws_http_", status), "yws_error"),
                   status = status, error_code = code, call = call)
  }
  body
}
