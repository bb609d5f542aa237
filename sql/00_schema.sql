-- The schema that holds every YWS table and view. The catalog is created by the platform team.
CREATE SCHEMA IF NOT EXISTS {{catalog}}.{{schema}}
COMMENT 'Yellow Warning System: feature snapshots, predictions, quarantine and the scoring audit';
