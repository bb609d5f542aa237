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
from yws.sqlfiles import statements
from yws.warehouse import QueryError, WarehouseError
from yws.warehouse import databricks as dbx


class Stub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []
        self.fail_on: str | None = None
        self.pending_once = False


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
    assert [b["statement"] for b in posts(stub)] == [s.text for s in stmts]
    assert steps[0].object == "yws_prod.risk" and steps[5].object == \
        "yws_prod.risk.v_yws_predictions"
    assert {s.action for s in steps} == {"sent"}


def test_a_failed_statement_names_file_line_and_object(stub, wh):
    stub.fail_on = "v_yws_warnings"
    with pytest.raises(WarehouseError, match="sql/20_views/22_v_yws_warnings.sql:4: view "
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
