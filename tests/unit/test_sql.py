from __future__ import annotations

import datetime as dt
import json
import shutil

import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from yws.config import Settings, SettingsError
from yws.contract.sqlfiles import (
    APPLIES_TO,
    Grant,
    SqlFileError,
    Statement,
    describe,
    files,
    parse_grant,
    sql_dir,
    statements,
)
from yws.contract.tables import PREDICTIONS, QUARANTINE, SCORE_RUNS, arrow_schema
from yws.scoring.results import read_predictions
from yws.storage.local import LocalStorage
from yws.warehouse import QueryError, WarehouseError
from yws.warehouse.local import LocalWarehouse

VIEWS = ["v_yws_predictions", "v_yws_predictions_latest", "v_yws_warnings", "v_yws_score_runs",
         "v_yws_quarantine", "v_yws_drift"]
TABLES = ["yws_features", "yws_predictions", "yws_quarantine", "yws_score_runs", "yws_drift"]
T0 = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)


def test_every_file_parses_starts_with_a_comment_and_comments_every_column():
    stmts = statements(Settings())
    for path in files():
        assert path.read_text().startswith("-- "), path
    for stmt in stmts:
        tree = stmt.parse()
        assert tree is not None
        if isinstance(tree, exp.Create) and str(tree.args["kind"]) in ("TABLE", "VIEW"):
            props = tree.args["properties"].expressions
            assert any(isinstance(p, exp.SchemaCommentProperty) for p in props), stmt.where
            for col in tree.this.expressions:
                assert any(isinstance(c.args.get("kind"), exp.CommentColumnConstraint)
                           for c in col.args.get("constraints", [])), f"{stmt.where} {col.name}"
        if describe(stmt).kind == "VOLUME":  # sqlglot keeps CREATE VOLUME as a command
            assert "\nCOMMENT '" in stmt.text, stmt.where
    kinds = [describe(s).kind for s in stmts if s.text.startswith("CREATE")]
    assert kinds == ["SCHEMA", "VOLUME", "VOLUME"] + ["TABLE"] * 5 + ["VIEW"] * 6 + ["FUNCTION"]
    names = [p.relative_to(sql_dir()).as_posix() for p in files()]
    assert names == sorted(names) and names[0] == "00_schema.sql" and names[-1] == "90_grants.sql"


def test_catalog_schema_and_principals_are_parameters():
    s = Settings(catalog="yws_prod", schema="risk", analysts_group="risk-analysts@corp",
                 r_users_group="r_team", jobs_principal="6f1e-9a0b")
    text = "\n".join(st.text for st in statements(s))
    assert "yws_dev" not in text and "yws_analysts" not in text
    assert "yws_prod.risk.v_yws_warnings" in text and "`risk-analysts@corp`" in text
    with pytest.raises(SettingsError, match="not a valid principal"):
        statements(Settings(analysts_group="a`; DROP TABLE x; --"))


