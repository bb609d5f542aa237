#' yws: trigger YWS scoring and read its predictions from R
#'
#' One call, [yws_score()], starts the scoring job and returns the predictions. The package is
#' thin: the Databricks jobs and the SQL views do the work. Settings come from the standard
#' `DATABRICKS_HOST` / `DATABRICKS_TOKEN` variables (or a `~/.databrickscfg` profile) and can be
#' overridden per call.
#'
#' @keywords internal
#' @importFrom rlang %||%
"_PACKAGE"
