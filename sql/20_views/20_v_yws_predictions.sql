-- Every prediction of every batch, for readers who may not see the base table (the R package
-- reads one batch from here after it triggers a score run).
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_predictions (
  entity_id COMMENT 'Entity key',
  as_of_date COMMENT 'Snapshot date that was scored',
  batch_id COMMENT 'Scoring batch',
  probability COMMENT 'Predicted probability of the positive label',
  prediction COMMENT '1 when probability >= the model threshold',
  band COMMENT 'GREEN, YELLOW or RED',
  model_name COMMENT 'Registered model',
  model_version COMMENT 'Model version',
  scored_at COMMENT 'When the batch was scored (UTC)'
)
COMMENT 'YWS predictions of every batch'
AS SELECT entity_id, as_of_date, batch_id, probability, prediction, band, model_name,
          model_version, scored_at
FROM {{catalog}}.{{schema}}.yws_predictions;
