-- Who may read and write what. Analysts and R users read the views only, never the base
-- tables; the jobs' service principal writes the tables.
GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{analysts_group}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions_latest TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_warnings TO `{{analysts_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_score_runs TO `{{analysts_group}}`;

GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{r_users_group}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_predictions_latest TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_warnings TO `{{r_users_group}}`;
GRANT SELECT ON TABLE {{catalog}}.{{schema}}.v_yws_score_runs TO `{{r_users_group}}`;

GRANT USE CATALOG ON CATALOG {{catalog}} TO `{{jobs_principal}}`;
GRANT USE SCHEMA ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_features TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_predictions TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_quarantine TO `{{jobs_principal}}`;
GRANT SELECT, MODIFY ON TABLE {{catalog}}.{{schema}}.yws_score_runs TO `{{jobs_principal}}`;
