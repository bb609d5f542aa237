test_that("yws_run_job resolves the job and sends parameters, token and bearer auth", {
  fake <- fake_api(jobs_routes())
  with_fake_env(fake)
  run <- yws_run_job("yws_score", list(as_of_date = "2026-11-30", batch_id = "b1"),
                     idempotency_token = "tok-1")
  expect_s3_class(run, "yws_run")
  expect_equal(run$run_id, 9007199254)
  reqs <- requests(fake)
  expect_equal(reqs[[1]]$path, "/api/2.2/jobs/list")
  expect_equal(reqs[[1]]$query$name, "yws_score")
  expect_equal(reqs[[2]]$path, "/api/2.2/jobs/get")
  expect_equal(reqs[[2]]$query$job_id, "483920113")
  reqs <- reqs[-2]
  expect_equal(reqs[[2]]$path, "/api/2.2/jobs/run-now")
  expect_equal(reqs[[2]]$body, list(job_id = 483920113,
                                    job_parameters = list(as_of_date = "2026-11-30",
                                                          batch_id = "b1"),
                                    idempotency_token = "tok-1"))
  expect_true(all(vapply(reqs, function(r) identical(r$auth, "Bearer dapi-r-test"),
                         logical(1))))
  expect_match(reqs[[2]]$agent, "^yws-r/")
  expect_equal(yws_wait(run, interval = 0)$result_state, "SUCCESS")
})

test_that("a failed run raises yws_run_failed with the task's error", {
  fake <- fake_api(jobs_routes(final = run_state("TERMINATED", "FAILED", "Task score failed")))
  with_fake_env(fake)
  run <- yws_run_job("yws_score")
  err <- expect_error(yws_wait(run, interval = 0), class = "yws_run_failed")
  expect_match(err$task_error, "score: ModelNotFoundError: no version with alias @champion")
  expect_equal(err$result_state, "FAILED")
})

test_that("a run that never ends times out and is cancelled", {
  fake <- fake_api(jobs_routes(never_ends = TRUE))
  with_fake_env(fake)
  run <- yws_run_job("yws_score")
  expect_error(yws_wait(run, timeout = 0.5, interval = 0.1), class = "yws_timeout")
  cancel <- Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake))
  expect_length(cancel, 1)
  expect_equal(cancel[[1]]$body, list(run_id = 9007199254))
})

test_that("an unknown job and HTTP errors are classed", {
  denied <- route("get", "/api/2.2/jobs/runs/list", function(req, res) {
    res$set_status(403)$send_json(list(error_code = "PERMISSION_DENIED",
                                       message = "ana cannot view job 1"), auto_unbox = TRUE)
  })
  fake <- fake_api(c(jobs_routes(), list(denied)))
  with_fake_env(fake)
  err <- expect_error(yws_run_job("yws_nope"), class = "yws_job_not_found")
  expect_match(conditionMessage(err), "nor a development copy", fixed = TRUE)
  err <- expect_error(yws_perform(yws_request("/api/2.2/jobs/runs/list")),
                      class = "yws_http_403")
  expect_s3_class(err, "yws_error")
  expect_equal(err$error_code, "PERMISSION_DENIED")
  expect_match(conditionMessage(err), "ana cannot view job 1")
})

test_that("a development copy is found by its bundle name", {
  # `mode: development` names a bundle's job "[dev <short name>] <name>"
  # (databricks/cli bundle/config/mutator/resourcemutator/apply_target_mode.go).
  fake <- fake_api(jobs_routes(jobs = list(dev_copy(21, "ana"),
                                           dev_copy(22, "bob", project = "marketing"))))
  with_fake_env(fake)
  run <- yws_run_job("yws_score", list(batch_id = "b1"))
  expect_equal(run$job_id, 21)
  expect_equal(started_jobs(fake), 21)
  lists <- Filter(function(r) r$path == "/api/2.2/jobs/list", requests(fake))
  expect_equal(lists[[1]]$query$name, "yws_score")
  expect_null(lists[[2]]$query$name)
  expect_equal(lists[[3]]$query$page_token, "1")  # every page is read
})

