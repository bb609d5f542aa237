#' Score with the YWS model and get the predictions
#'
#' Triggers the `yws_score` job for `as_of` with a batch id of its own, waits for it, and
#' returns that batch's predictions. With `wait = FALSE` it returns the run at once (a
#' `yws_run` carrying its `batch_id`); read the rows later with
#' `yws_predictions(batch_id = run$batch_id)`.
#'
#' What can be checked is checked before the job starts: the arguments, the SQL warehouse
#' (`via = "sql"`) or the connection (`via = "odbc"`), and that the predictions view can be
#' read. The run's idempotency token is derived from the job and all its parameters (see
#' [yws_idempotency_token()]): a retried call returns the same run, and the same `batch_id`
#' for another date or alias starts another. What comes back is checked against what was
#' asked (the run's parameters, the rows' batch and as-of date); a mismatch raises
#' `yws_run_mismatch` rather than returning other data.
#'
#' `timeout` bounds the whole call, every request included. Interrupting the wait cancels
#' the run (see [yws_wait()] for the option that leaves it running). When the batch set rows
#' aside, a message says how many and how to see them ([yws_quarantine()]).
#'
#' @param as_of The snapshot date to score (a `Date` or `"YYYY-MM-DD"`).
#' @param entities Keep only these entity ids in the result (`NULL`: all).
#' @param wait Wait for the run and return the predictions.
#' @param via,con How to read the predictions; see [yws_predictions()].
#' @param timeout Seconds for the whole call: trigger, wait and read.
#' @param batch_id The batch id (1-128 characters); generated when `NULL`.
#' @param model_alias The registered model's alias to score with.
#' @param model Another registered model to score with, as `"catalog.schema.model@alias"`:
#'   for example your own glm registered with [yws_register_model()] and promoted with
#'   [yws_promote()] (`"yws_dev.ml.yws_glm_r@champion"`). It must be in the jobs' catalog and
#'   schema; its alias replaces `model_alias`. `NULL`: the deployment's model.
#' @inheritParams yws_predictions
#' @inheritParams yws_host
#' @return A tibble of predictions (see [yws_predictions()]), or a `yws_run`.
#' @examplesIf identical(Sys.getenv("YWS_EXAMPLES"), "true")
#' # needs a workspace or `yws up` (DATABRICKS_HOST, DATABRICKS_TOKEN)
#' preds <- yws_score(as_of = as.Date("2026-11-30"))
#' table(preds$band)
#' @export
yws_score <- function(as_of = Sys.Date(), entities = NULL, wait = TRUE,
                      via = c("sql", "odbc"), con = NULL, timeout = 3600, batch_id = NULL,
                      model_alias = "champion",
                      bigint = c("double", "integer64", "character"), host = NULL,
                      token = NULL, model = NULL) {
  via <- match.arg(via)
  bigint <- match.arg(bigint)
  local_deadline(timeout)
  as_of <- check_date(as_of)
  batch_id <- check_batch_id(batch_id %||% new_batch_id())
  model_alias <- check_alias(model_alias)
  model_name <- NULL
  if (!is.null(model)) {
    ref <- parse_model_ref(model, what = "model")
    if (is.null(ref$alias)) {
      yws_abort(c("{.arg model} must name an alias: the scoring job scores by alias.",
                  i = "Use {.val {ref$name}@champion}, or promote that version first."),
                class = "yws_input_error")
    }
    model_name <- ref$name
    model_alias <- ref$alias
  }
  yws_host(host)
  yws_token(token)
  if (wait) check_reader(via, con, host = host, token = token)
  params <- list(as_of_date = as_of, batch_id = batch_id, model_alias = model_alias)
  if (!is.null(model_name)) params$model_name <- model_name
  run <- yws_run_job("yws_score", params,
                     idempotency_token = yws_idempotency_token("yws_score", params),
                     host = host, token = token)
  if (!wait) return(run)
  yws_wait(run, timeout = time_left(), host = host, token = token)
  id <- format_id(run$run_id)
  out <- tryCatch(
    {
      cli::cli_progress_step("Reading batch {.val {batch_id}}")
      yws_predictions(batch_id = batch_id, via = via, con = con, bigint = bigint,
                      host = host, token = token)
    },
    interrupt = function(cnd) {
      cli::cli_inform(c("!" = "Interrupted while reading: run {id} succeeded.",
                        i = "Read it with {.code yws_predictions(batch_id = \"{batch_id}\")}."))
      rlang::interrupt()
    },
    yws_timeout = function(e) {
      yws_abort(c("Run {id} succeeded but its rows were not read within {timeout} s.",
                  i = "Read them with {.code yws_predictions(batch_id = \"{batch_id}\")}."),
                class = "yws_timeout", parent = e, run_id = run$run_id, batch_id = batch_id)
    })
  cli::cli_progress_done()
  check_rows(out, run, as_of, batch_id)
  report_quarantine(batch_id, via, con, host = host, token = token)
  if (!is.null(entities)) out <- out[out$entity_id %in% as.character(entities), , drop = FALSE]
  out
}

