run_state <- function(life, result = NULL, message = "") {
  list(life_cycle_state = life, result_state = result, state_message = message)
}

score_job <- function(job_id = 483920113, name = "yws_score", creator = "deployer@corp",
                      project = "yws") {
  list(job_id = job_id, creator_user_name = creator,
       settings = list(name = name, tags = list(project = project, component = "score")))
}

dev_copy <- function(job_id, user, creator = paste0(user, "@corp"), project = "yws") {
  score_job(job_id, paste0("[dev ", user, "] yws_score"), creator, project)
}

jobs_routes <- function(final = run_state("TERMINATED", "SUCCESS"), never_ends = FALSE,
                        jobs = list(score_job()), me = "ana@corp") {
  list(
    route("get", "/api/2.2/jobs/list", function(req, res) {
      # the documented filter: the exact name, case-insensitively; no name: every job (paged)
      name <- req$query$name
      keep <- Filter(function(j) is.null(name) || tolower(j$settings$name) == tolower(name),
                     jobs)
      if (is.null(name) && is.null(req$query$page_token) && length(keep) > 1) {
        res$send_json(list(jobs = keep[1], has_more = TRUE, next_page_token = "1"),
                      auto_unbox = TRUE)
      } else if (identical(req$query$page_token, "1")) {
        res$send_json(list(jobs = keep[-1], has_more = FALSE), auto_unbox = TRUE)
      } else {
        res$send_json(list(jobs = keep), auto_unbox = TRUE)
      }
    }),
    route("get", "/api/2.2/jobs/get", function(req, res) {
      job <- Filter(function(j) format(j$job_id, scientific = FALSE) == req$query$job_id,
                    jobs)[[1]]
      job$settings$parameters <- list(list(name = "as_of_date", default = ""),
                                      list(name = "batch_id", default = ""),
                                      list(name = "model_alias", default = "champion"))
      res$send_json(job, auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/preview/scim/v2/Me", function(req, res) {
      res$send_json(list(userName = me, id = "42"), auto_unbox = TRUE)
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

started_jobs <- function(fake) {
  posts <- Filter(function(r) r$path == "/api/2.2/jobs/run-now", requests(fake))
  vapply(posts, function(r) as.numeric(r$body$job_id), numeric(1))
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
                                                    batch_id = "b-1"))
  expect_equal(posts[[2]]$body, list(job_id = 5,
                                     job_parameters = list(as_of_date = "2026-08-31")))
})
