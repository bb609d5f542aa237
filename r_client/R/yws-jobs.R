#' Run a YWS job and follow it
#'
#' `yws_run_job()` starts a job by name through the Jobs API with job parameters and an
#' idempotency token (a retried call with the same token never starts a second run).
#' A job deployed from a bundle target with `mode: development` is named
#' `"[dev <user>] yws_score"`: when no job has the exact name, such a development copy of the
#' project (tagged `project: yws`) is used, the caller's own if there are several; an
#' ambiguous name raises a `yws_job_not_found` error listing the candidates. Parameters the
#' job does not define raise a `yws_input_error` before anything starts (Databricks would
#' ignore them): catalog and schema are fixed by the bundle target, not chosen per run.
#' `yws_run_status()` reads a run's state. `yws_wait()` polls until the run ends, showing
#' progress, and checks the result: a failed run raises a `yws_run_failed` error carrying the
#' task's error message; a run still going after `timeout` seconds raises `yws_timeout`.
#' `yws_cancel()` cancels a run. `yws_train()` runs the training job.
#'
#' @param job The job's name, e.g. `"yws_score"`, or the full name of a development copy.
#' @param params A named list of job parameters.
#' @param idempotency_token A string of at most 64 characters; `NULL` for none.
#' @inheritParams yws_host
#' @return `yws_run_job()`: a `yws_run` (a list with `run_id`, `job_id`, `job`).
#'   `yws_run_status()` / `yws_wait()`: a list with `life_cycle_state`, `result_state`,
#'   `state_message` and `tasks`.
#' @examples
#' \dontrun{
#' run <- yws_run_job("yws_score", list(as_of_date = "2026-11-30"))
#' yws_wait(run)
#' }
#' @export
yws_run_job <- function(job, params = list(), idempotency_token = NULL, host = NULL,
                        token = NULL) {
  job_id <- yws_job_id(job, host = host, token = token)
  check_job_parameters(job_id, job, params, host = host, token = token)
  body <- list(job_id = job_id, job_parameters = lapply(params, as.character),
               idempotency_token = idempotency_token)
  if (!length(params)) body$job_parameters <- NULL
  if (is.null(idempotency_token)) body$idempotency_token <- NULL
  out <- yws_perform(yws_request("/api/2.2/jobs/run-now", body = body, host = host,
                                 token = token))
  structure(list(run_id = out$run_id, job_id = job_id, job = job), class = "yws_run")
}

#' @export
print.yws_run <- function(x, ...) {
  cat("<yws_run> ", x$job, " run ", format(x$run_id, scientific = FALSE), "\n", sep = "")
  invisible(x)
}

yws_job_id <- function(job, host = NULL, token = NULL) {
  found <- yws_perform(yws_request("/api/2.2/jobs/list", query = list(name = job),
                                   host = host, token = token))
  exact <- Filter(function(j) identical(j$settings$name, job), found$jobs %||% list())
  if (length(exact) == 1) return(as.numeric(exact[[1]]$job_id))
  if (length(exact) > 1) {
    cli::cli_abort(c("{length(exact)} jobs are named {.val {job}}.",
                     i = "Candidates: {describe_jobs(exact)}.",
                     i = "Rename or delete all but one."),
                   class = c("yws_job_not_found", "yws_error"))
  }
  copies <- Filter(function(j) is_dev_copy(j, job), list_jobs(host = host, token = token))
  if (length(copies) > 1) {
    me <- tryCatch(yws_perform(yws_request("/api/2.0/preview/scim/v2/Me", host = host,
                                           token = token))$userName,
                   yws_error = function(e) NULL)
    mine <- Filter(function(j) !is.null(me) && identical(j$creator_user_name, me), copies)
    if (length(mine) == 1) return(as.numeric(mine[[1]]$job_id))
    cli::cli_abort(c("No job is named {.val {job}} and {length(copies)} development copies are.",
                     i = "Candidates: {describe_jobs(copies)}.",
                     i = "Pass the full name of the one to run."),
                   class = c("yws_job_not_found", "yws_error"))
  }
  if (length(copies) == 1) return(as.numeric(copies[[1]]$job_id))
  cli::cli_abort(c("No job named {.val {job}} (nor a development copy {.val [dev <user>] {job}}).",
                   i = "Deploy the bundle ({.code databricks bundle deploy}) or check the name."),
                 class = c("yws_job_not_found", "yws_error"))
}

# Every job visible to the caller, following the list's pages.
list_jobs <- function(host = NULL, token = NULL) {
  jobs <- list()
  page <- NULL
  repeat {
    out <- yws_perform(yws_request("/api/2.2/jobs/list",
                                   query = list(limit = 100, page_token = page),
                                   host = host, token = token))
    jobs <- c(jobs, out$jobs %||% list())
    page <- out$next_page_token
    if (!isTRUE(out$has_more) || is.null(page)) break
  }
  jobs
}

