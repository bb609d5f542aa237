#' Score with the YWS model and get the predictions
#'
#' Triggers the `yws_score` job for `as_of` with a batch id of its own, waits for it, and
#' returns that batch's predictions. With `wait = FALSE` it returns the run at once (a
#' `yws_run` carrying its `batch_id`); read the rows later with
#' `yws_predictions(batch_id = run$batch_id)`.
#'
#' @param as_of The snapshot date to score (a `Date` or `"YYYY-MM-DD"`).
#' @param entities Keep only these entity ids in the result (`NULL`: all).
#' @param wait Wait for the run and return the predictions.
#' @param via,con How to read the predictions; see [yws_predictions()].
#' @param timeout Seconds to wait for the run.
#' @param batch_id The batch id; generated when `NULL`.
#' @inheritParams yws_host
#' @return A data frame of predictions (see [yws_predictions()]), or a `yws_run`.
#' @examples
#' \dontrun{
#' preds <- yws_score(as_of = as.Date("2026-11-30"))
#' table(preds$band)
#' }
#' @export
yws_score <- function(as_of = Sys.Date(), entities = NULL, wait = TRUE,
                      via = c("sql", "odbc"), con = NULL, timeout = 3600, batch_id = NULL,
                      host = NULL, token = NULL) {
  via <- match.arg(via)
  as_of <- check_date(as_of)
  batch_id <- check_batch_id(batch_id %||% new_batch_id())
  params <- list(as_of_date = as_of, batch_id = batch_id)
  run <- yws_run_job("yws_score", params, idempotency_token = batch_id, host = host,
                     token = token)
  run$batch_id <- batch_id
  if (!wait) return(run)
  yws_wait(run, timeout = timeout, host = host, token = token)
  out <- yws_predictions(batch_id = batch_id, via = via, con = con, host = host, token = token)
  if (!is.null(entities)) out <- out[out$entity_id %in% as.character(entities), , drop = FALSE]
  rownames(out) <- NULL
  out
}

new_batch_id <- function() {
  paste0("r-", format(Sys.time(), "%Y%m%dT%H%M%S", tz = "UTC"), "-",
         paste(sample(c(0:9, letters[1:6]), 8, replace = TRUE), collapse = ""))
}