def test_grants_parse_into_principal_privilege_object():
    s = Settings()
    grants: set[Grant] = set()
    for stmt in statements(s):
        if stmt.text.startswith("GRANT"):
            verb, found = parse_grant(stmt)
            assert verb == "GRANT"
            grants.update(found)
    readers = {"yws_analysts", "yws_r_users"}
    for group in readers:
        selects = {g.securable for g in grants if g.principal == group and
                   g.privilege == "SELECT"}
        # R users also read the features they fit their own models on (yws_features(),
        # issue 17); analysts only the views
        features = {"yws_dev.ml.yws_features"} if group == "yws_r_users" else set()
        assert selects == {f"yws_dev.ml.{v}" for v in VIEWS} | features, group
        # views (and that): nothing else on a base table, and nothing but SELECT / USE, and
        # EXECUTE on the on-demand scoring function (ai_query through the Model Serving
        # endpoint)
        assert {g.securable for g in grants if g.principal == group and
                g.securable.split(".")[-1] in TABLES} == features
        volume = {"READ VOLUME", "WRITE VOLUME"} if group == "yws_r_users" else set()
        assert {g.privilege for g in grants if g.principal == group} == {
            "SELECT", "USE CATALOG", "USE SCHEMA", "EXECUTE", *volume}
        assert {(g.securable_type, g.securable) for g in grants
                if g.principal == group and g.privilege == "EXECUTE"} == {
            ("FUNCTION", "yws_dev.ml.yws_score_row")}
    modify = {g.securable for g in grants if g.privilege == "MODIFY"}
    assert modify == {f"yws_dev.ml.{t}" for t in TABLES}
    assert {g.principal for g in grants if g.privilege == "MODIFY"} == {"yws_jobs"}
    # The jobs' principal registers the model (CREATE MODEL), loads it (EXECUTE, inherited
    # from the schema by the model) and writes MLflow's SparkML temp files to the volume.
    jobs = {(g.privilege, g.securable_type, g.securable) for g in grants
            if g.principal == "yws_jobs" and g.securable_type in ("SCHEMA", "VOLUME")}
    assert jobs == {("USE SCHEMA", "SCHEMA", "yws_dev.ml"),
                    ("CREATE MODEL", "SCHEMA", "yws_dev.ml"),
                    ("EXECUTE", "SCHEMA", "yws_dev.ml"),
                    ("READ VOLUME", "VOLUME", "yws_dev.ml.mlflow_tmp"),
                    ("WRITE VOLUME", "VOLUME", "yws_dev.ml.mlflow_tmp"),
                    ("READ VOLUME", "VOLUME", "yws_dev.ml.r_models")}
    # R users upload R models to r_models (the Files API), and touch no other volume; the jobs
    # only read it. Analysts have no volume at all.
    assert {(g.principal, g.privilege, g.securable) for g in grants
            if g.principal in readers and g.securable_type == "VOLUME"} == {
        ("yws_r_users", "READ VOLUME", "yws_dev.ml.r_models"),
        ("yws_r_users", "WRITE VOLUME", "yws_dev.ml.r_models")}


@pytest.mark.parametrize(("text", "found"), [
    # Syntax of the Databricks SQL reference: GRANT privilege_types ON securable_object TO
    # principal; privileges of the Unity Catalog privileges reference.
    ("GRANT CREATE MODEL ON SCHEMA c.s TO `6f1e2c3d-4b5a-4978-8899-aabbccddeeff`",
     [Grant("6f1e2c3d-4b5a-4978-8899-aabbccddeeff", "CREATE MODEL", "SCHEMA", "c.s")]),
    ("GRANT EXECUTE ON FUNCTION c.s.yws_lr TO `yws_jobs`",  # a registered model
     [Grant("yws_jobs", "EXECUTE", "FUNCTION", "c.s.yws_lr")]),
    ("GRANT READ VOLUME, WRITE VOLUME ON VOLUME c.s.mlflow_tmp TO `yws_jobs`",
     [Grant("yws_jobs", "READ VOLUME", "VOLUME", "c.s.mlflow_tmp"),
      Grant("yws_jobs", "WRITE VOLUME", "VOLUME", "c.s.mlflow_tmp")]),
    ("REVOKE  create   volume ON CATALOG c FROM `g`",
     [Grant("g", "CREATE VOLUME", "CATALOG", "c")]),
])
def test_model_and_volume_grants_parse(text, found):
    verb, grants = parse_grant(Statement("90_x.sql", 1, text))
    assert verb == text.split()[0] and grants == found


@pytest.mark.parametrize(("text", "message"), [
    ("GRANT CREATE MODLE ON SCHEMA c.s TO `g`", "unknown privilege 'CREATE MODLE'"),
    ("GRANT WRITE VOLUME ON TABLE c.s.t TO `g`", "WRITE VOLUME does not apply to a table"),
    ("GRANT CREATE MODEL ON VOLUME c.s.v TO `g`", "CREATE MODEL does not apply to a volume"),
    ("GRANT SELECT ON MODEL c.s.m TO `g`", "unknown securable type MODEL"),
    ("GRANT EXECUTE ON VOLUME c.s TO `g`", "VOLUME c.s should have 3 name part"),
])
def test_grants_that_unity_catalog_would_refuse_are_refused_first(text, message):
    with pytest.raises(SqlFileError, match=message):
        parse_grant(Statement("90_x.sql", 1, text))
    assert "EXECUTE" in APPLIES_TO["FUNCTION"] and "READ VOLUME" in APPLIES_TO["SCHEMA"]


