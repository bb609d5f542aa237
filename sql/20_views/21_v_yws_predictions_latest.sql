-- The latest official prediction per entity: from published batches scored by @champion only,
-- the newest as-of date, then the newest scoring time, then the greatest batch id, so ties are
-- broken the same way every time.
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_predictions_latest (
  entity_id COMMENT 'Entity key',
  as_of_date COMMENT 'Snapshot date of the latest prediction',
  batch_id COMMENT 'Batch of the latest prediction',
  probability COMMENT 'Predicted probability of the positive label',
  prediction COMMENT '1 when probability >= the model threshold',
  band COMMENT 'GREEN, YELLOW or RED',
  model_name COMMENT 'Registered model',
  model_version COMMENT 'Model version',
  scored_at COMMENT 'When the batch was scored (UTC)',
  reason_1 COMMENT 'Feature that raised the log-odds the most (feature=level for a category)',
  reason_1_contribution COMMENT 'Log-odds contribution of reason_1',
  reason_2 COMMENT 'Feature that raised the log-odds the second most (feature=level for a category)',
  reason_2_contribution COMMENT 'Log-odds contribution of reason_2',
  reason_3 COMMENT 'Feature that raised the log-odds the third most (feature=level for a category)',
  reason_3_contribution COMMENT 'Log-odds contribution of reason_3'
)
COMMENT 'YWS: the latest official (@champion) prediction for each entity'
AS SELECT entity_id, as_of_date, batch_id, probability, prediction, band, model_name,
          model_version, scored_at, reason_1, reason_1_contribution, reason_2,
          reason_2_contribution, reason_3, reason_3_contribution
FROM {{catalog}}.{{schema}}.v_yws_predictions
WHERE official
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY entity_id ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC) = 1;
