# yws_export_glm() and yws_glm_json() (issue 17): the exact description of a binomial/logit
# glm, and the classed refusal of everything it cannot describe exactly.

# Training rows shaped like the YWS features: numeric, logical, factor (and a character
# column, which glm() turns into a factor with the levels it records in xlevels).
glm_rows <- function(n = 400, seed = 17) {
  withr::with_seed(seed, {
    d <- data.frame(
      tenure_months = round(rexp(n, 1 / 40) + 1),
      balance_utilization = round(rbeta(n, 2, 5), 4),
      has_autopay = runif(n) < 0.55,
      region = factor(sample(c("north", "south", "east", "west"), n, TRUE)),
      channel = sample(c("web", "branch", "phone"), n, TRUE),
      stringsAsFactors = FALSE
    )
    eta <- -1 - 0.01 * d$tenure_months + 2.5 * d$balance_utilization - 0.6 * d$has_autopay +
      0.3 * (d$region == "west")
    d$defaulted_90d <- as.integer(runif(n) < stats::plogis(eta))
    d
  })
}

glm_fit <- function(formula = defaulted_90d ~ tenure_months + balance_utilization +
                      has_autopay + region + channel, data = glm_rows(), ...) {
  stats::glm(formula, family = stats::binomial, data = data, ...)
}

# predict(type = "response") recomputed from a description read back from its JSON (lists, as
# jsonlite::fromJSON(simplifyVector = FALSE) gives them): the design row from the terms, then
# the coefficients in their order.
glm_predict_from <- function(desc, newdata) {
  x <- if (isTRUE(desc$intercept)) list(`(Intercept)` = rep(1, nrow(newdata))) else list()
  for (t in desc$terms) {
    v <- newdata[[t$name]]
    if (t$kind == "numeric") {
      x[[t$name]] <- as.numeric(v)
    } else {
      levels <- if (t$kind == "logical") c("FALSE", "TRUE") else unlist(t$levels)
      coded <- if (is.null(t$baseline)) levels else setdiff(levels, t$baseline)
      for (level in coded) x[[paste0(t$name, level)]] <- as.numeric(as.character(v) == level)
    }
  }
  columns <- vapply(desc$coefficients, function(b) b$column, "")
  beta <- vapply(desc$coefficients, function(b) b$value, 0)
  expect_identical(names(x), columns)
  stats::binomial()$linkinv(drop(do.call(cbind, x) %*% beta))
}

test_that("a numeric + logical + factor model round-trips through JSON exactly", {
  fit <- glm_fit()
  desc <- yws_export_glm(fit, as_of = as.Date("2026-08-31"), features_version = 12)
  expect_s3_class(desc, "yws_glm_export")
  back <- jsonlite::fromJSON(yws_glm_json(desc), simplifyVector = FALSE)

  expect_identical(back$format, "yws-r-glm/1")
  expect_identical(back$response, "defaulted_90d")
  expect_identical(back$formula, paste("defaulted_90d ~ tenure_months + balance_utilization +",
                                       "has_autopay + region + channel"))
  expect_identical(c(back$family, back$link), c("binomial", "logit"))
  expect_true(back$intercept)
  expect_identical(vapply(back$terms, function(t) t$kind, ""),
                   c("numeric", "numeric", "logical", "factor", "factor"))
  expect_identical(back$terms[[3]], list(name = "has_autopay", kind = "logical",
                                         contrasts = "contr.treatment", baseline = "FALSE"))
  expect_identical(back$terms[[4]], list(name = "region", kind = "factor",
                                         levels = as.list(fit$xlevels$region),
                                         contrasts = "contr.treatment", baseline = "east"))
  expect_identical(unlist(back$terms[[5]]$levels), c("branch", "phone", "web"))  # character
  # every coefficient, by model-matrix column, to the last bit
  expect_identical(vapply(back$coefficients, function(b) b$column, ""), names(coef(fit)))
  expect_identical(vapply(back$coefficients, function(b) b$value, 0), unname(coef(fit)))
  expect_identical(back$training, list(r_version = as.character(getRversion()), nobs = 400L,
                                       prior_weights = FALSE, converged = TRUE,
                                       as_of = "2026-08-31", features_version = 12L))

  newdata <- glm_rows(50, seed = 3)
  expect_equal(glm_predict_from(back, newdata),
               unname(predict(fit, newdata, type = "response")), tolerance = 1e-14)
})