def test_apply_twice_from_an_empty_warehouse(settings):
    wh = LocalWarehouse(settings)
    first = wh.apply(statements(settings))
    assert [s.action for s in first if s.kind == "TABLE"] == ["created"] * 5
    state = json.loads(wh.state_path.read_text())
    again = wh.apply(statements(settings))
    assert [s.action for s in again if s.kind == "TABLE"] == ["exists"] * 5
    assert [(s.kind, s.object) for s in again] == [(s.kind, s.object) for s in first]
    state2 = json.loads(wh.state_path.read_text())
    assert state2["grants"] == state["grants"] and len(state2["grants"]) == 38
    # A volume has no DuckDB counterpart: recorded, so grants on it are checked and kept.
    assert state2["volumes"] == ["yws_dev.ml.mlflow_tmp", "yws_dev.ml.r_models"]
    assert [(s.kind, s.action) for s in again if s.kind == "VOLUME"] == [
        ("VOLUME", "recorded (no DuckDB equivalent)")] * 2
    assert Grant("yws_jobs", "WRITE VOLUME", "VOLUME", "yws_dev.ml.mlflow_tmp") in wh.grants()
    assert Grant("yws_jobs", "CREATE MODEL", "SCHEMA", "yws_dev.ml") in wh.grants()
    storage = LocalStorage(settings)
    assert storage.list_tables() == sorted(f"yws_dev.ml.{t}" for t in TABLES)
    for view in VIEWS:
        assert wh.query(f"SELECT * FROM yws_dev.ml.{view}").num_rows == 0
    assert sorted(wh.grants()) == sorted(Grant(**g) for g in state["grants"])


def _prediction(entity, batch, as_of, band, p, scored, version=1, run=None):
    return {"entity_id": entity, "as_of_date": as_of, "batch_id": batch,
            "run_id": run or "r" + batch[1:], "probability": p,
            "prediction": int(p >= 0.5), "band": band, "model_name": "yws_dev.ml.yws_lr",
            "model_version": version, "scored_at": scored}


def _run(run_id, batch, as_of, ended, alias="champion", status="SUCCEEDED", scored=3,
         quarantined=1, model="yws_dev.ml.yws_lr"):
    return {"run_id": run_id, "batch_id": batch, "as_of_date": as_of, "model_name": model,
            "model_alias": alias, "model_version": 1, "rows_read": scored + quarantined,
            "rows_scored": scored, "rows_quarantined": quarantined,
            "started_at": ended - dt.timedelta(seconds=5), "ended_at": ended,
            "duration_seconds": 5.0, "status": status, "superseded_by": None}


