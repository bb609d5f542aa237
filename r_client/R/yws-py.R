#' Use the Python client from R
#'
#' `yws_py()` imports the `yws` Python package through reticulate (set `RETICULATE_PYTHON` to
#' the environment that has it). `yws_py_predictions()` reads predictions with the Python read
#' API on the local target and hands them across as plain lists (reticulate 1.28 cannot convert
#' NumPy 2 or pandas objects).
#'
#' @param ... Filters passed to Python's `read_predictions()`: `as_of`, `batch_id`, `bands`,
#'   `view`.
#' @return `yws_py()`: the Python module `yws.predictions`. `yws_py_predictions()`: a data frame.
#' @examples
#' \dontrun{
#' yws_py_predictions(batch_id = "nightly-2026-11-30")
#' }
#' @export
yws_py <- function() {
  rlang::check_installed("reticulate")
  reticulate::import("yws.predictions", convert = FALSE)
}

#' @rdname yws_py
#' @export
yws_py_predictions <- function(...) {
  mod <- yws_py()
  config <- reticulate::import("yws.config", convert = FALSE)
  pa <- reticulate::import("pyarrow", convert = FALSE)
  pc <- reticulate::import("pyarrow.compute", convert = FALSE)
  table <- mod$read_predictions(config$Settings$load(), ...)
  names <- reticulate::py_to_r(table$column_names)
  # Every column crosses as a plain list of strings (or None), typed again on the R side.
  out <- lapply(names, function(n) {
    values <- reticulate::py_to_r(pc$cast(table$column(n), pa$string())$to_pylist())
    vapply(values, function(x) if (is.null(x)) NA_character_ else x, character(1))
  })
  names(out) <- names
  typed_predictions(as.data.frame(out, stringsAsFactors = FALSE, optional = TRUE))
}
