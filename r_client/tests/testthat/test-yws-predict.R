# yws_predict() against a fake Model Serving endpoint. The request and answer follow
# Databricks' documented query contract, which `yws serve` answers too:
#   POST /serving-endpoints/{name}/invocations with {"dataframe_split": {"columns": [...],
#   "data": [[...], ...]}} (or "dataframe_records"), answered {"predictions": [...]}, one per
#   row in order; errors as {"error_code": ..., "message": ...}.
#   https://docs.databricks.com/en/machine-learning/model-serving/score-model-serving-endpoints.html
#   https://docs.databricks.com/api/model-serving-query/v1/query.md
# Per row the YWS endpoint answers {"probability", "prediction", "band", "error"}; a refused
# row has nulls and an `error` (python/yws/scoring/records.py).

# A stand-in for the YWS model: one numeric feature, tenure_months, refused when it is not a
# finite number; every request's raw body is kept in order.
serving_routes <- function(endpoint = "yws-champion", answer = NULL) {
  list(route("post", "/serving-endpoints/:name/invocations", function(req, res) {
    bodies <- req$app$locals$bodies
    req$app$locals$bodies <- c(bodies, rawToChar(req$.body))
    fail <- function(status, code, message) {
      res$set_status(status)$send_json(list(error_code = code, message = message),
                                       auto_unbox = TRUE)
    }
    if (req$get_header("Authorization") == "Bearer dapi-no-query") {
      return(fail(403, "PERMISSION_DENIED",
                  "yws_analysts_only does not have CAN_QUERY on serving endpoint yws-champion"))
    }
    if (req$params$name != endpoint) {
      return(fail(404, "RESOURCE_DOES_NOT_EXIST",
                  paste0("Endpoint with name '", req$params$name, "' does not exist.")))
    }
    split <- req$json$dataframe_split
    at <- match("tenure_months", unlist(split$columns))
    if (is.na(at)) {
      return(fail(400, "BAD_REQUEST", paste(
        "the rows have no column tenure_months: send every feature the model reads",
        "(tenure_months); a missing value is null")))
    }
    preds <- lapply(split$data, function(row) {
      v <- row[[at]]
      why <- if (is.null(v)) "tenure_months is null"
        else if (is.character(v) && v %in% c("NaN", "Infinity", "-Infinity")) "tenure_months is infinite"
        else if (!is.numeric(v)) paste0("tenure_months: '", v, "' is not a number")
      if (!is.null(why)) return(list(probability = NULL, prediction = NULL, band = NULL,
                                     error = why))
      p <- v / 100
      list(probability = p, prediction = as.integer(p >= 0.5),
           band = if (p >= 0.4) "RED" else if (p >= 0.15) "YELLOW" else "GREEN", error = NULL)
    })
    if (isTRUE(req$json$params$reasons)) {  # the model's one param (its signature says so)
      preds <- lapply(preds, function(p) {
        why <- if (is.null(p$error)) "tenure_months" else NULL
        c(p, list(reason_1 = why, reason_1_contribution = if (!is.null(why)) p$probability,
                  reason_2 = NULL, reason_2_contribution = NULL, reason_3 = NULL,
                  reason_3_contribution = NULL))
      })
    }
    if (!is.null(answer)) preds <- answer(preds)
    res$send_json(list(predictions = preds), auto_unbox = TRUE, null = "null", digits = NA)
  }),
  route("get", "/bodies", function(req, res) {
    bodies <- req$app$locals$bodies
    res$send_json(list(bodies = as.list(if (is.null(bodies)) character() else bodies)),
                  auto_unbox = TRUE)
  }))
}

sent_bodies <- function(fake) {
  unlist(yws_perform(yws_request("/bodies", host = fake$url, token = "t"))$bodies)
}

invocations <- function(fake) {
  Filter(function(r) grepl("/invocations$", r$path), requests(fake))
}