@pytest.fixture
def views_home(settings):
    """Predictions with history, ties and re-flags; runs with a zero-row run; and rows no reader
    may see: a run that never published, a superseded run, a non-champion batch (visible in
    v_yws_predictions only, marked). Returns the settings, the official rows and all rows."""
    d1, d2, d3 = dt.date(2026, 10, 1), dt.date(2026, 11, 1), dt.date(2026, 11, 15)
    t2 = T0 + dt.timedelta(days=31)
    rows = [
        _prediction("A", "b1", d1, "GREEN", 0.05, T0),
        _prediction("A", "b2", d2, "RED", 0.70, t2, 2),
        _prediction("B", "b1", d1, "YELLOW", 0.20, T0),
        _prediction("B", "b2", d2, "YELLOW", 0.25, t2, 2),
        # C: two batches for the same date and time; the greater batch id wins the tie
        _prediction("C", "b2", d2, "GREEN", 0.10, t2, 2),
        _prediction("C", "b3", d2, "RED", 0.45, t2, 2),
        _prediction("D", "b1", d1, "RED", 0.60, T0),  # only ever scored once
        _prediction("E", "b2", d2, "GREEN", 0.01, t2, 2),
    ]
    hidden = [
        _prediction("A", "b9", d3, "GREEN", 0.01, t2, 2, run="r9"),  # never published
        _prediction("D", "b1", d1, "GREEN", 0.02, T0, run="r1-old"),  # superseded by r1
        _prediction("E", "bc", d3, "RED", 0.90, t2, 3, run="rc"),  # scored by @challenger
        # scored by another model's @champion (an R user's glm, yws_score(model =)): not official
        _prediction("B", "br", d3, "RED", 0.95, t2, 1, run="rr"),
    ]
    storage = LocalStorage(settings)
    storage.write(pa.Table.from_pylist(rows + hidden, schema=arrow_schema(PREDICTIONS)),
                  settings.predictions, mode="overwrite")
    runs = [
        _run("r1", "b1", d1, T0 + dt.timedelta(seconds=5)),
        _run("r0", "b0", d1, T0, scored=0, quarantined=0),
        {**_run("r2", "b2", d2, t2, scored=5, quarantined=0), "drift_status": "ALERT",
         "drift_worst_feature": "balance_utilization", "drift_worst_psi": 0.31},
        _run("r3", "b3", d2, t2, scored=1, quarantined=0),
        _run("r1-old", "b1", d1, T0, status="SUPERSEDED"),
        _run("rc", "bc", d3, t2, alias="challenger", scored=1, quarantined=0),
        _run("rr", "br", d3, t2, scored=1, quarantined=0, model="yws_dev.ml.yws_glm_r"),
    ]
    storage.write(pa.Table.from_pylist(runs, schema=arrow_schema(SCORE_RUNS)),
                  settings.score_runs, mode="overwrite")
    LocalWarehouse(settings).apply(statements(settings))
    return settings, pd.DataFrame(rows), pd.DataFrame(rows + hidden)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["entity_id", "as_of_date", "scored_at", "batch_id"],
                          ascending=[True, False, False, False])


def test_latest_view_equals_pandas(views_home):
    settings, df, _ = views_home
    expected = _ordered(df).groupby("entity_id", as_index=False).head(1)
    got = read_predictions(settings, view="latest").to_pandas()
    assert got[["entity_id", "batch_id", "band"]].values.tolist() == \
        expected.sort_values("entity_id")[["entity_id", "batch_id", "band"]].values.tolist()
    assert dict(zip(got.entity_id, got.batch_id, strict=True))["C"] == "b3"  # the tie


def test_warnings_view_equals_pandas(views_home):
    settings, df, _ = views_home
    ordered = _ordered(df)
    latest = ordered.groupby("entity_id").head(1).set_index("entity_id")
    previous = ordered.groupby("entity_id").nth(1).set_index("entity_id")
    expected = []
    for entity, row in latest.sort_index().iterrows():
        if row.band in ("YELLOW", "RED"):
            prev_band = previous.band.get(entity)
            expected.append((entity, row.band, row.batch_id, previous.batch_id.get(entity),
                             prev_band, prev_band in ("YELLOW", "RED")))
    wh = LocalWarehouse(settings)
    got = wh.query("SELECT entity_id, band, batch_id, previous_batch_id, previous_band, "
                   "already_flagged FROM yws_dev.ml.v_yws_warnings ORDER BY entity_id")
    assert [tuple(r.values()) for r in got.to_pylist()] == expected
    assert expected == [("A", "RED", "b2", "b1", "GREEN", False),
                        ("B", "YELLOW", "b2", "b1", "YELLOW", True),
                        ("C", "RED", "b3", "b2", "GREEN", False),
                        ("D", "RED", "b1", None, None, False)]


