-- The managed volume MLflow writes SparkML models through while logging and loading them on
-- serverless (dfs_tmpdir = /Volumes/<catalog>/<schema>/mlflow_tmp: serverless has no DBFS root).
-- It holds only temporary copies; the jobs' service principal reads and writes it
-- (90_grants.sql), nobody else needs it. The bundle's --dfs-tmpdir names this volume.
CREATE VOLUME IF NOT EXISTS {{catalog}}.{{schema}}.mlflow_tmp
COMMENT 'YWS: temporary files of MLflow SparkML model logging and loading (dfs_tmpdir); safe to empty';