test_that("without an intercept, the first categorical term has a column per level", {
  fit <- glm_fit(defaulted_90d ~ 0 + tenure_months + has_autopay + region)
  desc <- yws_export_glm(fit)
  expect_false(desc$intercept)
  expect_null(desc$terms[[2]]$baseline)
  expect_identical(desc$terms[[3]]$baseline, "east")
  back <- jsonlite::fromJSON(yws_glm_json(desc), simplifyVector = FALSE)
  expect_true("baseline" %in% names(back$terms[[2]]))  # written as null, not left out
  expect_identical(vapply(back$coefficients, function(b) b$column, "")[1:3],
                   c("tenure_months", "has_autopayFALSE", "has_autopayTRUE"))
  newdata <- glm_rows(30, seed = 4)
  expect_equal(glm_predict_from(back, newdata),
               unname(predict(fit, newdata, type = "response")), tolerance = 1e-14)
  expect_null(back$training$as_of)
  expect_null(back$training$features_version)
})

test_that("prior weights are accepted and recorded", {
  rows <- glm_rows()
  rows$w <- rep(c(1, 2), 200)
  desc <- yws_export_glm(stats::glm(defaulted_90d ~ tenure_months, stats::binomial, rows,
                                    weights = w))
  expect_true(desc$training$prior_weights)
  expect_identical(desc$training$nobs, 400L)
})

test_that("the JSON is stable: fixed field order, 17 significant digits, same model same text", {
  rows <- glm_rows(60)
  fit <- glm_fit(defaulted_90d ~ tenure_months + has_autopay + region, data = rows)
  # coefficients whose shortest decimal forms need 15, 16 and 17 digits
  fit$coefficients[] <- c(1 / 3, 0.1, -2.5e-17, 2, 6666666666.6666670, -0.3)
  json <- yws_glm_json(yws_export_glm(fit, as_of = "2026-08-31", features_version = 0))
  expect_s3_class(json, "json")
  expected <- paste0(
    '{"format":"yws-r-glm/1","response":"defaulted_90d",',
    '"formula":"defaulted_90d ~ tenure_months + has_autopay + region",',
    '"family":"binomial","link":"logit","intercept":true,"terms":[',
    '{"name":"tenure_months","kind":"numeric"},',
    '{"name":"has_autopay","kind":"logical","contrasts":"contr.treatment","baseline":"FALSE"},',
    '{"name":"region","kind":"factor","levels":["east","north","south","west"],',
    '"contrasts":"contr.treatment","baseline":"east"}],"coefficients":[',
    '{"column":"(Intercept)","value":0.33333333333333331},',
    '{"column":"tenure_months","value":0.10000000000000001},',
    '{"column":"has_autopayTRUE","value":-2.4999999999999999e-17},',
    '{"column":"regionnorth","value":2},',
    '{"column":"regionsouth","value":6666666666.666667},',
    '{"column":"regionwest","value":-0.29999999999999999}],',
    '"training":{"r_version":"', getRversion(), '","nobs":60,"prior_weights":false,',
    '"converged":true,"as_of":"2026-08-31","features_version":0}}')
  expect_identical(as.character(json), expected)
  expect_identical(yws_glm_json(yws_export_glm(fit, as_of = "2026-08-31",
                                               features_version = 0)), json)
  back <- jsonlite::fromJSON(json, simplifyVector = FALSE)
  expect_identical(vapply(back$coefficients, function(b) b$value, 0), unname(coef(fit)))
  # pretty is the same JSON, indented
  pretty <- yws_glm_json(yws_export_glm(fit, as_of = "2026-08-31", features_version = 0),
                         pretty = TRUE)
  expect_identical(jsonlite::fromJSON(pretty, simplifyVector = FALSE), back)
})