def test_score_runs_view_and_filters(views_home):
    settings, df, _ = views_home
    wh = LocalWarehouse(settings)
    runs = wh.query("SELECT run_id, quarantine_rate, official FROM yws_dev.ml.v_yws_score_runs "
                    "ORDER BY run_id").to_pylist()
    assert runs == [{"run_id": "r0", "quarantine_rate": 0.0, "official": True},
                    {"run_id": "r1", "quarantine_rate": 0.25, "official": True},
                    {"run_id": "r2", "quarantine_rate": 0.0, "official": True},
                    {"run_id": "r3", "quarantine_rate": 0.0, "official": True},
                    {"run_id": "rc", "quarantine_rate": 0.0, "official": False},
                    # @champion of another model than the deployment's: not official
                    {"run_id": "rr", "quarantine_rate": 0.0, "official": False}]
    # the audit row's drift summary, for whoever reads runs in SQL (details: v_yws_drift)
    drift = wh.query("SELECT batch_id, drift_status, drift_worst_feature, drift_worst_psi FROM "
                     "yws_dev.ml.v_yws_score_runs WHERE batch_id IN ('b1', 'b2') "
                     "ORDER BY batch_id").to_pylist()
    assert drift == [{"batch_id": "b1", "drift_status": None, "drift_worst_feature": None,
                      "drift_worst_psi": None},
                     {"batch_id": "b2", "drift_status": "ALERT",
                      "drift_worst_feature": "balance_utilization", "drift_worst_psi": 0.31}]
    got = read_predictions(settings, batch_id="b2", bands=["red", "YELLOW"]).to_pandas()
    want = df[(df.batch_id == "b2") & df.band.isin(["RED", "YELLOW"])]
    assert sorted(got.entity_id) == sorted(want.entity_id)
    got = read_predictions(settings, as_of="2026-10-01")
    assert got.num_rows == int((df.as_of_date == dt.date(2026, 10, 1)).sum())
    with pytest.raises(QueryError, match="bands must be some of"):
        read_predictions(settings, bands=["PURPLE"])


def test_readers_see_published_runs_only_and_non_champion_batches_marked(views_home):
    settings, df, everything = views_home
    wh = LocalWarehouse(settings)
    got = wh.query("SELECT entity_id, batch_id, run_id, official FROM yws_dev.ml.v_yws_predictions "
                   "ORDER BY batch_id, entity_id").to_pylist()
    expected = sorted([(r.entity_id, r.batch_id, "r" + r.batch_id[1:], True)
                       for r in df.itertuples()] + [("E", "bc", "rc", False),
                                                    ("B", "br", "rr", False)],
                      key=lambda t: (t[1], t[0]))
    assert [tuple(r.values()) for r in got] == expected
    assert len(everything) == len(got) + 2  # the unpublished and the superseded rows
    for view in ("v_yws_predictions_latest", "v_yws_warnings"):
        batches = wh.query(f"SELECT DISTINCT batch_id FROM yws_dev.ml.{view}").column(0)
        assert not {"b9", "bc", "br"} & set(batches.to_pylist()), view
    assert read_predictions(settings, batch_id="b9").num_rows == 0


@pytest.mark.parametrize("evil", [
    "x'; DROP TABLE yws_dev.ml.yws_predictions; --",
    "b2' OR '1'='1",
    "b2\\' OR 1=1 --",
])
def test_parameters_withstand_injection(views_home, evil):
    settings, _, everything = views_home
    wh = LocalWarehouse(settings)
    got = wh.query("SELECT count(*) AS n FROM yws_dev.ml.v_yws_predictions "
                   "WHERE batch_id = :b", {"b": evil})
    assert got.to_pylist() == [{"n": 0}]
    assert read_predictions(settings, batch_id=evil).num_rows == 0
    assert wh.query("SELECT count(*) AS n FROM yws_dev.ml.yws_predictions").to_pylist() == [
        {"n": len(everything)}]


def test_query_errors(views_home):
    settings, _, _ = views_home
    wh = LocalWarehouse(settings)
    with pytest.raises(QueryError, match=":b are not bound: pass --param b=VALUE"):
        wh.query("SELECT * FROM yws_dev.ml.v_yws_predictions WHERE batch_id = :b")
    with pytest.raises(QueryError, match="unknown parameter\\(s\\) c: the statement uses :b"):
        wh.query("SELECT * FROM yws_dev.ml.v_yws_predictions WHERE batch_id = :b",
                 {"b": "1", "c": "2"})
    with pytest.raises(QueryError, match="only queries"):
        wh.query("DELETE FROM yws_dev.ml.yws_predictions")
    with pytest.raises(QueryError, match="one statement at a time"):
        wh.query("SELECT 1; SELECT 2")
    with pytest.raises(QueryError, match="Permission Error"):
        wh.query("SELECT * FROM read_csv('/etc/passwd')")


