# The exact export of an R glm (issue 17): a binomial/logit glm with numeric, logical and
# factor main effects becomes a versioned, JSON-able description ("yws-r-glm/1") that
# python/yws/model/r_glm.py evaluates as predict(fit, newdata, type = "response") does.
# Anything the description cannot say exactly is refused with a yws_unsupported_model error;
# nothing is approximated. docs/r-models.md describes the format field by field.

yws_glm_format <- "yws-r-glm/1"

yws_glm_supported <- paste(
  "{.fn yws_export_glm} exports a {.fn glm} of family {.code binomial} with the {.code logit}",
  "link whose terms are main effects of numeric, logical or factor (or character) columns,",
  "named as they are in the data, with treatment contrasts and no aliased coefficients."
)

#' Export a logistic regression fitted with glm() for YWS
#'
#' Describes a fitted binomial [stats::glm()] exactly, as a versioned list that
#' [yws_glm_json()] writes as JSON (format `"yws-r-glm/1"`): the response, the formula, the
#' terms in order with their kind (and a factor's levels and contrasts), the coefficients by
#' model-matrix column in model-matrix order, the family and link, and the training
#' metadata. YWS scores the description in Python exactly as
#' `predict(fit, newdata, type = "response")` does (to rounding in the last bits of a
#' double); `docs/r-models.md` describes the format field by field.
#'
#' # What is supported
#'
#' A `glm` of family `binomial` with the `logit` link, an intercept or none, and main effects
#' of columns named as they are in the data (syntactic names, as the YWS features are):
#'
#' * numeric (double or integer) columns, one coefficient each;
#' * logical columns, the column `<name>TRUE` (`FALSE` is the baseline);
#' * factors, and character columns (which [stats::glm()] turns into factors with the levels
#'   it records in `fit$xlevels`, so they are exported as factors), with treatment contrasts
#'   ([stats::contr.treatment()], R's default): a column `<name><level>` per level but the
#'   first. In a model without an intercept, R gives the first factor or logical term a
#'   column for every level; the description says so (`baseline` is `NULL`).
#'
#' Prior weights are accepted: they change the fit, not how `predict()` turns the
#' coefficients into a probability. The description records whether there were any.
#'
#' # What is refused
#'
#' Everything else is a `yws_unsupported_model` error (also a `yws_error`) that says what is
#' supported: another class than `c("glm", "lm")`, family or link; interactions; a function
#' of a column in the formula (`I()`, `log()`, `poly()`, `ns()`, ...), including in the
#' response; an offset (in the formula or as the argument); ordered factors (R gives them
#' polynomial contrasts) and any contrasts other than `contr.treatment`; columns of other
#' types (dates, matrices); aliased (`NA`) coefficients; a term removed from the formula;
#' factor levels that are `NA`.
#'
#' @param fit A fitted [stats::glm()].
#' @param as_of The as-of date of the feature snapshot the model was trained on (a `Date` or
#'   `"YYYY-MM-DD"`), or `NULL`.
#' @param features_version The version of the features table the model was trained on (a
#'   Delta table version: a whole number, 0 or more), or `NULL`.
#' @return A list of class `yws_glm_export`: `format`, `response`, `formula`, `family`,
#'   `link`, `intercept`, `terms` (one list per term: `name`, `kind` and, for `logical` and
#'   `factor`, `contrasts` and `baseline`, for `factor` also `levels`), `coefficients` (one
#'   list per model-matrix column: `column`, `value`) and `training` (`r_version`, `nobs`,
#'   `prior_weights`, `converged`, `as_of`, `features_version`).
#' @seealso [yws_glm_json()] to write it as JSON.
#' @examples
#' set.seed(1)
#' n <- 500
#' d <- data.frame(
#'   tenure_months = rpois(n, 30),
#'   has_autopay = runif(n) < 0.5,
#'   region = factor(sample(c("north", "south", "east"), n, replace = TRUE))
#' )
#' d$defaulted_90d <- rbinom(n, 1, plogis(-0.5 - 0.02 * d$tenure_months - 0.8 * d$has_autopay))
#' fit <- glm(defaulted_90d ~ tenure_months + has_autopay + region, family = binomial,
#'            data = d)
#' x <- yws_export_glm(fit, as_of = "2026-08-31", features_version = 3)
#' x$coefficients[[1]]
#' cat(yws_glm_json(x, pretty = TRUE))
#' # an interaction is refused, never approximated
#' try(yws_export_glm(glm(defaulted_90d ~ tenure_months * has_autopay, binomial, d)))
#' @export
yws_export_glm <- function(fit, as_of = NULL, features_version = NULL) {
  glm_check_fit(fit)
  tt <- stats::terms(fit)
  labels <- attr(tt, "term.labels")
  glm_check_terms(tt, labels)
  classes <- attr(tt, "dataClasses")
  intercept <- identical(attr(tt, "intercept"), 1L)
  terms <- list()
  full_coding_left <- !intercept  # R codes the first categorical term in full then
  for (name in labels) {
    term <- glm_term(fit, name, classes[[name]], full = full_coding_left)
    if (!identical(term$kind, "numeric")) full_coding_left <- FALSE
    terms <- c(terms, list(term))
  }
  beta <- stats::coef(fit)
  glm_check_coefficients(beta, glm_columns(intercept, terms))
  structure(list(
    format = yws_glm_format,
    response = glm_response(tt),
    formula = paste(deparse(stats::formula(fit), width.cutoff = 500L), collapse = " "),
    family = "binomial",
    link = "logit",
    intercept = intercept,
    terms = terms,
    coefficients = unname(Map(function(column, value) list(column = column, value = value),
                              names(beta), unname(beta))),
    training = list(
      r_version = as.character(getRversion()),
      nobs = as.integer(stats::nobs(fit)),
      prior_weights = any(fit$prior.weights != 1),
      converged = isTRUE(fit$converged),
      as_of = glm_as_of(as_of),
      features_version = glm_features_version(features_version)
    )
  ), class = "yws_glm_export")
}