test_that("every model it cannot describe exactly is refused with yws_unsupported_model", {
  rows <- glm_rows()
  rows$tier <- factor(sample(c("bronze", "silver", "gold"), nrow(rows), TRUE),
                      levels = c("bronze", "silver", "gold"), ordered = TRUE)
  rows$balance_twice <- 2 * rows$balance_utilization
  rows$opened <- as.Date("2020-01-01") + seq_len(nrow(rows))
  rows$region_na <- addNA(replace(rows$region, 1:40, NA))
  rows$`tenure months` <- rows$tenure_months
  refused <- list(
    interaction = glm_fit(defaulted_90d ~ tenure_months * has_autopay, data = rows),
    interaction_only = glm_fit(defaulted_90d ~ tenure_months:region, data = rows),
    I = glm_fit(defaulted_90d ~ I(tenure_months^2), data = rows),
    log = glm_fit(defaulted_90d ~ log(tenure_months), data = rows),
    poly = glm_fit(defaulted_90d ~ poly(tenure_months, 2), data = rows),
    spline = glm_fit(defaulted_90d ~ splines::ns(balance_utilization, 3), data = rows),
    response_call = glm_fit(defaulted_90d == 1 ~ tenure_months, data = rows),
    offset_formula = glm_fit(defaulted_90d ~ tenure_months + offset(balance_utilization),
                             data = rows),
    offset_argument = stats::glm(defaulted_90d ~ tenure_months, stats::binomial, rows,
                                 offset = balance_utilization),
    probit = stats::glm(defaulted_90d ~ tenure_months, stats::binomial("probit"), rows),
    quasibinomial = stats::glm(defaulted_90d ~ tenure_months, stats::quasibinomial, rows),
    poisson = stats::glm(defaulted_90d ~ tenure_months, stats::poisson, rows),
    lm = stats::lm(defaulted_90d ~ tenure_months, rows),
    ordered = glm_fit(defaulted_90d ~ tier, data = rows),
    contr_sum = stats::glm(defaulted_90d ~ region, stats::binomial, rows,
                           contrasts = list(region = "contr.sum")),
    aliased = glm_fit(defaulted_90d ~ balance_utilization + balance_twice, data = rows),
    date = suppressWarnings(glm_fit(defaulted_90d ~ opened, data = rows)),  # 0/1 fits
    removed_term = glm_fit(defaulted_90d ~ tenure_months + region - region, data = rows),
    na_level = glm_fit(defaulted_90d ~ region_na, data = rows),
    non_syntactic = glm_fit(defaulted_90d ~ `tenure months`, data = rows)
  )
  for (case in names(refused)) {
    err <- expect_error(yws_export_glm(refused[[case]]), class = "yws_unsupported_model",
                        label = case)
    expect_s3_class(err, "yws_error")
    # the message says what went wrong and what is supported
    expect_match(conditionMessage(err), "binomial.*logit.*main effects", label = case)
  }
  expect_match(conditionMessage(expect_error(yws_export_glm(refused$interaction))),
               "tenure_months:has_autopay", fixed = TRUE)
  expect_match(conditionMessage(expect_error(yws_export_glm(refused$aliased))),
               "balance_twice", fixed = TRUE)
  expect_match(conditionMessage(expect_error(yws_export_glm(refused$ordered))),
               "ordered factor", fixed = TRUE)
  expect_match(conditionMessage(expect_error(yws_export_glm(refused$na_level))),
               "`NA` as a level", fixed = TRUE)
  expect_error(yws_export_glm("not a model"), class = "yws_unsupported_model")
})

test_that("bad training metadata and a non-description are yws_input_error", {
  fit <- glm_fit(defaulted_90d ~ tenure_months)
  for (as_of in list("2026-13-01", "31/08/2026", c("2026-08-31", "2026-09-30"), 20260831,
                     as.Date(NA))) {
    expect_error(yws_export_glm(fit, as_of = as_of), class = "yws_input_error")
  }
  for (version in list(-1, 1.5, "3", NA_real_, c(1, 2))) {
    expect_error(yws_export_glm(fit, features_version = version), class = "yws_input_error")
  }
  expect_error(yws_glm_json(list(format = "yws-r-glm/1")), class = "yws_input_error")
})