# Before the job starts: the warehouse exists, the connection is usable, the view is readable.
check_reader <- function(via, con, host = NULL, token = NULL) {
  table <- yws_table(contract$views[["predictions"]])
  probe <- paste0("SELECT * FROM ", table, " WHERE 1 = 0")
  if (via == "odbc") {
    check_con(con)
    odbc_query(con, probe)
  } else {
    yws_sql(probe, warehouse_id = yws_warehouse_id(host, token, check = TRUE), host = host,
            token = token)
  }
  invisible()
}

# The rows must be the batch and the date that were asked for.
check_rows <- function(out, run, as_of, batch_id) {
  dates <- unique(format(out$as_of_date))
  batches <- unique(out$batch_id)
  if (length(setdiff(dates, as_of)) || length(setdiff(batches, batch_id))) {
    yws_abort(c(
      "Run {format_id(run$run_id)} returned rows that were not asked for.",
      x = "Asked: batch {.val {batch_id}} for {as_of}; got batch{?es} {.val {batches}} for {.val {dates}}.",
      i = "Another run published this batch id; score again under a new {.arg batch_id}."),
      class = "yws_run_mismatch", run_id = run$run_id)
  }
  if (!nrow(out)) {
    cli::cli_warn("Run {format_id(run$run_id)} succeeded but batch {.val {batch_id}} has no rows.",
                  class = "yws_empty_batch")
  }
  invisible(out)
}

report_quarantine <- function(batch_id, via, con, host = NULL, token = NULL) {
  audit <- tryCatch({
    sql <- paste0("SELECT rows_read, rows_quarantined FROM ",
                  yws_table(contract$views[["score_runs"]]), " WHERE batch_id = :batch_id")
    read_query(sql, list(batch_id = batch_id), via = via, con = con, n_max = 1,
               host = host, token = token)
  }, yws_error = function(e) NULL)
  if (is.null(audit) || !nrow(audit)) return(invisible())
  n <- as.numeric(audit$rows_quarantined[[1]])
  if (!is.na(n) && n > 0) {
    read <- as.numeric(audit$rows_read[[1]])
    cli::cli_inform(c("!" = "{n} of {read} row{?s} of batch {.val {batch_id}} were quarantined (not scored).",
                      i = "See them with {.code yws_quarantine(\"{batch_id}\")}."),
                    class = "yws_quarantined_rows")
  }
  invisible(n)
}

# "r-<UTC time>-<8 hex>", from the clock, the process and a counter: never from R's random
# number generator, so the caller's .Random.seed is left as it was.
new_batch_id <- function() {
  the$batches <- (the$batches %||% 0) + 1
  now <- Sys.time()
  salt <- paste(format(as.numeric(now), digits = 17), Sys.getpid(), the$batches,
                Sys.info()[["nodename"]])
  paste0("r-", format(now, "%Y%m%dT%H%M%S", tz = "UTC"), "-",
         substr(cli::hash_sha256(salt), 1, 8))
}