# "[dev <user>] <job>", the name `mode: development` gives a bundle's job, and one of ours.
is_dev_copy <- function(j, job) {
  name <- j$settings$name %||% ""
  prefix <- regmatches(name, regexpr("^\\[dev [^]]+\\] ", name))
  project <- j$settings$tags$project
  length(prefix) == 1 && identical(substring(name, nchar(prefix) + 1), job) &&
    (is.null(j$settings$tags) || identical(project, "yws"))
}

describe_jobs <- function(jobs) {
  paste(vapply(jobs, function(j) {
    who <- if (is.null(j$creator_user_name)) "" else paste0(", created by ", j$creator_user_name)
    sprintf("\"%s\" (job %s%s)", j$settings$name, format(j$job_id, scientific = FALSE), who)
  }, character(1)), collapse = "; ")
}

check_job_parameters <- function(job_id, job, params, host = NULL, token = NULL) {
  if (!length(params)) return(invisible())
  found <- yws_perform(yws_request("/api/2.2/jobs/get",
                                   query = list(job_id = format(job_id, scientific = FALSE)),
                                   host = host, token = token))
  defined <- vapply(found$settings$parameters %||% list(), function(p) p$name, character(1))
  unknown <- setdiff(names(params), defined)
  if (length(unknown)) {
    cli::cli_abort(c("Job {.val {job}} does not take the parameter{?s} {.val {unknown}}.",
                     i = "Its parameters: {.val {defined}}.",
                     i = "Catalog and schema are fixed by the bundle target, not chosen per run."),
                   class = c("yws_input_error", "yws_error"))
  }
  invisible()
}

run_id_of <- function(run) if (inherits(run, "yws_run")) run$run_id else run

#' @rdname yws_run_job
#' @param run A `yws_run` or a run id.
#' @export
yws_run_status <- function(run, host = NULL, token = NULL) {
  out <- yws_perform(yws_request("/api/2.2/jobs/runs/get",
                                 query = list(run_id = format(run_id_of(run), scientific = FALSE)),
                                 host = host, token = token))
  list(run_id = out$run_id, life_cycle_state = out$state$life_cycle_state,
       result_state = out$state$result_state, state_message = out$state$state_message %||% "",
       run_page_url = out$run_page_url, tasks = out$tasks %||% list())
}

#' @rdname yws_run_job
#' @param timeout Seconds to wait before giving up (the run is cancelled).
#' @param interval The longest wait between polls, in seconds. Polls start a quarter of a
#'   second apart and back off to it, so a short run returns promptly and a long one is not
#'   asked about too often.
#' @export
yws_wait <- function(run, timeout = 3600, interval = 5, host = NULL, token = NULL) {
  ends <- c("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
  deadline <- Sys.time() + timeout
  id <- format(run_id_of(run), scientific = FALSE)
  cli::cli_progress_step("Waiting for run {id}")
  pause <- min(0.25, interval)
  repeat {
    status <- yws_run_status(run, host = host, token = token)
    if (status$life_cycle_state %in% ends) break
    if (Sys.time() > deadline) {
      yws_cancel(run, host = host, token = token)
      cli::cli_abort("Run {id} did not end within {timeout} s; it was cancelled.",
                     class = c("yws_timeout", "yws_error"), run_id = run_id_of(run))
    }
    if (interactive()) cli::cli_progress_update()
    Sys.sleep(pause)
    pause <- min(pause * 1.5, interval)
  }
  if (!identical(status$result_state, "SUCCESS")) {
    cli::cli_progress_done(result = "failed")
    detail <- task_error(status, host = host, token = token)
    cli::cli_abort(c("Run {id} ended {status$life_cycle_state} {status$result_state %||% ''}.",
                     x = "{detail}"),
                   class = c("yws_run_failed", "yws_error"), run_id = run_id_of(run),
                   result_state = status$result_state, task_error = detail)
  }
  cli::cli_progress_done()
  invisible(status)
}

task_error <- function(status, host = NULL, token = NULL) {
  for (task in status$tasks) {
    if (!identical(task$state$result_state, "SUCCESS") && !is.null(task$run_id)) {
      out <- tryCatch(
        yws_perform(yws_request("/api/2.2/jobs/runs/get-output",
                                query = list(run_id = format(task$run_id, scientific = FALSE)),
                                host = host, token = token)),
        yws_error = function(e) list())
      if (!is.null(out$error)) return(paste0(task$task_key, ": ", out$error))
    }
  }
  if (nzchar(status$state_message)) status$state_message else "no error message"
}

#' @rdname yws_run_job
#' @export
yws_cancel <- function(run, host = NULL, token = NULL) {
  yws_perform(yws_request("/api/2.2/jobs/runs/cancel",
                          body = list(run_id = run_id_of(run)), host = host, token = token))
  invisible(run)
}

#' @rdname yws_run_job
#' @param as_of Snapshot date to train on (`NULL`: every labelled snapshot).
#' @param wait Wait for the run to end.
#' @export
yws_train <- function(as_of = NULL, wait = TRUE, timeout = 7200, host = NULL, token = NULL) {
  params <- list()
  if (!is.null(as_of)) params$as_of_date <- check_date(as_of)
  run <- yws_run_job("yws_train", params, host = host, token = token)
  if (wait) yws_wait(run, timeout = timeout, host = host, token = token)
  run
}