test_that("among several development copies the caller's own wins", {
  fake <- fake_api(jobs_routes(jobs = list(dev_copy(21, "bob"), dev_copy(23, "ana")),
                               me = "ana@corp"))
  with_fake_env(fake)
  expect_equal(yws_run_job("yws_score")$job_id, 23)
  expect_true(any(vapply(requests(fake), function(r) r$path == "/api/2.0/preview/scim/v2/Me",
                         logical(1))))
})

test_that("ambiguous copies are an error that lists them, and the full name works", {
  fake <- fake_api(jobs_routes(jobs = list(dev_copy(21, "bob"), dev_copy(24, "carl"))))
  with_fake_env(fake)
  err <- expect_error(yws_run_job("yws_score"), class = "yws_job_not_found")
  msg <- conditionMessage(err)
  expect_match(msg, "2 development copies", fixed = TRUE)
  expect_match(msg, '"[dev bob] yws_score" (job 21, created by bob@corp)', fixed = TRUE)
  expect_match(msg, '"[dev carl] yws_score" (job 24, created by carl@corp)', fixed = TRUE)
  expect_length(started_jobs(fake), 0)
  expect_equal(yws_run_job("[dev carl] yws_score")$job_id, 24)
})

test_that("the exact name wins over development copies", {
  fake <- fake_api(jobs_routes(jobs = list(score_job(11), dev_copy(21, "ana"))))
  with_fake_env(fake)
  expect_equal(yws_run_job("yws_score")$job_id, 11)
})

test_that("a parameter the job does not define is refused before the run", {
  fake <- fake_api(jobs_routes())
  with_fake_env(fake)
  err <- expect_error(yws_run_job("yws_score", list(catalog = "yws_prod", batch_id = "b")),
                      class = "yws_input_error")
  expect_match(conditionMessage(err), "does not take the parameter")
  expect_match(conditionMessage(err), "catalog")
  expect_length(started_jobs(fake), 0)
})

test_that("yws_score() and yws_train() send only what a runner may choose", {
  fake <- fake_api(c(jobs_routes(jobs = list(score_job(),
                                             score_job(5, "yws_train")))))
  with_fake_env(fake)
  run <- yws_score(as_of = "2026-11-30", batch_id = "b-1", wait = FALSE)
  yws_train(as_of = "2026-08-31", wait = FALSE)
  posts <- Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake))
  expect_equal(posts[[1]]$body$job_parameters, list(as_of_date = "2026-11-30",
                                                    batch_id = "b-1",
                                                    model_alias = "champion"))
  expect_equal(posts[[2]]$body, list(job_id = 5,
                                     job_parameters = list(as_of_date = "2026-08-31")))
})

test_that("the derived idempotency token covers the whole run, hashed to 64 characters (item 1)", {
  p <- list(as_of_date = "2026-11-30", batch_id = "b1", model_alias = "champion")
  token <- yws_idempotency_token("yws_score", p)
  expect_match(token, "^[0-9a-f]{64}$")
  expect_equal(token, yws_idempotency_token("yws_score", rev(p)))  # order does not matter
  for (changed in list(list(as_of_date = "2026-12-31"), list(batch_id = "b2"),
                       list(model_alias = "challenger"))) {
    expect_false(identical(token, yws_idempotency_token("yws_score", utils::modifyList(p, changed))))
  }
  expect_false(identical(token, yws_idempotency_token("yws_train", p)))
  long <- strrep("b", 128)
  longer <- paste0(strrep("b", 127), "c")  # differs only past character 64
  expect_false(identical(yws_idempotency_token("yws_score", list(batch_id = long)),
                         yws_idempotency_token("yws_score", list(batch_id = longer))))
  # a value holding what looks like another parameter is not that parameter
  expect_false(identical(yws_idempotency_token("yws_score", list(a = "1\nb=2")),
                         yws_idempotency_token("yws_score", list(a = "1", b = "2"))))
  expect_false(identical(yws_idempotency_token("yws_score", list(a = "1,2")),
                         yws_idempotency_token("yws_score", list(a = c("1", "2")))))
  expect_error(yws_run_job("yws_score", idempotency_token = strrep("t", 65)),
               class = "yws_input_error")
})

