#' Run a YWS job and follow it
#'
#' `yws_run_job()` starts a job by name through the Jobs API with job parameters and an
#' idempotency token (a retried call with the same token never starts a second run). When a
#' token is sent, the run that comes back is checked against what was asked: a run of another
#' job or with other parameters (a token reused for a different run) raises a
#' `yws_run_mismatch` error instead of following the wrong run. [yws_idempotency_token()]
#' derives a token from everything that defines the run.
#'
#' A job deployed from a bundle target with `mode: development` is named
#' `"[dev <user>] yws_score"`: when no job has the exact name, such a development copy of the
#' project (tagged `project: yws`) is used, the caller's own if there are several; an
#' ambiguous name raises a `yws_job_not_found` error listing the candidates. Parameters the
#' job does not define raise a `yws_input_error` before anything starts (Databricks would
#' ignore them): catalog and schema are fixed by the bundle target, not chosen per run.
#'
#' `yws_run_status()` reads a run's state. `yws_wait()` polls until the run ends, showing one
#' updating line (state, task, attempt, time), and checks the result: a failed run raises a
#' `yws_run_failed` error carrying the task's error message; a run still going after
#' `timeout` seconds is cancelled and raises `yws_timeout`. Interrupting the wait (Esc or
#' Ctrl-C) cancels the run, or with `options(yws.on_interrupt = "detach")` leaves it running
#' and says how to reattach; either way the run id and batch id are printed.
#' `yws_cancel()` cancels a run. `yws_train()` runs the training job.
#'
#' @param job The job's name, e.g. `"yws_score"`, or the full name of a development copy.
#' @param params A named list of job parameters.
#' @param idempotency_token A string of at most 64 characters (see
#'   [yws_idempotency_token()]); `NULL` for none.
#' @inheritParams yws_host
#' @return `yws_run_job()`: a `yws_run` (a list with `run_id`, `job_id`, `job`, `params`,
#'   `batch_id` when the parameters name one, and `run_page_url`).
#'   `yws_run_status()` / `yws_wait()`: a list with `life_cycle_state`, `result_state`,
#'   `state_message`, `run_page_url`, `job_parameters` and `tasks`.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' run <- yws_run_job("yws_score", list(as_of_date = "2026-11-30"))
#' yws_wait(run)
#' @export
yws_run_job <- function(job, params = list(), idempotency_token = NULL, host = NULL,
                        token = NULL) {
  params <- lapply(params, as.character)
  if (!is.null(idempotency_token)) check_token(idempotency_token)
  job_id <- yws_job_id(job, host = host, token = token)
  check_job_parameters(job_id, job, params, host = host, token = token)
  body <- list(job_id = job_id, job_parameters = params,
               idempotency_token = idempotency_token)
  if (!length(params)) body$job_parameters <- NULL
  if (is.null(idempotency_token)) body$idempotency_token <- NULL
  out <- tryCatch(
    yws_perform(yws_request("/api/2.2/jobs/run-now", body = body, host = host, token = token)),
    yws_http_400 = function(e) {
      # Databricks refuses a token reused with other parameters (INVALID_PARAMETER_VALUE)
      if (is.null(idempotency_token) || !grepl("idempotency", rlang::cnd_message(e),
                                               ignore.case = TRUE)) stop(e)
      yws_abort(c("The idempotency token was used before for a run with other parameters.",
                  i = "Derive one from the run with {.fn yws_idempotency_token}."),
                class = "yws_run_mismatch", parent = e)
    })
  run <- structure(list(run_id = out$run_id, job_id = job_id, job = job, params = params,
                        batch_id = params$batch_id, run_page_url = NULL), class = "yws_run")
  if (!is.null(idempotency_token)) {
    # the run exists from here: Ctrl-C cancels it as it would during the wait
    status <- tryCatch(yws_run_status(run, host = host, token = token),
                       interrupt = function(cnd) {
                         interrupted(run, params$batch_id, host = host, token = token)
                       })
    check_run_matches(run, status)
    run$run_page_url <- status$run_page_url
  }
  run
}