test_that("the request is the documented split orientation, value by value", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- tibble::tibble(
    customer_id = c("C1", "C\"2", NA, "C4", "C5", "C6"),
    tenure_months = c(12, NA, NaN, Inf, -Inf, 0.1 + 0.2),
    late_payments_12m = c(1L, NA, 0L, 2L, 3L, 4L),
    has_autopay = c(TRUE, NA, FALSE, TRUE, FALSE, TRUE),
    region = factor(c("north", NA, "south", "north", "east", "south")),
    as_of_date = as.Date(c("2026-11-30", NA, "2026-11-30", "2026-11-30", "2026-11-30",
                           "2026-11-30")),
    seen_at = as.POSIXct("2026-11-30 08:30:00.25", tz = "UTC") + c(0, NA, 0, 0, 0, 0))
  out <- suppressWarnings(yws_predict(newdata, endpoint = "yws-champion"))
  expect_identical(sent_bodies(fake), paste0(
    '{"dataframe_split":{"columns":["customer_id","tenure_months","late_payments_12m",',
    '"has_autopay","region","as_of_date","seen_at"],"data":[',
    '["C1",12,1,true,"north","2026-11-30","2026-11-30T08:30:00.250000Z"],',
    '["C\\"2",null,null,null,null,null,null],',
    '[null,"NaN",0,false,"south","2026-11-30","2026-11-30T08:30:00.250000Z"],',
    '["C4","Infinity",2,true,"north","2026-11-30","2026-11-30T08:30:00.250000Z"],',
    '["C5","-Infinity",3,false,"east","2026-11-30","2026-11-30T08:30:00.250000Z"],',
    '["C6",0.30000000000000004,4,true,"south","2026-11-30","2026-11-30T08:30:00.250000Z"]',
    ']}}'))
  sent <- invocations(fake)
  expect_length(sent, 1)
  expect_equal(toupper(sent[[1]]$method), "POST")
  expect_equal(sent[[1]]$path, "/serving-endpoints/yws-champion/invocations")
  expect_equal(sent[[1]]$auth, "Bearer dapi-r-test")
  expect_match(sent[[1]]$agent, "^yws-r/")
  expect_equal(nrow(out), 6)
})

test_that("doubles go exactly, text is escaped, and both read back as they were", {
  x <- c(0.1, 1 / 3, 2^-1074, .Machine$double.xmax, -0.5, 1e22, 123456789012345678)
  expect_identical(as.numeric(jsonlite::fromJSON(paste0("[", paste(json_number(x),
                                                                  collapse = ","), "]"))), x)
  expect_identical(json_number(c(1, 0.25, NA, NaN, Inf, -Inf)),
                   c("1", "0.25", "null", '"NaN"', '"Infinity"', '"-Infinity"'))
  s <- c("plain", "quote\"", "back\\slash", "tab\tnew\nline", "\u00e9t\u00e9 \u2603", "ctl\001",
         "</script>", NA)
  back <- jsonlite::fromJSON(paste0("[", paste(json_string(s), collapse = ","), "]"))
  expect_identical(back, s)
})

test_that("the answer is typed as yws_score() types it, after the caller's columns", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- data.frame(customer_id = c("C1", "C2", "C3"), tenure_months = c(5, 20, 90))
  out <- yws_predict(newdata, endpoint = "yws-champion")
  expect_s3_class(out, "tbl_df")
  expect_named(out, c("customer_id", "tenure_months", "probability", "prediction", "band",
                      "error"))
  expect_identical(out$customer_id, newdata$customer_id)
  expect_identical(out$probability, c(0.05, 0.2, 0.9))
  expect_identical(out$prediction, c(0L, 0L, 1L))
  expect_s3_class(out$band, "ordered")
  expect_identical(levels(out$band), contract$bands)
  expect_identical(as.character(out$band), c("GREEN", "YELLOW", "RED"))
  expect_identical(out$error, rep(NA_character_, 3))
  # the types yws_score() gives the same columns
  expect_identical(prediction_types(out), out)
})

