-- Who may read and write what. Analysts and R users read the views only, never the base
-- tables. The jobs run as a service principal, named here by its application id (Unity Catalog
-- grants name a service principal so): it writes the tables, registers and loads the model and
-- uses the MLflow temp volume.
GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{analysts_group}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions_latest TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_warnings TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_score_runs TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_quarantine TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_drift TO `{{analysts_group}}`;
-- On-demand scoring through the Model Serving endpoint (30_functions/30_yws_score_row.sql).
GRANT EXECUTE ON FUNCTION {{catalog}}.{{schema}}.yws_score_row TO `{{analysts_group}}`;

GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{r_users_group}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions_latest TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_warnings TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_score_runs TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_quarantine TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_drift TO `{{r_users_group}}`;
-- R users fit their own models on the governed feature table, not a copy (yws_features(),
-- docs/r-models.md); analysts are not granted feature values.
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.yws_features TO `{{r_users_group}}`;
GRANT EXECUTE ON FUNCTION {{catalog}}.{{schema}}.yws_score_row TO `{{r_users_group}}`;
-- R models are uploaded to the r_models volume (06_r_models_volume.sql) with the Files API:
-- creating, replacing or deleting a file needs READ VOLUME and WRITE VOLUME.
GRANT READ VOLUME, WRITE VOLUME ON VOLUME {{catalog}}.{{schema}}.r_models TO `{{r_users_group}}`;

GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{jobs_principal}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;
-- Training registers {{catalog}}.{{schema}}.yws_lr. The principal that creates a registered
-- model owns it, and only its owner adds versions and moves the aliases.
GRANT CREATE MODEL ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;
-- Scoring loads the model, which needs EXECUTE on it. Granted on the schema (models inherit it)
-- because a grant on yws_lr itself fails until the first training run has created it.
GRANT EXECUTE ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_features TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_predictions TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_quarantine TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_score_runs TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_drift TO `{{jobs_principal}}`;
-- MLflow's SparkML temp files on serverless (05_mlflow_tmp_volume.sql).
GRANT READ VOLUME, WRITE VOLUME ON VOLUME {{catalog}}.{{schema}}.mlflow_tmp TO `{{jobs_principal}}`;
-- The registration job reads the R users' uploads; it never changes them.
GRANT READ VOLUME ON VOLUME {{catalog}}.{{schema}}.r_models TO `{{jobs_principal}}`;