#' Derive a run's idempotency token from everything that defines it
#'
#' The Jobs API returns the existing run when an idempotency token is reused, so a token must
#' differ whenever the run would: `yws_idempotency_token()` hashes (SHA-256) the job's name and
#' every job parameter (batch id, as-of date, model alias, ...) into 64 hexadecimal
#' characters, the API's limit. A retried call for the same run gets the same token; a batch
#' id reused for another date gets another.
#'
#' @param job The job's name.
#' @param params A named list of the job parameters sent with the run.
#' @return A string of 64 characters.
#' @examples
#' yws_idempotency_token("yws_score", list(as_of_date = "2026-11-30", batch_id = "b1"))
#' @export
yws_idempotency_token <- function(job, params) {
  params <- lapply(params, as.character)
  if (length(params) && (is.null(names(params)) || any(!nzchar(names(params))))) {
    yws_abort("{.arg params} must be a named list.", class = "yws_input_error")
  }
  params <- params[order(names(params))]
  # JSON, so no value can pass for a separator: {a = "1\nb=2"} and {a = "1", b = "2"} differ
  text <- jsonlite::toJSON(list(v = "yws-r-run/2", job = job, params = params),
                           auto_unbox = FALSE, null = "null")
  cli::hash_sha256(as.character(text))
}

check_token <- function(x) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x) || nchar(x) > 64) {
    yws_abort(c("{.arg idempotency_token} must be one string of 1 to 64 characters.",
                i = "Derive one with {.fn yws_idempotency_token}."),
              class = "yws_input_error")
  }
  x
}

# The run a token returned must be the run that was asked for.
check_run_matches <- function(run, status) {
  got <- status$job_parameters
  wrong <- Filter(function(name) !identical(got[[name]], run$params[[name]]),
                  names(run$params))
  other_job <- !is.null(status$job_id) && !isTRUE(all.equal(as.numeric(status$job_id),
                                                            as.numeric(run$job_id)))
  if (length(wrong) || other_job) {
    shown <- vapply(wrong, function(n) {
      sprintf("%s: asked %s, the run has %s", n, run$params[[n]], got[[n]] %||% "nothing")
    }, character(1))
    yws_abort(c(
      "Run {format(run$run_id, scientific = FALSE)} is not the run that was asked for.",
      x = if (other_job) "It belongs to job {status$job_id}, not {run$job_id}.",
      x = if (length(shown)) "{shown}",
      i = "Its idempotency token was used before for another run; use another token."),
      class = "yws_run_mismatch", run_id = run$run_id, asked = run$params, got = got)
  }
  invisible(run)
}

#' @export
print.yws_run <- function(x, ...) {
  cat("<yws_run> ", x$job, " run ", format(x$run_id, scientific = FALSE),
      if (!is.null(x$batch_id)) paste0(", batch ", x$batch_id), "\n", sep = "")
  if (!is.null(x$run_page_url)) cat("  ", x$run_page_url, "\n", sep = "")
  invisible(x)
}

yws_job_id <- function(job, host = NULL, token = NULL) {
  found <- yws_perform(yws_request("/api/2.2/jobs/list", query = list(name = job),
                                   host = host, token = token))
  exact <- Filter(function(j) identical(j$settings$name, job), found$jobs %||% list())
  if (length(exact) == 1) return(as.numeric(exact[[1]]$job_id))
  if (length(exact) > 1) {
    yws_abort(c("{length(exact)} jobs are named {.val {job}}.",
                i = "Candidates: {describe_jobs(exact)}.",
                i = "Rename or delete all but one."),
              class = "yws_job_not_found")
  }
  copies <- Filter(function(j) is_dev_copy(j, job), list_jobs(host = host, token = token))
  if (length(copies) > 1) {
    me <- tryCatch(yws_perform(yws_request("/api/2.0/preview/scim/v2/Me", host = host,
                                           token = token))$userName,
                   yws_error = function(e) NULL)
    mine <- Filter(function(j) !is.null(me) && identical(j$creator_user_name, me), copies)
    if (length(mine) == 1) return(as.numeric(mine[[1]]$job_id))
    yws_abort(c("No job is named {.val {job}} and {length(copies)} development copies are.",
                i = "Candidates: {describe_jobs(copies)}.",
                i = "Pass the full name of the one to run."),
              class = "yws_job_not_found")
  }
  if (length(copies) == 1) return(as.numeric(copies[[1]]$job_id))
  yws_abort(c("No job named {.val {job}} (nor a development copy {.val [dev <user>] {job}}).",
              i = "Deploy the bundle ({.code databricks bundle deploy}) or check the name."),
            class = "yws_job_not_found")
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
    yws_abort(c("Job {.val {job}} does not take the parameter{?s} {.val {unknown}}.",
                i = "Its parameters: {.val {defined}}.",
                i = "Catalog and schema are fixed by the bundle target, not chosen per run."),
              class = "yws_input_error")
  }
  invisible()
}

