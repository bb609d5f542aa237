run_state <- function(life, result = NULL, message = "") {
  list(life_cycle_state = life, result_state = result, state_message = message)
}

jobs_routes <- function(final = run_state("TERMINATED", "SUCCESS"), never_ends = FALSE) {
  list(
    route("get", "/api/2.2/jobs/list", function(req, res) {
      jobs <- if (identical(req$query$name, "yws_score")) {
        list(list(job_id = 483920113, settings = list(name = "yws_score")))
      } else list()
      res$send_json(list(jobs = jobs), auto_unbox = TRUE)
    }),
    route("post", "/api/2.2/jobs/run-now", function(req, res) {
      res$send_json(list(run_id = 9007199254, number_in_job = 1), auto_unbox = TRUE)
    }),
    route("get", "/api/2.2/jobs/runs/get", function(req, res) {
      state <- if (never_ends) run_state("RUNNING") else final
      res$send_json(list(run_id = 9007199254, state = state,
                         tasks = list(list(task_key = "score", run_id = 77,
                                           state = state))),
                    auto_unbox = TRUE, null = "null")
    }),
    route("get", "/api/2.2/jobs/runs/get-output", function(req, res) {
      res$send_json(list(error = "ModelNotFoundError: no version with alias @champion",
                         error_trace = "Traceback"), auto_unbox = TRUE)
    }),
    route("post", "/api/2.2/jobs/runs/cancel", function(req, res) {
      res$send_json(structure(list(), names = character()), auto_unbox = TRUE)
    })
  )
}

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
  fake <- fake_api(c(jobs_routes(), list(route("get", "/api/2.2/jobs/get", function(req, res) {
    res$set_status(403)$send_json(list(error_code = "PERMISSION_DENIED",
                                       message = "ana cannot view job 1"), auto_unbox = TRUE)
  }))))
  with_fake_env(fake)
  expect_error(yws_run_job("yws_nope"), class = "yws_job_not_found")
  err <- expect_error(yws_perform(yws_request("/api/2.2/jobs/get")), class = "yws_http_403")
  expect_s3_class(err, "yws_error")
  expect_equal(err$error_code, "PERMISSION_DENIED")
  expect_match(conditionMessage(err), "ana cannot view job 1")
})