test_that("reasons = TRUE sends MLflow's params and returns the reason columns typed", {
  # MLflow's scoring protocol carries `params` beside the input (the scoring server passes
  # them to predict(); the logged model's signature declares `reasons`):
  # https://mlflow.org/docs/latest/model/signatures.html
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- data.frame(id = 1:3, tenure_months = c(20, NA, 90))
  out <- suppressWarnings(yws_predict(newdata, endpoint = "yws-champion", reasons = TRUE))
  expect_true(endsWith(sent_bodies(fake)[1], ']]},"params":{"reasons":true}}'))
  expect_named(out, c("id", "tenure_months", "probability", "prediction", "band", "error",
                      "reason_1", "reason_1_contribution", "reason_2",
                      "reason_2_contribution", "reason_3", "reason_3_contribution"))
  expect_identical(out$reason_1, c("tenure_months", NA, "tenure_months"))
  expect_identical(out$reason_1_contribution, c(0.2, NA, 0.9))
  expect_identical(out$reason_2, rep(NA_character_, 3))
  expect_identical(out$reason_3_contribution, rep(NA_real_, 3))
  expect_identical(prediction_types(out), out)  # as yws_predictions() types them
  # without it: the request and the answer as before
  plain <- yws_predict(newdata[-2, ], endpoint = "yws-champion")
  expect_false(grepl("params", sent_bodies(fake)[2], fixed = TRUE))
  expect_named(plain, c("id", "tenure_months", "probability", "prediction", "band", "error"))
  none <- yws_predict(newdata[0, ], endpoint = "yws-champion", reasons = TRUE)
  expect_type(none$reason_1, "character")
  expect_type(none$reason_1_contribution, "double")
  expect_error(yws_predict(newdata, endpoint = "yws-champion", reasons = "yes"),
               class = "yws_input_error")
  expect_error(yws_predict(newdata, endpoint = "yws-champion", reasons = NA),
               class = "yws_input_error")
  expect_length(sent_bodies(fake), 2)  # the refused calls sent nothing
})

test_that("refused rows come back with their reason and a classed warning that counts them", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- data.frame(id = 1:5, tenure_months = c(10, NaN, Inf, NA, 30))
  w <- expect_warning(out <- yws_predict(newdata, endpoint = "yws-champion"),
                      class = "yws_rejected_rows")
  expect_identical(w$rows, 2:4)
  expect_identical(w$reasons, c("tenure_months is infinite" = 2L,
                                "tenure_months is null" = 1L))
  expect_match(conditionMessage(w), "3 of 5 rows were refused", fixed = TRUE)
  expect_match(conditionMessage(w), "tenure_months is infinite: 2 rows", fixed = TRUE)
  expect_identical(out$id, 1:5)
  expect_identical(out$probability, c(0.1, NA, NA, NA, 0.3))
  expect_identical(out$prediction, c(0L, NA, NA, NA, 0L))
  expect_identical(as.character(out$band), c("GREEN", NA, NA, NA, "YELLOW"))
  expect_identical(out$error, c(NA, "tenure_months is infinite", "tenure_months is infinite",
                                "tenure_months is null", NA))
  # a value of the wrong type is the endpoint's to judge, with braces kept as they are
  text <- data.frame(tenure_months = c("12", "{x}"))
  w <- expect_warning(yws_predict(text, endpoint = "yws-champion"), class = "yws_rejected_rows")
  expect_match(conditionMessage(w), "tenure_months: '{x}' is not a number", fixed = TRUE)
})

test_that("on_error = \"abort\" raises yws_rejected_rows with the row numbers and the rows", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- data.frame(tenure_months = c(10, Inf, 20, -Inf))
  err <- expect_error(yws_predict(newdata, endpoint = "yws-champion", on_error = "abort"),
                      class = "yws_rejected_rows")
  expect_s3_class(err, "yws_error")
  expect_identical(err$rows, c(2L, 4L))
  expect_identical(err$reasons, c("tenure_months is infinite" = 2L))
  expect_identical(err$data$probability, c(0.1, NA, 0.2, NA))
  expect_match(conditionMessage(err), "2 of 4 rows were refused", fixed = TRUE)
  # nothing refused: the rows, no condition
  expect_no_warning(out <- yws_predict(newdata[c(1, 3), , drop = FALSE],
                                       endpoint = "yws-champion", on_error = "abort"))
  expect_identical(out$probability, c(0.1, 0.2))
})

test_that("a missing feature is a yws_input_error with the endpoint's message", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  err <- expect_error(yws_predict(data.frame(tenure = 1), endpoint = "yws-champion"),
                      class = "yws_input_error")
  expect_s3_class(err, "yws_http_400")
  expect_s3_class(err, "yws_http")
  expect_identical(err$status, 400L)
  expect_identical(err$error_code, "BAD_REQUEST")
  expect_match(conditionMessage(err), "the rows have no column tenure_months", fixed = TRUE)
  expect_match(conditionMessage(err), "yws-champion", fixed = TRUE)
})

