-- The scoring audit: what the published run of each batch read, scored and set aside, with
-- which model, how long. One row per batch (runs a re-run superseded stay in the base table).
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_score_runs (
  run_id COMMENT 'Scoring run',
  batch_id COMMENT 'Scoring batch',
  as_of_date COMMENT 'Snapshot date',
  model_name COMMENT 'Registered model',
  model_alias COMMENT 'Alias the model was loaded by',
  model_version COMMENT 'Model version',
  rows_read COMMENT 'Rows in the snapshot',
  rows_scored COMMENT 'Rows written to the predictions table',
  rows_quarantined COMMENT 'Rows set aside',
  quarantine_rate COMMENT 'rows_quarantined / rows_read',
  started_at COMMENT 'Run start (UTC)',
  ended_at COMMENT 'Run end (UTC)',
  duration_seconds COMMENT 'Run duration in seconds',
  status COMMENT 'Run status',
  official COMMENT 'TRUE when the deployment model ({{model}}) at @champion scored the batch',
  features_version COMMENT 'Delta version of the feature table the run read (yws score --replay reads it again)',
  spec_hash COMMENT 'sha256 of the scoring spec the run used',
  engine COMMENT 'Scoring engine of the run',
  drift_status COMMENT 'Drift of the batch against the model version baseline: OK, WARN, ALERT or NO_BASELINE (details: v_yws_drift)',
  drift_worst_feature COMMENT 'The feature with the worst drift status, then the highest PSI',
  drift_worst_psi COMMENT 'That feature PSI against the baseline'
)
COMMENT 'YWS scoring runs: rows read, scored and quarantined, model version, duration'
AS SELECT run_id, batch_id, as_of_date, model_name, model_alias, model_version, rows_read,
          rows_scored, rows_quarantined,
          CASE WHEN rows_read = 0 THEN 0.0
               ELSE CAST(rows_quarantined AS DOUBLE) / rows_read END AS quarantine_rate,
          started_at, ended_at, duration_seconds, status,
          model_alias = 'champion' AND model_name = '{{catalog}}.{{schema}}.{{model}}'
            AS official,
          features_version, spec_hash, engine, drift_status, drift_worst_feature,
          drift_worst_psi
FROM {{catalog}}.{{schema}}.yws_score_runs
WHERE status = 'SUCCEEDED'
QUALIFY ROW_NUMBER() OVER (PARTITION BY batch_id ORDER BY ended_at DESC, run_id DESC) = 1;
