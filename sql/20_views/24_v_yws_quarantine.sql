-- The rows each published batch set aside, and why, for readers who may not see the base
-- tables (the R package's yws_quarantine()). Like the predictions views, only the published run
-- of each batch shows. The input row itself (yws_quarantine.record) is left out: it holds every
-- column of the feature table, which readers are not granted; the jobs principal reads it there.
CREATE OR REPLACE VIEW {{catalog}}.{{schema}}.v_yws_quarantine (
  entity_id COMMENT 'Entity key, as text (may be null)',
  as_of_date COMMENT 'Snapshot date',
  batch_id COMMENT 'Scoring batch',
  reason COMMENT 'Why the row was not scored; several reasons are joined by semicolons',
  quarantined_at COMMENT 'When the row was set aside (UTC)',
  run_id COMMENT 'Scoring run that published the batch'
)
COMMENT 'YWS rows set aside by the published run of each batch, with the reason'
AS WITH published AS (
  SELECT run_id
  FROM {{catalog}}.{{schema}}.yws_score_runs
  WHERE status = 'SUCCEEDED'
  QUALIFY ROW_NUMBER() OVER (PARTITION BY batch_id ORDER BY ended_at DESC, run_id DESC) = 1
)
SELECT q.entity_id, q.as_of_date, q.batch_id, q.reason, q.quarantined_at, q.run_id
FROM {{catalog}}.{{schema}}.yws_quarantine AS q
JOIN published AS r ON q.run_id = r.run_id;