test_that("a run returned for a reused token with other parameters is refused (item 1)", {
  fake <- fake_api(jobs_routes())
  with_fake_env(fake)
  first <- yws_run_job("yws_score", list(as_of_date = "2026-11-30", batch_id = "b1"),
                       idempotency_token = "b1")
  again <- yws_run_job("yws_score", list(as_of_date = "2026-11-30", batch_id = "b1"),
                       idempotency_token = "b1")
  expect_equal(again$run_id, first$run_id)  # a retried call: the same run, accepted
  err <- expect_error(yws_run_job("yws_score", list(as_of_date = "2026-12-31", batch_id = "b1"),
                                  idempotency_token = "b1"),
                      class = "yws_run_mismatch")
  expect_match(conditionMessage(err), "as_of_date: asked 2026-12-31, the run has 2026-11-30",
               fixed = TRUE)
  expect_equal(err$run_id, first$run_id)
})

test_that("a server that refuses a reused token is a yws_run_mismatch too (item 1)", {
  fake <- fake_api(jobs_routes(token_reuse = "refuse"))
  with_fake_env(fake)
  yws_run_job("yws_score", list(as_of_date = "2026-11-30", batch_id = "b1"),
              idempotency_token = "b1")
  expect_error(yws_run_job("yws_score", list(as_of_date = "2026-12-31", batch_id = "b1"),
                           idempotency_token = "b1"),
               "used before", class = "yws_run_mismatch")
})

test_that("yws_score never reuses a run: a batch id for another date starts another (item 1)", {
  for (reuse in c("first", "refuse")) {
    fake <- fake_api(jobs_routes(token_reuse = reuse))
    with_fake_env(fake)
    a <- yws_score(as_of = "2026-11-30", batch_id = "b1", wait = FALSE)
    b <- yws_score(as_of = "2026-12-31", batch_id = "b1", wait = FALSE)
    c <- yws_score(as_of = "2026-12-31", batch_id = "b1", wait = FALSE)
    expect_false(a$run_id == b$run_id)
    expect_equal(b$run_id, c$run_id)
    posts <- Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake))
    tokens <- vapply(posts, function(r) r$body$idempotency_token, character(1))
    expect_equal(tokens[[2]], tokens[[3]])
    expect_false(tokens[[1]] == tokens[[2]])
    expect_equal(posts[[2]]$body$job_parameters,
                 list(as_of_date = "2026-12-31", batch_id = "b1", model_alias = "champion"))
  }
})

test_that("the wait shows the state, the task's attempt and the run page (item 12)", {
  retried <- list(
    list(task_key = "check", run_id = 70, attempt_number = 0,
         state = run_state("TERMINATED", "SUCCESS")),
    list(task_key = "score", run_id = 77, attempt_number = 0,
         state = run_state("TERMINATED", "FAILED")),
    list(task_key = "score", run_id = 78, attempt_number = 1, state = run_state("RUNNING")))
  fake <- fake_api(jobs_routes(never_ends = TRUE, tasks = function(state) retried))
  with_fake_env(fake)
  run <- yws_run_job("yws_score", list(batch_id = "b9"), idempotency_token = "t9")
  withr::local_options(cli.progress_show_after = 0, cli.dynamic = FALSE)
  out <- capture.output(msgs <- capture.output(
    expect_error(yws_wait(run, timeout = 1, interval = 0.1), class = "yws_timeout"),
    type = "message"))
  text <- paste(c(out, msgs), collapse = "\n")
  expect_match(text, "Run 9007199254 (batch \"b9\")", fixed = TRUE)
  expect_match(text, "http://ws/#job/1/run/9007199254", fixed = TRUE)
  expect_match(text, "RUNNING - score (retry 1)", fixed = TRUE)
})

test_that("a failed retried task reports its latest attempt's error", {
  fake <- fake_api(c(jobs_routes(final = run_state("TERMINATED", "FAILED"),
                                 tasks = function(state) list(
    list(task_key = "score", run_id = 77, attempt_number = 0, state = state),
    list(task_key = "score", run_id = 78, attempt_number = 1, state = state)))))
  with_fake_env(fake)
  err <- expect_error(yws_wait(yws_run_job("yws_score"), interval = 0),
                      class = "yws_run_failed")
  outputs <- Filter(function(r) r$path == "/api/2.2/jobs/runs/get-output", requests(fake))
  expect_equal(outputs[[1]]$query$run_id, "78")
})