run_id_of <- function(run) {
  id <- if (inherits(run, "yws_run")) run$run_id else run
  if (length(id) != 1 || is.na(suppressWarnings(as.numeric(id)))) {
    yws_abort("{.arg run} must be a {.cls yws_run} or a run id.", class = "yws_input_error")
  }
  id
}

format_id <- function(id) format(as.numeric(id), scientific = FALSE)

#' @rdname yws_run_job
#' @param run A `yws_run` or a run id.
#' @export
yws_run_status <- function(run, host = NULL, token = NULL) {
  out <- yws_perform(yws_request("/api/2.2/jobs/runs/get",
                                 query = list(run_id = format_id(run_id_of(run))),
                                 host = host, token = token))
  life <- out$state$life_cycle_state %||% life_from_status(out$status)
  result <- out$state$result_state %||% result_from_status(out$status)
  params <- out$job_parameters %||% list()
  values <- lapply(params, function(p) as.character(p$value %||% p$default %||% ""))
  names(values) <- vapply(params, function(p) p$name %||% "", character(1))
  list(run_id = out$run_id, job_id = out$job_id, life_cycle_state = life,
       result_state = result,
       state_message = out$state$state_message %||%
         out$status$termination_details$message %||% "",
       run_page_url = out$run_page_url, job_parameters = values,
       tasks = out$tasks %||% list())
}

# The newer `status` form of the same state (Jobs API 2.2), for a server that sends only it.
life_from_status <- function(status) {
  state <- status$state
  if (is.null(state)) return(NULL)
  switch(state, WAITING = "WAITING_FOR_RETRY", state)
}

result_from_status <- function(status) {
  code <- status$termination_details$code
  if (!identical(status$state, "TERMINATED") || is.null(code)) return(NULL)
  switch(code, SUCCESS = "SUCCESS", USER_CANCELED = "CANCELED", CANCELED = "CANCELED",
         SKIPPED = "SKIPPED", "FAILED")
}

# The latest attempt of each task: a retried task is a separate task run (attempt_number).
latest_attempts <- function(tasks) {
  keys <- vapply(tasks, function(t) t$task_key %||% "", character(1))
  attempts <- vapply(tasks, function(t) as.numeric(t$attempt_number %||% 0), numeric(1))
  keep <- vapply(seq_along(tasks), function(i) {
    attempts[[i]] == max(attempts[keys == keys[[i]]])
  }, logical(1))
  tasks[keep]
}

# "score (attempt 2) RUNNING": what a progress line says about the tasks under way.
describe_tasks <- function(tasks) {
  active <- Filter(function(t) {
    !(t$state$life_cycle_state %||% "") %in% contract$run_end_states
  }, latest_attempts(tasks))
  started <- Filter(function(t) !identical(t$state$life_cycle_state, "PENDING"), active)
  if (!length(started)) return("")
  paste(vapply(started, function(t) {
    attempt <- as.numeric(t$attempt_number %||% 0)
    paste0(t$task_key, if (attempt > 0) paste0(" (retry ", attempt, ")"))
  }, character(1)), collapse = ", ")
}

#' @rdname yws_run_job
#' @param timeout Seconds to wait before giving up (the run is cancelled).
#' @param interval The longest wait between polls, in seconds. Polls start a quarter of a
#'   second apart, then wait a tenth of the time waited so far, up to `interval`: a short run
#'   returns within a few tenths of a second of its end, a long one is not asked about too
#'   often.
#' @export
yws_wait <- function(run, timeout = 3600, interval = 5, host = NULL, token = NULL) {
  local_deadline(timeout)
  id <- format_id(run_id_of(run))
  batch <- if (inherits(run, "yws_run")) run$batch_id
  seen <- new.env(parent = emptyenv())  # the last status read, for the interrupt handler
  on_interrupt <- function(cnd) {
    batch <- batch %||% seen$status$job_parameters$batch_id
    if (identical(batch, "")) batch <- NULL
    interrupted(run, batch, host = host, token = token)
  }
  status <- tryCatch(poll_run(run, id, batch, interval, host, token, seen),
                     interrupt = on_interrupt)
  if (!identical(status$result_state, contract$run_success_state)) {
    detail <- task_error(status, host = host, token = token)
    yws_abort(c("Run {id} ended {status$life_cycle_state} {status$result_state %||% ''}.",
                x = "{detail}"),
              class = "yws_run_failed", run_id = run_id_of(run),
              result_state = status$result_state, task_error = detail)
  }
  invisible(status)
}

