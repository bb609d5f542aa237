-- Drift: one row per scoring run and feature (and one for the score, one for the band mix),
-- comparing the batch with the training baseline logged with the model version (python/yws/
-- monitoring). Written by the score job before its run publishes and tagged with the run's id:
-- like predictions, a row counts only once its run is published in yws_score_runs (the view
-- v_yws_drift joins on run_id), and a run that fails or is superseded leaves none visible.
CREATE TABLE IF NOT EXISTS {{catalog}}.{{schema}}.yws_drift (
  run_id STRING NOT NULL COMMENT 'The scoring run that measured the row (yws_score_runs.run_id)',
  batch_id STRING NOT NULL COMMENT 'The scoring batch',
  as_of_date DATE NOT NULL COMMENT 'The feature snapshot date',
  model_name STRING NOT NULL COMMENT 'Registered model (catalog.schema.model)',
  model_version INT NOT NULL COMMENT 'Registered model version whose baseline the batch is compared with',
  feature STRING NOT NULL COMMENT 'The feature; __score__ for the predicted probability, __bands__ for the band mix',
  kind STRING NOT NULL COMMENT 'numeric, boolean, categorical, score or bands',
  rows_counted BIGINT NOT NULL COMMENT 'Rows counted: every row read for a feature (quarantined ones too), the rows scored for __score__ and __bands__',
  psi DOUBLE COMMENT 'Population stability index against the baseline (bins at the held-out deciles, or levels; nulls and unseen levels are cells of their own); null without a baseline',
  null_rate DOUBLE COMMENT 'Share of the rows counted that are null (or NaN)',
  baseline_null_rate DOUBLE COMMENT 'Share of the held-out rows that were null; null without a baseline',
  unseen_rate DOUBLE COMMENT 'Share of the rows counted whose level the model was not fitted on (categorical features only)',
  status STRING NOT NULL COMMENT 'OK, WARN or ALERT (the worst of the PSI, unseen-rate and null-rate thresholds, docs/operations.md), or NO_BASELINE',
  shares_json STRING NOT NULL COMMENT 'JSON: the cells (labels) and the share of rows in each, for the batch and the baseline; what yws monitor plots',
  computed_at TIMESTAMP NOT NULL COMMENT 'When the run counted the batch (UTC)'
)
USING DELTA
COMMENT 'YWS drift per batch and feature against the training baseline, written by the score job'
TBLPROPERTIES ('yws.owner' = '{{jobs_principal}}', 'yws.layer' = 'monitoring');