test_that("403 and 404 keep their HTTP classes and say what to do", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  rows <- data.frame(tenure_months = 1)
  err <- expect_error(yws_predict(rows, endpoint = "yws-other"), class = "yws_http_404")
  expect_identical(class(err)[1:3], c("yws_http_404", "yws_http", "yws_error"))
  expect_identical(err$error_code, "RESOURCE_DOES_NOT_EXIST")
  expect_identical(err$endpoint, "yws-other")
  expect_match(conditionMessage(err), "Endpoint with name 'yws-other' does not exist.",
               fixed = TRUE)
  expect_match(conditionMessage(err), "/api/2.0/serving-endpoints", fixed = TRUE)
  err <- expect_error(yws_predict(rows, endpoint = "yws-champion", token = "dapi-no-query"),
                      class = "yws_http_403")
  expect_identical(class(err)[1:3], c("yws_http_403", "yws_http", "yws_error"))
  expect_match(conditionMessage(err), "CAN_QUERY", fixed = TRUE)
  expect_match(conditionMessage(err), "does not have CAN_QUERY on serving endpoint",
               fixed = TRUE)
})

test_that("large data goes in chunks, one after another, and comes back in order", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  newdata <- data.frame(id = 1:25, tenure_months = (1:25) * 3)
  out <- yws_predict(newdata, endpoint = "yws-champion", chunk_size = 10)
  bodies <- lapply(sent_bodies(fake), jsonlite::fromJSON)
  expect_identical(vapply(bodies, function(b) nrow(b$dataframe_split$data), integer(1)),
                   c(10L, 10L, 5L))
  expect_identical(unlist(lapply(bodies, function(b) b$dataframe_split$data[, 1])),
                   1:25)
  expect_identical(out$id, 1:25)
  expect_identical(out$probability, (1:25) * 3 / 100)
  # and by size: no request over the byte budget, a row never split
  expect_identical(split_chunks(rep(10, 5), 2, 25), list(1L, 2L, 3L, 4L, 5L))
  expect_identical(split_chunks(rep(10, 5), 10, 40), list(1:3, 4:5))
  expect_identical(split_chunks(c(100, 1, 1), 10, 50), list(1L, 2:3))
  expect_identical(split_chunks(numeric(), 10, 50), list())
})

test_that("an answer without one prediction per row is a yws_response_error", {
  fake <- fake_api(serving_routes(answer = function(preds) preds[-1]))
  with_fake_env(fake)
  err <- expect_error(yws_predict(data.frame(tenure_months = c(1, 2)), endpoint = "yws-champion"),
                      class = "yws_response_error")
  expect_match(conditionMessage(err), "for each of rows 1 to 2", fixed = TRUE)
  expect_identical(err$endpoint, "yws-champion")
})

test_that("an answer that is not YWS rows is a yws_response_error", {
  fake <- fake_api(serving_routes(answer = function(preds) c(0.1, 0.2)))
  with_fake_env(fake)
  expect_error(yws_predict(data.frame(tenure_months = c(1, 2)), endpoint = "yws-champion"),
               "Is it serving the YWS model?", class = "yws_response_error")
})

test_that("a columnar answer is read too", {
  fake <- fake_api(serving_routes(answer = function(preds) {
    list(probability = lapply(preds, `[[`, "probability"),
         band = lapply(preds, `[[`, "band"))
  }))
  with_fake_env(fake)
  out <- yws_predict(data.frame(tenure_months = c(1, 50)), endpoint = "yws-champion")
  expect_identical(out$probability, c(0.01, 0.5))
  expect_identical(as.character(out$band), c("GREEN", "RED"))
  expect_identical(out$prediction, c(NA_integer_, NA_integer_))
})

test_that("503 (an endpoint scaling from zero) is retried: an invocation is safe to repeat", {
  fake <- fake_api(list(route("post", "/serving-endpoints/:name/invocations", function(req, res) {
    n <- if (is.null(req$app$locals$n)) 1 else req$app$locals$n + 1
    req$app$locals$n <- n
    if (n == 1) {
      return(res$set_status(503)$set_header("Retry-After", "0")$send_json(
        list(error_code = "TEMPORARILY_UNAVAILABLE", message = "scaling up"), auto_unbox = TRUE))
    }
    res$send_json(list(predictions = list(list(probability = 0.5, prediction = 1L,
                                               band = "RED", error = NULL))),
                  auto_unbox = TRUE, null = "null")
  })))
  with_fake_env(fake)
  out <- yws_predict(data.frame(tenure_months = 1), endpoint = "e1")
  expect_identical(out$probability, 0.5)
  expect_length(invocations(fake), 2)
})

