-- Drift of every published batch against the training baseline of the model version that scored
-- it: one row per batch and feature, plus __score__ (the predicted probability) and __bands__
-- (the band mix). Like the predictions views, only the published run of each batch shows; rows
-- of a failed or superseded run stay invisible. `yws monitor` and the R package's yws_drift()
-- read it; a Databricks SQL alert on it is in docs/operations.md ("Investigate drift").
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_drift (
  batch_id COMMENT 'Scoring batch',
  as_of_date COMMENT 'Snapshot date',
  feature COMMENT 'Feature; __score__ for the predicted probability, __bands__ for the band mix',
  kind COMMENT 'numeric, boolean, categorical, score or bands',
  status COMMENT 'OK, WARN, ALERT or NO_BASELINE (thresholds in docs/operations.md)',
  psi COMMENT 'Population stability index against the baseline; null without a baseline',
  null_rate COMMENT 'Share of the rows that are null',
  baseline_null_rate COMMENT 'Share of the held-out rows that were null',
  unseen_rate COMMENT 'Share of the rows whose level the model was not fitted on (categorical)',
  rows_counted COMMENT 'Rows counted: every row read for a feature, the rows scored for __score__ and __bands__',
  shares_json COMMENT 'JSON: cell labels and shares of rows, batch and baseline',
  model_name COMMENT 'Registered model',
  model_version COMMENT 'Model version whose baseline the batch is compared with',
  computed_at COMMENT 'When the batch was counted (UTC)',
  run_id COMMENT 'Scoring run that published the batch',
  model_alias COMMENT 'Alias the model was loaded by',
  official COMMENT 'TRUE when the deployment model ({{model}}) at @champion scored the batch'
)
COMMENT 'YWS drift per published batch and feature against the training baseline'
AS WITH published AS (
  SELECT run_id, model_alias, model_name
  FROM {{catalog}}.{{schema}}.yws_score_runs
  WHERE status = 'SUCCEEDED'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY batch_id ORDER BY ended_at DESC, run_id DESC) = 1
)
SELECT d.batch_id, d.as_of_date, d.feature, d.kind, d.status, d.psi, d.null_rate,
       d.baseline_null_rate, d.unseen_rate, d.rows_counted, d.shares_json, d.model_name,
       d.model_version, d.computed_at, d.run_id, r.model_alias,
       r.model_alias = 'champion' AND r.model_name = '{{catalog}}.{{schema}}.{{model}}'
         AS official
FROM {{catalog}}.{{schema}}.yws_drift AS d
JOIN published AS r ON d.run_id = r.run_id;
