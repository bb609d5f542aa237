-- Every prediction of every published batch, for readers who may not see the base tables (the
-- R package reads one batch from here after it triggers a score run). A row shows only once its
-- run is the published run of its batch in yws_score_runs: rows of a run that failed, was
-- killed or was superseded by a re-run stay invisible. Batches scored by another alias than
-- @champion are here too, with official = FALSE; the latest and warnings views leave them out.
-- So are batches of another registered model (an R user's glm scored with yws_score(model =)):
-- only the deployment's model ({{model}}) at @champion makes a batch official. Each row's
-- reason codes (reason_1..3: the features that raised its log-odds most) come last.
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_predictions (
  entity_id COMMENT 'Entity key',
  as_of_date COMMENT 'Snapshot date that was scored',
  batch_id COMMENT 'Scoring batch',
  probability COMMENT 'Predicted probability of the positive label',
  prediction COMMENT '1 when probability >= the model threshold',
  band COMMENT 'GREEN, YELLOW or RED',
  model_name COMMENT 'Registered model',
  model_version COMMENT 'Model version',
  scored_at COMMENT 'When the batch was scored (UTC)',
  run_id COMMENT 'Scoring run that published the batch',
  model_alias COMMENT 'Alias the model was loaded by',
  official COMMENT 'TRUE when the deployment model ({{model}}) at @champion scored the batch',
  reason_1 COMMENT 'Feature that raised the log-odds the most (feature=level for a category)',
  reason_1_contribution COMMENT 'Log-odds contribution of reason_1',
  reason_2 COMMENT 'Feature that raised the log-odds the second most (feature=level for a category)',
  reason_2_contribution COMMENT 'Log-odds contribution of reason_2',
  reason_3 COMMENT 'Feature that raised the log-odds the third most (feature=level for a category)',
  reason_3_contribution COMMENT 'Log-odds contribution of reason_3'
)
COMMENT 'YWS predictions of every published batch'
AS WITH published AS (
  SELECT run_id, model_alias, model_name
  FROM {{catalog}}.{{schema}}.yws_score_runs
  WHERE status = 'SUCCEEDED'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY batch_id ORDER BY ended_at DESC, run_id DESC) = 1
)
SELECT p.entity_id, p.as_of_date, p.batch_id, p.probability, p.prediction, p.band,
       p.model_name, p.model_version, p.scored_at, p.run_id, r.model_alias,
       r.model_alias = 'champion' AND r.model_name = '{{catalog}}.{{schema}}.{{model}}'
         AS official,
       p.reason_1, p.reason_1_contribution, p.reason_2, p.reason_2_contribution, p.reason_3,
       p.reason_3_contribution
FROM {{catalog}}.{{schema}}.yws_predictions AS p
JOIN published AS r ON p.run_id = r.run_id;
