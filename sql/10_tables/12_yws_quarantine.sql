-- Quarantine: the input rows a scoring batch could not score, with the reason and the row itself.
CREATE TABLE IF NOT EXISTS {{catalog}}.{{schema}}.yws_quarantine (
  entity_id STRING COMMENT 'The entity key from the feature table, as text (may be null)',
  as_of_date DATE COMMENT 'The feature snapshot date',
  batch_id STRING NOT NULL COMMENT 'The scoring batch that set the row aside',
  run_id STRING NOT NULL COMMENT 'The scoring run that set the row aside (yws_score_runs.run_id)',
  reason STRING NOT NULL COMMENT 'Why the row was not scored; several reasons are joined by semicolons',
  record STRING NOT NULL COMMENT 'The whole input row as JSON, so nothing is lost',
  quarantined_at TIMESTAMP NOT NULL COMMENT 'When the row was set aside (UTC)'
)
USING DELTA
COMMENT 'YWS rows set aside by the score job, with the reason'
TBLPROPERTIES ('yws.owner' = '{{jobs_principal}}', 'yws.layer' = 'quarantine');