def test_a_bad_view_names_its_file_line_and_object_and_changes_nothing(settings, tmp_path):
    wh = LocalWarehouse(settings)
    wh.apply(statements(settings))
    state = wh.state_path.read_text()
    root = tmp_path / "sql"
    shutil.copytree(sql_dir(), root)
    view = root / "20_views" / "21_v_yws_predictions_latest.sql"
    text = view.read_text()
    assert "model_version, scored_at, reason_1" in text
    view.write_text(text.replace("model_version, scored_at, reason_1",
                                 "model_verison, scored_at, reason_1"))
    with pytest.raises(SqlFileError, match="declares columns .* but its query returns"):
        wh.apply(statements(settings, root))
    view.write_text(text.replace("model_version, scored_at, reason_1",
                                 "model_verison AS model_version, scored_at, reason_1"))
    with pytest.raises(WarehouseError) as err:
        wh.apply(statements(settings, root))
    message = str(err.value)
    assert message.startswith("sql/20_views/21_v_yws_predictions_latest.sql:4: view "
                              "yws_dev.ml.v_yws_predictions_latest:")
    assert "model_verison" in message
    assert wh.state_path.read_text() == state  # nothing half-applied


def test_template_and_grant_errors(settings, tmp_path):
    root = tmp_path / "sql"
    root.mkdir()
    (root / "00_x.sql").write_text("-- x\nCREATE SCHEMA IF NOT EXISTS {{catalog}}.{{shema}};\n")
    with pytest.raises(SqlFileError, match="sql/00_x.sql:2: unknown parameter \\{\\{shema\\}\\}"):
        statements(settings, root)
    (root / "00_x.sql").write_text(
        "-- x\nCREATE SCHEMA IF NOT EXISTS {{catalog}}.{{schema}};\n"
        "GRANT SELECT ON TABLE {{catalog}}.{{schema}}.nope TO `yws_analysts`;\n")
    with pytest.raises(SqlFileError, match="sql/00_x.sql:3: TABLE yws_dev.ml.nope does not "
                                           "exist"):
        LocalWarehouse(settings).apply(statements(settings, root))
    (root / "00_x.sql").write_text("-- x\nGRANT FLY ON TABLE a.b.c TO `g`;\n")
    with pytest.raises(SqlFileError, match="unknown privilege 'FLY'"):
        LocalWarehouse(settings).apply(statements(settings, root))
    (root / "00_x.sql").write_text(
        "-- x\nCREATE SCHEMA IF NOT EXISTS {{catalog}}.{{schema}};\n"
        "GRANT READ VOLUME ON VOLUME {{catalog}}.{{schema}}.mlflow_tpm TO `j`;\n")
    with pytest.raises(SqlFileError, match="sql/00_x.sql:3: VOLUME yws_dev.ml.mlflow_tpm does "
                                           "not exist"):
        LocalWarehouse(settings).apply(statements(settings, root))
    (root / "00_x.sql").write_text("-- x\nCREATE VOLUME IF NOT EXISTS {{catalog}}.nope.v;\n")
    with pytest.raises(SqlFileError, match="schema yws_dev.nope of yws_dev.nope.v does not "
                                           "exist"):
        LocalWarehouse(settings).apply(statements(settings, root))
    # A model lives in the MLflow registry, not the warehouse: its grant is recorded unchecked.
    (root / "00_x.sql").write_text(
        "-- x\nCREATE SCHEMA IF NOT EXISTS {{catalog}}.{{schema}};\n"
        "GRANT EXECUTE ON FUNCTION {{catalog}}.{{schema}}.yws_lr TO `j`;\n")
    wh = LocalWarehouse(settings)
    wh.apply(statements(settings, root))
    assert wh.grants() == [Grant("j", "EXECUTE", "FUNCTION", "yws_dev.ml.yws_lr")]


def test_query_before_apply_says_what_to_do(settings):
    with pytest.raises(WarehouseError, match="run `yws sql apply` first"):
        LocalWarehouse(settings).query("SELECT 1")


def test_view_sql_transpiles_to_duckdb():
    for stmt in statements(Settings()):
        tree = stmt.parse()
        if isinstance(tree, exp.Create) and str(tree.args["kind"]) == "VIEW":
            duck = tree.expression.sql("duckdb")
            assert sqlglot.parse_one(duck, read="duckdb") is not None