test_that("an endpoint starting from zero is waited for, until the call's timeout", {
  fake <- fake_api(list(route("post", "/serving-endpoints/:name/invocations", function(req, res) {
    n <- if (is.null(req$app$locals$n)) 1 else req$app$locals$n + 1
    req$app$locals$n <- n
    if (n <= 5 || req$params$name == "cold") {
      return(res$set_status(503)$set_header("Retry-After", "0")$send_json(
        list(error_code = "TEMPORARILY_UNAVAILABLE", message = "scaling from zero"),
        auto_unbox = TRUE))
    }
    res$send_json(list(predictions = list(list(probability = 0.5, prediction = 1L,
                                               band = "RED", error = NULL))),
                  auto_unbox = TRUE, null = "null")
  })))
  with_fake_env(fake)
  the$starting_pause <- 0.2
  withr::defer(the$starting_pause <- NULL)
  expect_message(out <- yws_predict(data.frame(tenure_months = 1), endpoint = "warm"),
                 "is not ready")
  expect_identical(out$probability, 0.5)
  expect_length(invocations(fake), 6)
  started <- Sys.time()
  err <- suppressMessages(expect_error(
    yws_predict(data.frame(tenure_months = 1), endpoint = "cold", timeout = 1.5),
    class = "yws_http_503"))
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 5)
  expect_match(conditionMessage(err), "timeout", fixed = TRUE)
  expect_match(conditionMessage(err), "scaling from zero", fixed = TRUE)
})

test_that("the endpoint, the data and the chunk size are checked before anything is sent", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  rows <- data.frame(tenure_months = 1)
  for (bad in list("../x", "a/b", "a b", "", "a?b=1", strrep("e", 64), NA_character_, 1,
                   c("a", "b"))) {
    expect_error(yws_predict(rows, endpoint = bad), class = "yws_input_error")
  }
  expect_error(yws_predict(list(tenure_months = 1), endpoint = "e"), class = "yws_input_error")
  expect_error(yws_predict(as.matrix(rows), endpoint = "e"), class = "yws_input_error")
  listcol <- tibble::tibble(tenure_months = 1, extra = list(1:3))
  err <- expect_error(yws_predict(listcol, endpoint = "e"), "extra", class = "yws_input_error")
  expect_identical(err$column, "extra")
  expect_error(yws_predict(data.frame(x = 1i), endpoint = "e"), class = "yws_input_error")
  broken <- rawToChar(as.raw(c(0xe9, 0x74, 0xe9)))  # latin-1 bytes declared as UTF-8
  Encoding(broken) <- "UTF-8"
  latin <- data.frame(region = broken)
  expect_error(yws_predict(latin, endpoint = "e"), "UTF-8", class = "yws_input_error")
  expect_error(yws_predict(rows, endpoint = "e", chunk_size = 0), class = "yws_input_error")
  expect_error(yws_predict(rows, endpoint = "e", chunk_size = 1.5), class = "yws_input_error")
  expect_length(invocations(fake), 0)
  # named by the argument, the option, the variable, else the bundle's name
  err <- expect_error(yws_predict(rows), class = "yws_http_404")
  expect_identical(err$endpoint, "yws_lr")
  expect_equal(invocations(fake)[[1]]$path, "/serving-endpoints/yws_lr/invocations")
  withr::local_options(yws.serving_endpoint = "yws-champion")
  expect_identical(yws_predict(rows)$probability, 0.01)
  withr::local_options(yws.serving_endpoint = NULL)
  withr::local_envvar(YWS_SERVING_ENDPOINT = "yws-champion")
  expect_identical(yws_predict(rows)$probability, 0.01)
})

test_that("no rows: no request, the typed columns; earlier answers are replaced, not sent", {
  fake <- fake_api(serving_routes())
  with_fake_env(fake)
  none <- yws_predict(data.frame(tenure_months = numeric()), endpoint = "yws-champion")
  expect_identical(nrow(none), 0L)
  expect_named(none, c("tenure_months", "probability", "prediction", "band", "error"))
  expect_type(none$probability, "double")
  expect_type(none$prediction, "integer")
  expect_identical(levels(none$band), contract$bands)
  expect_length(invocations(fake), 0)
  first <- yws_predict(data.frame(tenure_months = 10), endpoint = "yws-champion")
  first$tenure_months <- 60
  again <- yws_predict(first, endpoint = "yws-champion")
  expect_named(again, names(first))
  expect_identical(again$probability, 0.6)
  expect_identical(as.character(again$band), "RED")
  expect_match(sent_bodies(fake)[2], '"columns":["tenure_months"]', fixed = TRUE)
})
