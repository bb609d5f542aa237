# The one error constructor: every error the package raises is made here, so every one is a
# cli-formatted rlang error whose classes end in "yws_error" (`tryCatch(..., yws_error = )`
# catches them all). `class` is the specific class, most specific first, e.g.
# `yws_abort(msg, class = c("yws_http_404", "yws_http"))` gives
# c("yws_http_404", "yws_http", "yws_error", "rlang_error", "error", "condition").
# `...` become fields of the condition (`status`, `error_code`, `run_id`, `parent`, ...).
# The classes are documented in ?yws (R/yws-package.R); keep that list in step.
yws_abort <- function(message, class = NULL, ..., call = .envir, .envir = parent.frame()) {
  cli::cli_abort(message, class = c(class, "yws_error"), ..., call = call, .envir = .envir)
}
