#' Where and as whom yws talks to Databricks
#'
#' Each setting is taken from the argument, then an R option, then an environment variable,
#' then (for host and token) the profile named by `DATABRICKS_CONFIG_PROFILE` (default
#' `DEFAULT`) in `~/.databrickscfg` (or the file named by `DATABRICKS_CONFIG_FILE`).
#'
#' | setting | option | variable | default |
#' |---|---|---|---|
#' | host | `yws.host` | `DATABRICKS_HOST` | profile |
#' | token | `yws.token` | `DATABRICKS_TOKEN` | profile |
#' | warehouse id | `yws.warehouse_id` | `YWS_WAREHOUSE_ID` | the only warehouse visible |
#' | catalog | `yws.catalog` | `YWS_CATALOG` | `yws_dev` (`""` in the option: the connection's default catalog, for ODBC) |
#' | schema | `yws.schema` | `YWS_SCHEMA` | `ml` |
#' | serving endpoint ([yws_predict()]) | `yws.serving_endpoint` | `YWS_SERVING_ENDPOINT` | `yws_lr` (the bundle's) |
#'
#' @param host Workspace URL, e.g. `https://adb-123.azuredatabricks.net`.
#' @param token A personal access token or service principal token.
#' @return The setting, as a string.
#' @examples
#' old <- options(yws.host = "http://127.0.0.1:8765/")
#' yws_host()
#' options(old)
#' @export
yws_host <- function(host = NULL) {
  host <- host %||% getOption("yws.host") %||% env_or_null("DATABRICKS_HOST") %||%
    profile_value("host")
  if (is.null(host)) {
    yws_abort(c("No Databricks host.",
                i = "Set {.envvar DATABRICKS_HOST}, a profile, or pass {.arg host}."),
              class = "yws_config_error")
  }
  if (!grepl("^https?://", host)) host <- paste0("https://", host)
  sub("/+$", "", host)
}

#' @rdname yws_host
#' @export
yws_token <- function(token = NULL) {
  token <- token %||% getOption("yws.token") %||% env_or_null("DATABRICKS_TOKEN") %||%
    profile_value("token")
  if (is.null(token)) {
    yws_abort(c("No Databricks token.",
                i = "Set {.envvar DATABRICKS_TOKEN}, a profile, or pass {.arg token}."),
              class = "yws_config_error")
  }
  token
}

#' @rdname yws_host
#' @export
yws_catalog <- function() {
  value <- getOption("yws.catalog") %||% env_or_null("YWS_CATALOG") %||% "yws_dev"
  check_identifier(if (identical(value, "")) "yws_dev" else value, "catalog")
}

#' @rdname yws_host
#' @export
yws_schema <- function() {
  check_identifier(getOption("yws.schema") %||% env_or_null("YWS_SCHEMA") %||% "ml", "schema")
}

#' @rdname yws_host
#' @param check Check that the warehouse exists (`GET /api/2.0/sql/warehouses/{id}`), so a
#'   wrong id is a `yws_config_error` before any work starts.
#' @export
yws_warehouse_id <- function(host = NULL, token = NULL, check = FALSE) {
  id <- getOption("yws.warehouse_id") %||% env_or_null("YWS_WAREHOUSE_ID")
  if (!is.null(id)) {
    if (!grepl("^[A-Za-z0-9_-]{1,64}$", id)) {
      yws_abort("Warehouse id {.val {id}} is not an id (letters, digits, '_', '-').",
                class = "yws_config_error")
    }
    if (check) check_warehouse(id, host = host, token = token)
    return(id)
  }
  ids <- visible_warehouses(host, token)
  if (length(ids) != 1) {
    yws_abort(c("Cannot pick a SQL warehouse: {length(ids)} are visible.",
                i = "Set {.envvar YWS_WAREHOUSE_ID} or option {.code yws.warehouse_id}."),
              class = "yws_config_error")
  }
  ids
}

visible_warehouses <- function(host = NULL, token = NULL) {
  found <- yws_perform(yws_request("/api/2.0/sql/warehouses", host = host, token = token))
  vapply(found$warehouses %||% list(), function(w) w$id, character(1))
}

check_warehouse <- function(id, host = NULL, token = NULL) {
  found <- tryCatch(
    yws_perform(yws_request(paste0("/api/2.0/sql/warehouses/", id), host = host,
                            token = token)),
    yws_http_404 = function(e) NULL)
  if (!is.null(found)) return(invisible(id))
  # 404: a wrong id, or a server without this route; the list tells which
  ids <- visible_warehouses(host, token)
  if (id %in% ids) return(invisible(id))
  yws_abort(c("SQL warehouse {.val {id}} does not exist on {.val {yws_host(host)}}.",
              i = if (length(ids)) "Visible warehouses: {.val {ids}}." else
                "No warehouse is visible to this token.",
              i = "Set {.envvar YWS_WAREHOUSE_ID} or option {.code yws.warehouse_id}."),
            class = "yws_config_error", warehouse_id = id)
}

env_or_null <- function(name) {
  value <- Sys.getenv(name, unset = "")
  if (identical(value, "")) NULL else value
}

profile_value <- function(key) {
  path <- env_or_null("DATABRICKS_CONFIG_FILE") %||% path.expand("~/.databrickscfg")
  if (!file.exists(path)) return(NULL)
  profile <- env_or_null("DATABRICKS_CONFIG_PROFILE") %||% "DEFAULT"
  lines <- trimws(readLines(path, warn = FALSE))
  section <- NA_character_
  for (line in lines) {
    if (grepl("^\\[.*\\]$", line)) {
      section <- sub("^\\[(.*)\\]$", "\\1", line)
    } else if (identical(section, profile) && grepl("=", line, fixed = TRUE)) {
      name <- trimws(sub("=.*$", "", line))
      if (identical(name, key)) return(trimws(sub("^[^=]*=", "", line)))
    }
  }
  NULL
}

check_alias <- function(x, what = "model_alias") {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !grepl(contract$alias_pattern, x) ||
      x %in% contract$reserved_aliases || grepl(contract$reserved_alias_pattern, x)) {
    yws_abort(paste("{what} {.val {x}} is not a usable model alias: letters, digits, {.code _}",
                    "or {.code -}, starting with a letter or {.code _}; {.val latest} and",
                    "{.code v<N>} are reserved."), class = "yws_input_error")
  }
  x
}

check_identifier <- function(x, what) {
  if (!is.character(x) || length(x) != 1 || !grepl(contract$identifier_pattern, x)) {
    yws_abort("{what} {.val {x}} is not a valid identifier (letters, digits, underscore).",
              class = "yws_input_error")
  }
  x
}