#' Write an exported glm as JSON
#'
#' The JSON text of a description made by [yws_export_glm()]: its fields in a fixed order,
#' doubles with 17 significant digits (so each reads back as the very same double, in R,
#' Python or anywhere else; `jsonlite::toJSON(digits = NA)` writes only 15), `NULL` as
#' `null`, and arrays where the format has arrays even when they hold one element. The same
#' model gives the same text.
#'
#' @param x A list made by [yws_export_glm()].
#' @param pretty Indent the text (`TRUE`) or write it on one line (`FALSE`).
#' @return The JSON text, a string of class `json`.
#' @examples
#' d <- data.frame(y = c(0, 1, 0, 1, 1, 0, 1, 0), x = c(1, 2, 3, 4, 5, 6.5, 2.5, 4.5))
#' cat(yws_glm_json(yws_export_glm(glm(y ~ x, binomial, d))))
#' @export
yws_glm_json <- function(x, pretty = FALSE) {
  if (!inherits(x, "yws_glm_export") || !identical(x$format, yws_glm_format)) {
    yws_abort("{.arg x} must be a description made by {.fn yws_export_glm}.",
              class = "yws_input_error")
  }
  exact <- function(v) structure(sprintf("%.17g", v), class = "json")
  terms <- lapply(x$terms, function(t) {
    if (!is.null(t$levels)) t$levels <- as.list(t$levels)
    if ("baseline" %in% names(t) && is.null(t$baseline)) t["baseline"] <- list(NULL)
    t
  })
  coefficients <- lapply(x$coefficients, function(b) list(column = b$column,
                                                          value = exact(b$value)))
  out <- unclass(x)
  out$terms <- terms
  out$coefficients <- coefficients
  jsonlite::toJSON(out, auto_unbox = TRUE, null = "null", na = "null", json_verbatim = TRUE,
                   pretty = pretty)
}

# -- the checks: each refusal says what is supported ---------------------------------------

glm_refuse <- function(problem, call = rlang::caller_env()) {
  yws_abort(c(problem, "i" = yws_glm_supported), class = "yws_unsupported_model",
            call = call, .envir = parent.frame())
}

glm_check_fit <- function(fit, call = rlang::caller_env()) {
  if (!identical(class(fit), c("glm", "lm"))) {
    what <- paste(class(fit), collapse = "/")
    glm_refuse("{.arg fit} is of class {.cls {what}}, not a plain {.cls glm}.", call = call)
  }
  family <- fit$family$family
  link <- fit$family$link
  if (!identical(family, "binomial") || !identical(link, "logit")) {
    glm_refuse("{.arg fit} has family {.code {family}} with the {.code {link}} link.",
               call = call)
  }
  if (!is.null(fit$offset)) {
    glm_refuse(paste("{.arg fit} has an offset (the {.arg offset} argument or",
                     "{.code offset()} in the formula)."), call = call)
  }
}