def test_the_local_warehouse_session_is_utc_whatever_the_hosts_zone(tmp_path, monkeypatch):
    """DBSQL sessions default to UTC; DuckDB would follow the machine's zone."""
    import time

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        con = LocalWarehouse(Settings(home=tmp_path / "yws"))._connect()
        zone, text = con.execute("SELECT current_setting('TimeZone'), "
                                 "TIMESTAMPTZ '2026-01-01 12:00:00+00'::VARCHAR").fetchone()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (zone, text) == ("UTC", "2026-01-01 12:00:00+00")


def test_the_quarantine_view_shows_the_published_runs_rows_without_the_input_row(settings):
    d1 = dt.date(2026, 10, 1)
    storage = LocalStorage(settings)

    def held(entity: str, batch: str, run: str) -> dict:
        return {"entity_id": entity, "as_of_date": d1, "batch_id": batch, "run_id": run,
                "reason": "balance_utilization is null or NaN",
                "record": json.dumps({"customer_id": entity, "defaulted_90d": 1}),
                "quarantined_at": T0}

    storage.write(pa.Table.from_pylist([held("A", "b1", "r1"), held("B", "b1", "r1-old"),
                                        held("C", "b9", "r9")], schema=arrow_schema(QUARANTINE)),
                  settings.quarantine, mode="overwrite")
    storage.write(pa.Table.from_pylist([_run("r1", "b1", d1, T0 + dt.timedelta(seconds=5)),
                                        _run("r1-old", "b1", d1, T0, status="SUPERSEDED")],
                                       schema=arrow_schema(SCORE_RUNS)),
                  settings.score_runs, mode="overwrite")
    LocalWarehouse(settings).apply(statements(settings))
    got = LocalWarehouse(settings).query("SELECT * FROM yws_dev.ml.v_yws_quarantine")
    assert got.column_names == ["entity_id", "as_of_date", "batch_id", "reason",
                                "quarantined_at", "run_id"]  # no record: no feature values
    assert [(r["entity_id"], r["run_id"]) for r in got.to_pylist()] == [("A", "r1")]


def test_apply_adds_new_nullable_columns_to_a_table_an_older_release_created(settings):
    """A score-runs table written before features_version, spec_hash and engine existed gets
    them (its row reads NULL) and the views over it work; a missing NOT NULL column is
    refused, naming it, and nothing is changed."""
    names = list(SCORE_RUNS)
    new = names[names.index("superseded_by") + 1:]  # what releases since have appended
    assert new[:3] == ["features_version", "spec_hash", "engine"]
    old = {c: v for c, v in SCORE_RUNS.items() if c not in new}
    storage = LocalStorage(settings)
    row = _run("r1", "b1", dt.date(2026, 11, 1), T0)
    storage.write(pa.Table.from_pylist([row], schema=arrow_schema(old)), settings.score_runs)
    wh = LocalWarehouse(settings)
    steps = wh.apply(statements(settings))
    assert [s.action for s in steps if s.object == settings.score_runs and s.kind == "TABLE"] == [
        f"columns added: {', '.join(new)}"]
    assert storage.arrow_schema(settings.score_runs).names == list(SCORE_RUNS)
    got = wh.query("SELECT run_id, features_version, spec_hash, engine FROM "
                   "yws_dev.ml.v_yws_score_runs").to_pylist()
    assert got == [{"run_id": "r1", "features_version": None, "spec_hash": None, "engine": None}]
    assert {s.action for s in wh.apply(statements(settings)) if s.kind == "TABLE"} == {"exists"}

    shutil.rmtree(storage.path(settings.score_runs))
    no_status = {c: v for c, v in SCORE_RUNS.items() if c != "status"}
    storage.write(pa.Table.from_pylist([row], schema=arrow_schema(no_status)),
                  settings.score_runs)
    with pytest.raises(SqlFileError, match="table yws_dev.ml.yws_score_runs exists with other "
                                           "columns than its DDL: missing NOT NULL status"):
        wh.apply(statements(settings))
    assert storage.version(settings.score_runs) == 0
