-- Entities whose latest official prediction (published, @champion) is YELLOW or RED, the model
-- version and batch that put them there, whether their previous official prediction (in the
-- order of v_yws_predictions_latest) was YELLOW or RED too, and why (reason_1..3 of the row).
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_warnings (
  entity_id COMMENT 'Entity key',
  band COMMENT 'YELLOW or RED',
  probability COMMENT 'Predicted probability of the positive label',
  as_of_date COMMENT 'Snapshot date of the warning',
  batch_id COMMENT 'Batch that raised the warning',
  model_name COMMENT 'Registered model',
  model_version COMMENT 'Model version that raised the warning',
  scored_at COMMENT 'When the batch was scored (UTC)',
  previous_batch_id COMMENT 'Previous batch of the entity, if any',
  previous_band COMMENT 'Band of the entity in that batch, if any',
  already_flagged COMMENT 'TRUE when the previous band was YELLOW or RED too',
  reason_1 COMMENT 'Feature that raised the log-odds the most (feature=level for a category)',
  reason_1_contribution COMMENT 'Log-odds contribution of reason_1',
  reason_2 COMMENT 'Feature that raised the log-odds the second most (feature=level for a category)',
  reason_2_contribution COMMENT 'Log-odds contribution of reason_2',
  reason_3 COMMENT 'Feature that raised the log-odds the third most (feature=level for a category)',
  reason_3_contribution COMMENT 'Log-odds contribution of reason_3'
)
COMMENT 'YWS: entities now in YELLOW or RED'
AS WITH ordered AS (
  SELECT entity_id, band, probability, as_of_date, batch_id, model_name, model_version,
         scored_at, reason_1, reason_1_contribution, reason_2, reason_2_contribution, reason_3,
         reason_3_contribution,
         ROW_NUMBER() OVER (PARTITION BY entity_id
                            ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC) AS recency,
         LEAD(batch_id) OVER (PARTITION BY entity_id
                              ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC)
           AS previous_batch_id,
         LEAD(band) OVER (PARTITION BY entity_id
                          ORDER BY as_of_date DESC, scored_at DESC, batch_id DESC)
           AS previous_band
  FROM {{catalog}}.{{schema}}.v_yws_predictions
  WHERE official
)
SELECT entity_id, band, probability, as_of_date, batch_id, model_name, model_version,
       scored_at, previous_batch_id, previous_band,
       COALESCE(previous_band IN ('YELLOW', 'RED'), FALSE) AS already_flagged,
       reason_1, reason_1_contribution, reason_2, reason_2_contribution, reason_3,
       reason_3_contribution
FROM ordered
WHERE recency = 1 AND band IN ('YELLOW', 'RED');