poll_run <- function(run, id, batch, interval, host, token, seen) {
  ends <- contract$run_end_states
  started <- Sys.time()
  status <- seen$status <- yws_run_status(run, host = host, token = token)
  batch <- batch %||% status$job_parameters$batch_id
  if (identical(batch, "")) batch <- NULL
  if (!status$life_cycle_state %in% ends) {
    cli::cli_inform(c(i = paste0("Run {id}", if (!is.null(batch)) " (batch {.val {batch}})",
                                 if (!is.null(status$run_page_url)) ": {.url {status$run_page_url}}")))
  }
  line <- ""
  frame <- environment()  # where the progress line's {id} and {line} live
  bar <- cli::cli_progress_bar(format = "{cli::pb_spin} Run {id}: {line} [{cli::pb_elapsed}]",
                               total = NA, clear = TRUE)
  pause <- min(0.25, interval)
  while (!status$life_cycle_state %in% ends) {
    if (time_left() <= pause) run_timeout(run, id, batch, started, bar, host, token, frame)
    tasks <- describe_tasks(status$tasks)
    line <- paste0(status$life_cycle_state, if (nzchar(tasks)) paste0(" - ", tasks))
    cli::cli_progress_update(id = bar)
    Sys.sleep(pause)
    waited <- as.numeric(difftime(Sys.time(), started, units = "secs"))
    pause <- min(interval, max(0.25, waited / 10))
    status <- seen$status <- tryCatch(
      yws_run_status(run, host = host, token = token),
      yws_timeout = function(e) {
        # the call's deadline ran out during the poll itself: the run must not outlive it
        if (time_left() > 1) stop(e)
        run_timeout(run, id, batch, started, bar, host, token, frame)
      })
  }
  cli::cli_progress_done(id = bar)
  status
}

run_timeout <- function(run, id, batch, started, bar, host, token, frame) {
  cli::cli_progress_done(id = bar, .envir = frame, result = "failed")
  cancel_quietly(run, host = host, token = token)
  waited <- round(as.numeric(difftime(Sys.time(), started, units = "secs")))
  yws_abort(c("Run {id} did not end within the call's timeout ({waited} s); it was cancelled.",
              i = if (!is.null(batch)) "Batch: {.val {batch}}."),
            class = "yws_timeout", run_id = run_id_of(run), batch_id = batch, call = NULL)
}

# Ctrl-C while waiting: cancel the run (or leave it, by option) and say which run and batch.
interrupted <- function(run, batch, host = NULL, token = NULL) {
  id <- format_id(run_id_of(run))
  action <- getOption("yws.on_interrupt", "cancel")
  what <- paste0("run ", id, if (!is.null(batch)) paste0(", batch ", batch))
  if (identical(action, "detach")) {
    cli::cli_inform(c("!" = "Interrupted: {what} is still running.",
                      i = "Reattach with {.code yws_wait({id})}",
                      i = if (!is.null(batch)) "then read it with {.code yws_predictions(batch_id = \"{batch}\")}."))
  } else {
    cancelled <- cancel_quietly(run, host = host, token = token)
    if (cancelled) {
      cli::cli_inform(c("!" = "Interrupted: {what} was cancelled."))
    } else {
      cli::cli_inform(c("!" = "Interrupted: could not cancel {what}.",
                        i = "Cancel it with {.code yws_cancel({id})}."))
    }
  }
  rlang::interrupt()
}

cancel_quietly <- function(run, host = NULL, token = NULL) {
  old <- the$deadline
  the$deadline <- Sys.time() + 10  # the call's deadline may have passed: cancelling may not
  on.exit(the$deadline <- old)
  tryCatch({
    yws_cancel(run, host = host, token = token)
    TRUE
  }, yws_error = function(e) FALSE)
}

task_error <- function(status, host = NULL, token = NULL) {
  for (task in latest_attempts(status$tasks)) {
    if (!identical(task$state$result_state, contract$run_success_state) &&
        !is.null(task$run_id)) {
      out <- tryCatch(
        yws_perform(yws_request("/api/2.2/jobs/runs/get-output",
                                query = list(run_id = format_id(task$run_id)),
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
                          body = list(run_id = as.numeric(run_id_of(run))), host = host,
                          token = token))
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
