-- The scoring audit: what each run read, scored and set aside, with which model, how long.
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
  status COMMENT 'Run status'
)
COMMENT 'YWS scoring runs: rows read, scored and quarantined, model version, duration'
AS SELECT run_id, batch_id, as_of_date, model_name, model_alias, model_version, rows_read,
          rows_scored, rows_quarantined,
          CASE WHEN rows_read = 0 THEN 0.0
               ELSE CAST(rows_quarantined AS DOUBLE) / rows_read END AS quarantine_rate,
          started_at, ended_at, duration_seconds, status
FROM {{catalog}}.{{schema}}.yws_score_runs;
