#' Use the Python client from R
#'
#' `yws_py()` imports the `yws` Python package through reticulate (set `RETICULATE_PYTHON` to
#' the environment that has it). `yws_py_predictions()` reads predictions with the Python read
#' API on the local target and hands them across as plain lists (reticulate 1.28 cannot convert
#' NumPy 2 or pandas objects).
#'
#' @param as_of,batch_id,bands,view Filters passed to Python's `read_predictions()`, checked
#'   as [yws_predictions()] checks them.
#' @return `yws_py()`: the Python module `yws.scoring.results`. `yws_py_predictions()`: a data frame.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' yws_py_predictions(batch_id = "nightly-2026-11-30")
#' @export
yws_py <- function() {
  rlang::check_installed("reticulate")
  reticulate::import("yws.scoring.results", convert = FALSE)
}

#' @rdname yws_py
#' @export
yws_py_predictions <- function(as_of = NULL, batch_id = NULL, bands = NULL, view = "all") {
  filters <- prediction_filters(as_of, batch_id, bands)
  mod <- yws_py()
  config <- reticulate::import("yws.config", convert = FALSE)
  pa <- reticulate::import("pyarrow", convert = FALSE)
  pc <- reticulate::import("pyarrow.compute", convert = FALSE)
  args <- list(config$Settings$load(), as_of = filters$as_of, batch_id = filters$batch_id,
               view = view)
  # a Python list, never a str (a str would be iterated character by character)
  if (length(filters$bands)) args$bands <- reticulate::r_to_py(as.list(filters$bands))
  table <- do.call(mod$read_predictions, Filter(Negate(is.null), args))
  names <- reticulate::py_to_r(table$column_names)
  # Every column crosses as a plain list of strings (or None) and is typed again here from
  # its Arrow type, so the bridge agrees with the SQL path.
  out <- lapply(names, function(n) {
    column <- table$column(n)
    type <- reticulate::py_str(column$type)  # already an R string
    values <- reticulate::py_to_r(pc$cast(column, pa$string())$to_pylist())
    text <- vapply(values, function(x) if (is.null(x)) NA_character_ else x, character(1),
                   USE.NAMES = FALSE)
    arrow_to_r(text, type)
  })
  names(out) <- names
  prediction_types(tibble::as_tibble(out, .name_repair = "minimal"))
}

arrow_to_r <- function(text, type) {
  if (type == "bool") return(ifelse(is.na(text), NA, text == "true"))
  if (type %in% c("int8", "int16", "int32", "uint8", "uint16")) return(as.integer(text))
  if (type %in% c("int64", "uint32", "uint64", "float", "double", "halffloat") ||
      startsWith(type, "decimal")) return(as.numeric(text))
  if (startsWith(type, "date")) return(as.Date(text))
  if (startsWith(type, "timestamp")) return(parse_timestamp(text))
  text
}