glm_check_terms <- function(tt, labels, call = rlang::caller_env()) {
  if (!is.null(attr(tt, "offset"))) {
    glm_refuse("The formula has an {.code offset()}.", call = call)
  }
  if (any(attr(tt, "order") > 1L)) {
    inter <- labels[attr(tt, "order") > 1L]
    glm_refuse("The formula has interaction{?s} {.code {inter}}.", call = call)
  }
  variables <- as.list(attr(tt, "variables"))[-1L]
  is_name <- vapply(variables, is.name, logical(1))
  texts <- vapply(variables, function(v) paste(deparse(v), collapse = " "), character(1))
  if (!all(is_name)) {
    calls <- texts[!is_name]
    glm_refuse("The formula applies a function to a column: {.code {calls}}.", call = call)
  }
  odd <- texts[make.names(texts) != texts]
  if (length(odd)) {
    glm_refuse("Column name{?s} {.val {odd}} {?is/are} not syntactic.", call = call)
  }
  if (!identical(attr(tt, "response"), 1L)) {
    glm_refuse("The formula has no response.", call = call)
  }
  unused <- setdiff(texts[-1L], labels)
  if (length(unused)) {
    glm_refuse("The formula names {.code {unused}} but has no term for {?it/them}.",
               call = call)
  }
}

glm_term <- function(fit, name, class, full, call = rlang::caller_env()) {
  if (identical(class, "numeric")) {
    return(list(name = name, kind = "numeric"))
  }
  if (identical(class, "ordered")) {
    glm_refuse(c("{.field {name}} is an ordered factor (R gives it polynomial contrasts).",
                 "i" = "Fit on {.code factor({name}, ordered = FALSE)}."), call = call)
  }
  if (!class %in% c("logical", "factor", "character")) {
    class <- if (is.null(fit$model[[name]])) class else class(fit$model[[name]])
    glm_refuse("{.field {name}} is a column of class {.cls {class}}.", call = call)
  }
  contrasts <- fit$contrasts[[name]]
  if (!identical(contrasts, "contr.treatment")) {
    glm_refuse(c("{.field {name}} has contrasts other than {.code contr.treatment}.",
                 "i" = "Fit with the default contrasts."), call = call)
  }
  if (identical(class, "logical")) {
    return(list(name = name, kind = "logical", contrasts = contrasts,
                baseline = if (full) NULL else "FALSE"))
  }
  levels <- fit$xlevels[[name]]
  if (anyNA(levels)) {
    glm_refuse(c("{.field {name}} has {.code NA} as a level ({.fn addNA}).",
                 "i" = "A missing value is refused when scoring, never a level."), call = call)
  }
  if (!is.character(levels) || length(levels) < 2L || anyDuplicated(levels)) {
    glm_refuse("{.field {name}} has no usable levels in {.code fit$xlevels}.", call = call)
  }
  list(name = name, kind = "factor", levels = levels, contrasts = contrasts,
       baseline = if (full) NULL else levels[[1L]])
}

# The model-matrix columns the description implies, as R names them.
glm_columns <- function(intercept, terms) {
  columns <- if (intercept) "(Intercept)" else character()
  for (t in terms) {
    levels <- switch(t$kind, numeric = NULL, logical = c("FALSE", "TRUE"), factor = t$levels)
    columns <- c(columns, if (is.null(levels)) t$name else
      paste0(t$name, if (is.null(t$baseline)) levels else setdiff(levels, t$baseline)))
  }
  columns
}

glm_check_coefficients <- function(beta, columns, call = rlang::caller_env()) {
  aliased <- names(beta)[is.na(beta)]
  if (length(aliased)) {
    glm_refuse(c("Coefficient{?s} {.code {aliased}} {?is/are} aliased ({.code NA}).",
                 "i" = "Drop the columns that other columns (or the intercept) determine."),
               call = call)
  }
  if (!all(is.finite(beta))) {
    glm_refuse("A coefficient is not finite.", call = call)
  }
  if (!identical(names(beta), columns)) {
    got <- names(beta)
    glm_refuse(c("The model matrix's columns are not those of the terms' main effects.",
                 "i" = "Expected {.code {columns}}; the fit has {.code {got}}."), call = call)
  }
}

glm_response <- function(tt) {
  as.character(as.list(attr(tt, "variables"))[[attr(tt, "response") + 1L]])
}

glm_as_of <- function(as_of, call = rlang::caller_env()) {
  if (is.null(as_of)) return(NULL)
  day <- if (inherits(as_of, "Date") && length(as_of) == 1L) as_of else
    if (is.character(as_of) && length(as_of) == 1L &&
        grepl("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", as_of))
      as.Date(as_of, format = "%Y-%m-%d", optional = TRUE) else NA
  if (length(day) != 1L || is.na(day)) {
    yws_abort("{.arg as_of} must be one date, a {.cls Date} or {.val YYYY-MM-DD}.",
              class = "yws_input_error", call = call)
  }
  format(day, "%Y-%m-%d")
}

glm_features_version <- function(version, call = rlang::caller_env()) {
  if (is.null(version)) return(NULL)
  if (!is.numeric(version) || length(version) != 1L || is.na(version) || version < 0 ||
      version != round(version) || version > .Machine$integer.max) {
    yws_abort("{.arg features_version} must be a table version: a whole number, 0 or more.",
              class = "yws_input_error", call = call)
  }
  as.integer(version)
}
