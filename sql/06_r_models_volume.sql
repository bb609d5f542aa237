-- The managed volume R users upload a model's JSON description to, through the Files API
-- (PUT /api/2.0/fs/files/Volumes/<catalog>/<schema>/r_models/...), before they trigger the job
-- that registers it: the job reads the file at /Volumes/<catalog>/<schema>/r_models/...
-- (a FUSE mount on serverless; $YWS_HOME/volumes/... under `yws serve`). R users read and write
-- it, the jobs' service principal reads it (90_grants.sql). A file holds a model's export only:
-- coefficients, terms and levels, never rows of data.
CREATE VOLUME IF NOT EXISTS {{catalog}}.{{schema}}.r_models
COMMENT 'YWS: R models (glm exports as JSON) uploaded by R users for the registration job to read';
