-- Predictions: one row per entity and scoring run. Rows count only once their run is published
-- in yws_score_runs (the views join on run_id); a re-run of a batch supersedes the earlier run.
-- The reason codes (reason_1..3, each with its contribution; NULL past the row's positive
-- contributions, under `yws score --no-reasons`, or for a model that gives none, like an R glm)
-- came later: they are last and nullable, so an older table gains them.
CREATE TABLE IF NOT EXISTS {{catalog}}.{{schema}}.yws_predictions (
  entity_id STRING NOT NULL COMMENT 'The entity key from the feature table, as text',
  as_of_date DATE NOT NULL COMMENT 'The feature snapshot date that was scored',
  batch_id STRING NOT NULL COMMENT 'The scoring batch; a re-run of a batch supersedes its rows',
  run_id STRING NOT NULL COMMENT 'The scoring run that wrote the row (yws_score_runs.run_id)',
  probability DOUBLE NOT NULL COMMENT 'Predicted probability of the positive label',
  prediction INT NOT NULL COMMENT '1 when probability >= the model threshold, else 0',
  band STRING NOT NULL COMMENT 'GREEN, YELLOW or RED, from the probability bands of the spec',
  model_name STRING NOT NULL COMMENT 'Registered model (catalog.schema.model)',
  model_version INT NOT NULL COMMENT 'Registered model version that scored the row',
  scored_at TIMESTAMP NOT NULL COMMENT 'When the batch was scored (UTC)',
  reason_1 STRING COMMENT 'Feature that raised the log-odds the most (feature=level for a category)',
  reason_1_contribution DOUBLE COMMENT 'Its log-odds contribution: coefficient x (value - training mean)',
  reason_2 STRING COMMENT 'Feature that raised the log-odds the second most (feature=level for a category)',
  reason_2_contribution DOUBLE COMMENT 'Its log-odds contribution: coefficient x (value - training mean)',
  reason_3 STRING COMMENT 'Feature that raised the log-odds the third most (feature=level for a category)',
  reason_3_contribution DOUBLE COMMENT 'Its log-odds contribution: coefficient x (value - training mean)'
)
USING DELTA
COMMENT 'YWS predictions, written by the score job'
TBLPROPERTIES ('yws.owner' = '{{jobs_principal}}', 'yws.layer' = 'predictions');
