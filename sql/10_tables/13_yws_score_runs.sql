-- Score runs: one row per published scoring run, the audit of what was read and written. The
-- row is the run's commit point: it is written last, in one commit that also marks the batch's
-- earlier run SUPERSEDED, so a run that fails or dies before it leaves nothing that readers see.
CREATE TABLE IF NOT EXISTS {{catalog}}.{{schema}}.yws_score_runs (
  run_id STRING NOT NULL COMMENT 'Unique id of this scoring run',
  batch_id STRING NOT NULL COMMENT 'The scoring batch',
  as_of_date DATE NOT NULL COMMENT 'The feature snapshot date',
  model_name STRING NOT NULL COMMENT 'Registered model (catalog.schema.model)',
  model_alias STRING NOT NULL COMMENT 'The alias the model was loaded by',
  model_version INT NOT NULL COMMENT 'Registered model version',
  rows_read BIGINT NOT NULL COMMENT 'Rows in the snapshot',
  rows_scored BIGINT NOT NULL COMMENT 'Rows written to the predictions table',
  rows_quarantined BIGINT NOT NULL COMMENT 'Rows written to the quarantine table',
  started_at TIMESTAMP NOT NULL COMMENT 'Run start (UTC)',
  ended_at TIMESTAMP NOT NULL COMMENT 'Run end (UTC)',
  duration_seconds DOUBLE NOT NULL COMMENT 'ended_at - started_at in seconds',
  status STRING NOT NULL COMMENT 'SUCCEEDED: the published run of the batch; SUPERSEDED: a later run of the batch replaced it',
  superseded_by STRING COMMENT 'The run that superseded this one, when status is SUPERSEDED',
  features_version BIGINT COMMENT 'Delta version of the feature table the run read (replay reads it again: VERSION AS OF); NULL for runs of releases before it was recorded',
  spec_hash STRING COMMENT 'sha256 of the scoring spec (canonical JSON of its parsed content); NULL for runs of older releases',
  engine STRING COMMENT 'Scoring engine that computed the probabilities (arrow, spark, ...); NULL for runs of older releases',
  drift_status STRING COMMENT 'Drift of the batch against the model version baseline (yws_drift): OK, WARN, ALERT or NO_BASELINE; NULL for runs of older releases',
  drift_worst_feature STRING COMMENT 'The feature with the worst drift status, then the highest PSI; NULL without a baseline',
  drift_worst_psi DOUBLE COMMENT 'That feature PSI against the baseline; NULL without a baseline'
)
USING DELTA
COMMENT 'YWS scoring audit: one row per run'
TBLPROPERTIES ('yws.owner' = '{{jobs_principal}}', 'yws.layer' = 'audit');
