# A fake Jobs API (webfakes) that keeps its runs, honouring idempotency tokens.
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
                        jobs = list(score_job()), me = "ana@corp", token_reuse = "first",
                        job_id_run = NULL,
                        tasks = function(state) list(list(task_key = "score", run_id = 77,
                                                          state = state))) {
  # evaluate the defaults here: the handlers run in the fake server's own process
  list(final, never_ends, jobs, me, token_reuse, job_id_run, tasks)
  running <- run_state("RUNNING")
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
                                      list(name = "model_alias", default = "champion"),
                                      list(name = "model_name", default = ""))
      res$send_json(job, auto_unbox = TRUE)
    }),
    route("get", "/api/2.0/preview/scim/v2/Me", function(req, res) {
      res$send_json(list(userName = me, id = "42"), auto_unbox = TRUE)
    }),
    route("post", "/api/2.2/jobs/run-now", function(req, res) {
      # like the Jobs API: a known idempotency token returns its run; with token_reuse =
      # "refuse" (Databricks' newer contract) other parameters under a known token are a 400
      runs <- req$app$locals$runs
      token <- req$json$idempotency_token
      params <- req$json$job_parameters
      if (is.null(params)) params <- list()
      known <- if (!is.null(token)) Filter(function(r) identical(r$token, token), runs)
      if (length(known)) {
        if (token_reuse == "refuse" && !identical(known[[1]]$params, params)) {
          return(res$set_status(400)$send_json(list(
            error_code = "INVALID_PARAMETER_VALUE",
            message = "idempotency token reused with different parameters"), auto_unbox = TRUE))
        }
        return(res$send_json(list(run_id = known[[1]]$run_id), auto_unbox = TRUE))
      }
      run_id <- 9007199254 + length(runs)
      runs[[length(runs) + 1]] <- list(run_id = run_id, token = token, params = params)
      req$app$locals$runs <- runs
      res$send_json(list(run_id = run_id, number_in_job = 1), auto_unbox = TRUE)
    }),
    route("get", "/api/2.2/jobs/runs/get", function(req, res) {
      state <- if (never_ends) running else final
      run <- Filter(function(r) format(r$run_id, scientific = FALSE) == req$query$run_id,
                    req$app$locals$runs)
      params <- if (length(run)) run[[1]]$params else list()
      res$send_json(list(run_id = as.numeric(req$query$run_id), job_id = job_id_run,
                         run_page_url = paste0("http://ws/#job/1/run/", req$query$run_id),
                         job_parameters = unname(Map(function(n, v) list(name = n, value = v),
                                                     names(params), params)),
                         state = state, tasks = tasks(state)),
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

