"""The DBSQL warehouse client: the official databricks-sdk against a local stand-in server.

No workspace is reachable here, so a small HTTP server records the exact requests the SDK
sends for our statements and answers in the Statement Execution API's shape.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import point_sdk_at
from yws.config import Settings
from yws.contract.sqlfiles import SqlFileError, _ddl_trees, statements, table_columns
from yws.warehouse import QueryError, WarehouseError
from yws.warehouse import databricks as dbx

DDL_TABLES = list(_ddl_trees())  # in apply order
COLUMNS_QUERY = ("SELECT table_name, column_name FROM yws_prod.information_schema.columns "
                 "WHERE table_schema = :schema AND table_name IN ("
                 + ", ".join(f":t{i}" for i in range(len(DDL_TABLES))) + ")")


class Stub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []
        self.fail_on: str | None = None
        self.pending_once = False
        # information_schema.columns: (table, column) rows; by default every DDL column
        self.columns = [[t, c] for t in DDL_TABLES for c in table_columns(t)]


@pytest.fixture
def stub(monkeypatch):
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            state.requests.append(("GET", self.path, None))
            if self.path.endswith("/result/chunks/1"):
                self.reply(200, {"chunk_index": 1, "row_offset": 2,
                                 "data_array": [["C3", "2026-11-30", None]]})
            elif self.path == "/api/2.0/sql/statements/s-pending":
                self.reply(200, {"statement_id": "s-pending", "status": {"state": "SUCCEEDED"}})
            else:
                self.reply(404, {"error_code": "NOT_FOUND", "message": "no"})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(("POST", self.path, body))
            text = body["statement"]
            if state.pending_once:
                state.pending_once = False
                self.reply(200, {"statement_id": "s-pending", "status": {"state": "PENDING"}})
            elif state.fail_on and state.fail_on in text:
                self.reply(200, {"statement_id": "s-f", "status": {
                    "state": "FAILED", "error": {"error_code": "BAD_REQUEST",
                                                 "message": "[TABLE_OR_VIEW_NOT_FOUND] nope"}}})
            elif "information_schema.columns" in text:
                self.reply(200, {
                    "statement_id": "s-c", "status": {"state": "SUCCEEDED"},
                    "manifest": {"format": "JSON_ARRAY", "total_chunk_count": 1, "schema": {
                        "column_count": 2, "columns": [
                            {"name": n, "type_name": "STRING", "position": i}
                            for i, n in enumerate(["table_name", "column_name"])]}},
                    "result": {"chunk_index": 0, "row_offset": 0, "data_array": state.columns}})
            elif "information_schema" in text:
                self.reply(200, {
                    "statement_id": "s-g", "status": {"state": "SUCCEEDED"},
                    "manifest": {"format": "JSON_ARRAY", "total_chunk_count": 1, "schema": {
                        "column_count": 4, "columns": [
                            {"name": n, "type_name": "STRING", "position": i}
                            for i, n in enumerate(["grantee", "privilege_type", "kind", "obj"])
                        ]}},
                    "result": {"chunk_index": 0, "row_offset": 0, "data_array": [
                        ["6f1e2c3d-4b5a-4978-8899-aabbccddeeff", "WRITE_VOLUME", "VOLUME",
                         "yws_prod.risk.mlflow_tmp"],
                        ["6f1e2c3d-4b5a-4978-8899-aabbccddeeff", "CREATE_MODEL", "SCHEMA",
                         "yws_prod.risk"]]}})
            elif text.startswith("SELECT"):
                self.reply(200, {
                    "statement_id": "s-q", "status": {"state": "SUCCEEDED"},
                    "manifest": {"format": "JSON_ARRAY", "total_chunk_count": 2, "schema": {
                        "column_count": 3, "columns": [
                            {"name": "entity_id", "type_name": "STRING", "position": 0},
                            {"name": "as_of_date", "type_name": "DATE", "position": 1},
                            {"name": "probability", "type_name": "DOUBLE", "position": 2}]}},
                    "result": {"chunk_index": 0, "row_offset": 0, "next_chunk_index": 1,
                               "data_array": [["C1", "2026-11-30", "0.25"],
                                              ["C2", "2026-11-30", "0.5"]]}})
            else:
                self.reply(200, {"statement_id": "s-ddl", "status": {"state": "SUCCEEDED"}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    point_sdk_at(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "dapi-test-token")
    monkeypatch.setattr(dbx, "POLL_SECONDS", 0.01)
    yield state
    server.shutdown()


@pytest.fixture
def wh() -> dbx.DatabricksWarehouse:
    return dbx.DatabricksWarehouse(Settings(target="databricks", catalog="yws_prod",
                                            schema="risk", warehouse_id="abc123"))


def posts(stub: Stub) -> list[dict]:
    return [b for m, p, b in stub.requests if m == "POST" and p == "/api/2.0/sql/statements"]


def test_query_binds_parameters_and_follows_chunks(stub, wh):
    table = wh.query("SELECT entity_id, as_of_date, probability FROM "
                     "yws_prod.risk.v_yws_predictions WHERE batch_id = :b",
                     {"b": "x'; DROP TABLE t; --"})
    (body,) = posts(stub)
    assert body == {
        "statement": "SELECT entity_id, as_of_date, probability FROM "
                     "yws_prod.risk.v_yws_predictions WHERE batch_id = :b",
        "warehouse_id": "abc123", "catalog": "yws_prod", "schema": "risk",
        "parameters": [{"name": "b", "value": "x'; DROP TABLE t; --"}],
        "disposition": "INLINE", "format": "JSON_ARRAY", "wait_timeout": "30s",
        "on_wait_timeout": "CONTINUE",
    }
    assert ("GET", "/api/2.0/sql/statements/s-q/result/chunks/1", None) in stub.requests
    rows = table.to_pylist()
    assert [r["entity_id"] for r in rows] == ["C1", "C2", "C3"]
    assert rows[0]["probability"] == 0.25 and rows[2]["probability"] is None
    assert str(rows[0]["as_of_date"]) == "2026-11-30"


def test_apply_sends_every_rendered_statement_in_order(stub, wh):
    stmts = statements(wh.settings)
    steps = wh.apply(stmts)
    # the tables' columns are read once, after the last CREATE TABLE, before the first view
    first_view = next(i for i, s in enumerate(stmts) if "CREATE OR REPLACE VIEW" in s.text)
    texts = [s.text for s in stmts]
    assert [b["statement"] for b in posts(stub)] == [
        *texts[:first_view], COLUMNS_QUERY, *texts[first_view:]]
    (query,) = [b for b in posts(stub) if b["statement"] == COLUMNS_QUERY]
    assert query["parameters"] == [{"name": "schema", "value": "risk"}] + [
        {"name": f"t{i}", "value": t} for i, t in enumerate(DDL_TABLES)]
    assert steps[0].object == "yws_prod.risk" and steps[1].object == "yws_prod.risk.mlflow_tmp"
    assert steps[2].object == "yws_prod.risk.r_models"  # R users' uploads (issue 17)
    assert steps[3 + len(DDL_TABLES)].object == "yws_prod.risk.v_yws_predictions"
    assert {s.action for s in steps} == {"sent"}


def context(body: dict) -> tuple[str | None, str | None]:
    return body.get("catalog"), body.get("schema")


def test_each_statement_is_sent_in_the_namespace_its_object_lives_in(stub, wh):
    """The Statement Execution API's catalog and schema act like USE CATALOG / USE SCHEMA
    (docs: SQL Statement Execution API, POST /api/2.0/sql/statements: "schema — sets default
    schema for statement execution, similar to USE SCHEMA"), so the statement that creates the
    schema must not be sent with it: CREATE SCHEMA gets the catalog alone, a grant on the
    catalog neither, objects inside the schema both."""
    wh.apply(statements(wh.settings))
    sent = posts(stub)
    first = sent[0]
    assert first == {
        "statement": "CREATE SCHEMA IF NOT EXISTS yws_prod.risk\nCOMMENT 'Yellow Warning System: "
                     "feature snapshots, predictions, quarantine and the scoring audit'",
        "warehouse_id": "abc123", "catalog": "yws_prod", "parameters": [],
        "disposition": "INLINE", "format": "JSON_ARRAY", "wait_timeout": "30s",
        "on_wait_timeout": "CONTINUE",
    }
    by_text = {b["statement"]: context(b) for b in sent}
    assert by_text[
        "CREATE VOLUME IF NOT EXISTS yws_prod.risk.mlflow_tmp\nCOMMENT 'YWS: temporary files of "
        "MLflow SparkML model logging and loading (dfs_tmpdir); safe to empty'"] == (
        "yws_prod", "risk")
    assert by_text["GRANT USE CATALOG ON CATALOG yws_prod TO `yws_jobs`"] == (None, None)
    assert by_text["GRANT CREATE MODEL ON SCHEMA yws_prod.risk TO `yws_jobs`"] == (
        "yws_prod", None)
    assert by_text["GRANT EXECUTE ON SCHEMA yws_prod.risk TO `yws_jobs`"] == ("yws_prod", None)
    assert by_text["GRANT READ VOLUME, WRITE VOLUME ON VOLUME yws_prod.risk.mlflow_tmp TO "
                   "`yws_jobs`"] == ("yws_prod", "risk")
    tables = [context(b) for b in sent if b["statement"].startswith("CREATE TABLE")]
    assert tables == [("yws_prod", "risk")] * len(DDL_TABLES)
    # only the statement creating the schema is ever sent without it, among the DDL
    assert [b["statement"].split("\n")[0] for b in sent
            if b["statement"].startswith("CREATE") and context(b)[1] is None] == [
        "CREATE SCHEMA IF NOT EXISTS yws_prod.risk"]


def test_an_unknown_privilege_is_refused_before_anything_is_sent(stub, wh, tmp_path):
    root = tmp_path / "sql"
    root.mkdir()
    (root / "00_schema.sql").write_text(
        "-- s\nCREATE SCHEMA IF NOT EXISTS {{catalog}}.{{schema}};\n")
    (root / "90_grants.sql").write_text(
        "-- g\nGRANT CREATE MODLE ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;\n")
    with pytest.raises(SqlFileError, match="sql/90_grants.sql:2: unknown privilege "
                                           "'CREATE MODLE'"):
        wh.apply(statements(wh.settings, root))
    assert posts(stub) == []


def test_grants_read_every_privilege_table_including_volumes(stub, wh):
    """information_schema.volume_privileges lists volume grants (docs: Databricks SQL,
    INFORMATION_SCHEMA.VOLUME_PRIVILEGES); privilege_type is kept as the warehouse returns it."""
    found = wh.grants()
    assert [(g.privilege, g.securable_type) for g in found] == [
        ("CREATE_MODEL", "SCHEMA"), ("WRITE_VOLUME", "VOLUME")]
    (body,) = posts(stub)
    assert "yws_prod.information_schema.volume_privileges WHERE volume_schema = :schema" in \
        body["statement"]
    assert body["parameters"] == [{"name": "schema", "value": "risk"}]
    assert context(body) == ("yws_prod", "risk")


def test_a_failed_statement_names_file_line_and_object(stub, wh):
    stub.fail_on = "v_yws_warnings"
    with pytest.raises(WarehouseError, match="sql/20_views/22_v_yws_warnings.sql:[0-9]+: view "
                                             "yws_prod.risk.v_yws_warnings: "
                                             "\\[TABLE_OR_VIEW_NOT_FOUND\\]"):
        wh.apply(statements(wh.settings))


def test_pending_statements_are_polled(stub, wh):
    stub.pending_once = True
    wh.execute("CREATE SCHEMA IF NOT EXISTS yws_prod.risk")
    assert ("GET", "/api/2.0/sql/statements/s-pending", None) in stub.requests


def test_checks_happen_before_anything_is_sent(stub, wh):
    with pytest.raises(QueryError, match="only queries"):
        wh.query("DROP TABLE yws_prod.risk.yws_predictions")
    with pytest.raises(QueryError, match="not bound"):
        wh.query("SELECT :a")
    assert posts(stub) == []
    no_id = dbx.DatabricksWarehouse(Settings(target="databricks"))
    with pytest.raises(WarehouseError, match="YWS_WAREHOUSE_ID"):
        no_id.execute("SELECT 1")


def test_apply_adds_the_nullable_columns_a_table_of_an_older_release_lacks(stub, wh):
    """CREATE TABLE IF NOT EXISTS leaves an existing table alone, so apply reads the tables'
    columns from information_schema.columns (docs: Databricks SQL, INFORMATION_SCHEMA.COLUMNS:
    TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME) and adds what is missing with ALTER TABLE … ADD
    COLUMNS (docs: ALTER TABLE … COLUMN clause; new columns are NULL for existing rows), before
    the views that read them are sent. A missing NOT NULL column stops the apply there."""
    stub.columns = [r for r in stub.columns
                    if r != ["yws_score_runs", "spec_hash"] and r != ["yws_score_runs", "engine"]]
    stmts = statements(wh.settings)
    steps = wh.apply(stmts)
    alter = ("ALTER TABLE yws_prod.risk.yws_score_runs ADD COLUMNS (spec_hash STRING COMMENT "
             f"'{table_columns('yws_score_runs')['spec_hash'][1]}', engine STRING COMMENT "
             f"'{table_columns('yws_score_runs')['engine'][1]}')")
    sent = [b["statement"] for b in posts(stub)]
    assert sent.index(alter) == sent.index(COLUMNS_QUERY) + 1
    assert sent[sent.index(alter) + 1].startswith("CREATE OR REPLACE VIEW")
    assert context(posts(stub)[sent.index(alter)]) == ("yws_prod", "risk")
    added = [s for s in steps if s.action.startswith("columns added")]
    assert [(s.object, s.action) for s in added] == [
        ("yws_prod.risk.yws_score_runs", "columns added: spec_hash, engine")]

    stub.requests.clear()
    stub.columns = [r for r in stub.columns if r != ["yws_score_runs", "status"]]
    with pytest.raises(WarehouseError, match="13_yws_score_runs.sql:4: table "
                                             "yws_prod.risk.yws_score_runs lacks NOT NULL "
                                             "column\\(s\\) status: an older release"):
        wh.apply(stmts)
    sent = [b["statement"] for b in posts(stub)]
    assert sent[-1] == COLUMNS_QUERY  # no ALTER, no view