test_that("Ctrl-C during the wait cancels the run and names run and batch (item 6)", {
  fake <- fake_api(jobs_routes(never_ends = TRUE))
  with_fake_env(fake)
  run <- yws_run_job("yws_score", list(batch_id = "b-intr"), idempotency_token = "t-intr")
  interrupt_in(1)
  msgs <- character()
  got <- withCallingHandlers(
    tryCatch(yws_wait(run, timeout = 60, interval = 0.2), interrupt = function(e) "interrupted"),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
  expect_equal(got, "interrupted")
  cancels <- Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake))
  expect_length(cancels, 1)
  expect_equal(cancels[[1]]$body$run_id, 9007199254)
  text <- paste(msgs, collapse = "\n")
  expect_match(text, "run 9007199254, batch b-intr was cancelled", fixed = TRUE)
})

test_that("with yws.on_interrupt = 'detach' the run keeps going and reattaching is explained (item 6)", {
  fake <- fake_api(jobs_routes(never_ends = TRUE))
  with_fake_env(fake)
  withr::local_options(yws.on_interrupt = "detach")
  interrupt_in(1)
  msgs <- character()
  # a bare run id: the batch comes from the run's parameters
  run <- yws_run_job("yws_score", list(batch_id = "b-keep"), idempotency_token = "t-keep")
  got <- withCallingHandlers(
    tryCatch(yws_wait(run$run_id, timeout = 60, interval = 0.2),
             interrupt = function(e) "interrupted"),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
  expect_equal(got, "interrupted")
  expect_length(Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake)), 0)
  text <- paste(msgs, collapse = "\n")
  expect_match(text, "run 9007199254, batch b-keep is still running", fixed = TRUE)
  expect_match(text, "yws_wait(9007199254)", fixed = TRUE)
  expect_match(text, 'yws_predictions(batch_id = "b-keep")', fixed = TRUE)
})

test_that("a poll that outlives the call's timeout still cancels the run (item 2)", {
  routes <- jobs_routes(never_ends = TRUE)
  slow <- route("get", "/api/2.2/jobs/runs/get", function(req, res) {
    n <- if (is.null(req$app$locals$polls)) 1 else req$app$locals$polls + 1
    req$app$locals$polls <- n
    if (n > 2) Sys.sleep(4)  # the server stops answering in time
    res$send_json(list(run_id = 1, state = list(life_cycle_state = "RUNNING")),
                  auto_unbox = TRUE)
  })
  fake <- fake_api(c(list(slow), routes))
  with_fake_env(fake)
  started <- Sys.time()
  err <- expect_error(yws_wait(5, timeout = 2, interval = 0.2), class = "yws_timeout")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 9)
  expect_match(conditionMessage(err), "it was cancelled", fixed = TRUE)
  cancels <- Filter(function(r) r$path == "/api/2.2/jobs/runs/cancel", requests(fake))
  expect_length(cancels, 1)
  expect_equal(cancels[[1]]$body$run_id, 5)
})

test_that("yws_score(model =) scores with another registered model by its alias", {
  fake <- fake_api(jobs_routes())
  with_fake_env(fake)
  yws_score(as_of = "2026-11-30", batch_id = "b-2", wait = FALSE,
            model = "yws_dev.ml.yws_glm_r@champion")
  posts <- Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake))
  expect_equal(posts[[1]]$body$job_parameters,
               list(as_of_date = "2026-11-30", batch_id = "b-2", model_alias = "champion",
                    model_name = "yws_dev.ml.yws_glm_r"))
  # a version is not an alias, a bare name names no version, a two-part name is not UC's:
  # refused before anything is sent
  for (bad in c("yws_dev.ml.yws_glm_r/3", "yws_dev.ml.yws_glm_r", "ml.yws_glm_r@champion")) {
    expect_error(yws_score(as_of = "2026-11-30", wait = FALSE, model = bad),
                 class = "yws_input_error")
  }
  expect_length(Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake)), 1)
})
