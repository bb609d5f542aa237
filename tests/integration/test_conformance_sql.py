"""`yws serve` answers the SQL Statement Execution API 2.0 and the warehouses API as documented,
driven with the official `databricks-sdk` (issue 13, items 7-13); raw HTTP only where the SDK
cannot say what is sent or received.

The contract: https://docs.databricks.com/api/workspace/statementexecution (executeStatement,
getStatement, getStatementResultChunkN) and https://docs.databricks.com/api/workspace/warehouses
(get, list). No Spark: synthetic predictions written with delta-rs, the SQL layer applied.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InvalidParameterValue, NotFound
from databricks.sdk.service.sql import (
    Disposition,
    Format,
    ServiceErrorCode,
    StatementParameterListItem,
    StatementResponse,
    StatementState,
)

from conftest import point_sdk_at, serving, synthetic_home
from yws.config import Settings
from yws.server.app import create_app
from yws.server.store import Store
from yws.warehouse import QueryError
from yws.warehouse.databricks import DatabricksWarehouse

WH = "yws_local"
VIEW = "yws_dev.ml.v_yws_predictions"
ROWS = 30_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = synthetic_home(tmp_path_factory.mktemp("conformance-sql"), ROWS)
    store = Store(home.home.resolve() / "server.db")
    tokens = {"ana": store.create_token("ana", ["yws_analysts", "yws_r_users"]),
              "outsider": store.create_token("outsider", [])}
    app = create_app(home)
    with serving(app) as host:
        yield {"home": home, "host": host, "tokens": tokens, "app": app}


def sdk(served: dict[str, Any], who: str = "ana") -> WorkspaceClient:
    return WorkspaceClient(host=served["host"], token=served["tokens"][who])


def execute(w: WorkspaceClient, sql: str, **kw: Any) -> StatementResponse:
    return w.statement_execution.execute_statement(statement=sql, warehouse_id=WH,
                                                   wait_timeout="30s", **kw)


def failed(response: StatementResponse, error_class: str, sql_state: str) -> str:
    """A FAILED statement as Databricks reports one; returns its message."""
    status = response.status
    assert status.state == StatementState.FAILED, status
    assert status.error.error_code == ServiceErrorCode.BAD_REQUEST
    assert status.error.message.startswith(f"[{error_class}] "), status.error.message
    assert status.error.message.endswith(f"SQLSTATE: {sql_state}")
    assert status.sql_state == sql_state
    assert response.result is None and response.manifest is None
    return str(status.error.message)


def raw(served: dict[str, Any], body: dict[str, Any], who: str = "ana") -> dict[str, Any]:
    req = urllib.request.Request(
        f"{served['host']}/api/2.0/sql/statements", method="POST",
        data=json.dumps({"warehouse_id": WH, "wait_timeout": "30s", **body}).encode(),
        headers={"Authorization": f"Bearer {served['tokens'][who]}"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
        out: dict[str, Any] = json.loads(resp.read())
        return out


# -- item 7 ----------------------------------------------------------------------------------
def test_execution_errors_are_failed_statements_and_request_errors_4xx(served):
    """Execution errors are statements in state FAILED (HTTP 200) with status.error
    (error_code, message) and status.sql_state; request errors stay HTTP 4xx.

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — "FAILED:
    execution failed; reason for failure described in accompanying error message";
    "sql_state: SQLSTATE error code returned when the statement execution fails. Only
    populated when the statement status is FAILED." Error classes and SQLSTATEs:
    https://docs.databricks.com/en/error-messages/index.html
    """
    w = sdk(served)
    failed(execute(w, "SELEC 1"), "PARSE_SYNTAX_ERROR", "42601")
    message = failed(execute(w, "SELECT * FROM yws_dev.ml.nope"), "TABLE_OR_VIEW_NOT_FOUND",
                     "42P01")
    assert "`yws_dev`.`ml`.`nope`" in message
    failed(execute(w, "SELECT CAST('abc' AS INT) AS x"), "CAST_INVALID_INPUT", "22018")
    failed(execute(w, f"SELECT nope FROM {VIEW}"), "UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703")
    failed(execute(w, "SELECT :x AS x"), "UNBOUND_SQL_PARAMETER", "42P02")
    # the same answer later, from getStatement
    first = execute(w, "SELECT * FROM yws_dev.ml.nope")
    again = w.statement_execution.get_statement(first.statement_id)
    failed(again, "TABLE_OR_VIEW_NOT_FOUND", "42P01")
    # request errors: no statement is made
    with pytest.raises(NotFound):
        w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id="nope")
    with pytest.raises(InvalidParameterValue, match="wait_timeout"):
        w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=WH,
                                                wait_timeout="3s")


def test_permission_errors_are_failed_statements(served):
    """A read without SELECT on the object fails the statement with INSUFFICIENT_PERMISSIONS
    (SQLSTATE 42501), as Unity Catalog reports it through the Statement Execution API: HTTP 200
    with a FAILED statement, "[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not
    have SELECT on Table ..." — not an HTTP 403.

    https://docs.databricks.com/en/error-messages/insufficient-permissions-error-class.html and
    https://docs.databricks.com/api/workspace/statementexecution/executestatement
    """
    analyst, outsider = sdk(served), sdk(served, "outsider")
    message = failed(execute(analyst, "SELECT * FROM yws_dev.ml.yws_predictions"),
                     "INSUFFICIENT_PERMISSIONS", "42501")
    assert "does not have SELECT on yws_dev.ml.yws_predictions" in message
    failed(execute(outsider, f"SELECT * FROM {VIEW}"), "INSUFFICIENT_PERMISSIONS", "42501")
    # files, table functions and writes: never granted through this endpoint
    failed(execute(analyst, "SELECT * FROM read_parquet('/etc/passwd')"),
           "INSUFFICIENT_PERMISSIONS", "42501")
    failed(execute(analyst, "DROP TABLE yws_dev.ml.yws_predictions"),
           "INSUFFICIENT_PERMISSIONS", "42501")


def test_the_project_client_raises_the_failed_statement_error(served, monkeypatch):
    """yws.warehouse.databricks (the project's own Statement API client) turns a FAILED
    statement into one clear error: the Databricks message with its error class and SQLSTATE.

    https://docs.databricks.com/api/workspace/statementexecution/getstatement
    """
    point_sdk_at(monkeypatch, served["host"], served["tokens"]["ana"])
    remote = DatabricksWarehouse(Settings(target="databricks", warehouse_id=WH))
    with pytest.raises(QueryError, match=r"^\[TABLE_OR_VIEW_NOT_FOUND\] .*SQLSTATE: 42P01$"):
        remote.query("SELECT * FROM yws_dev.ml.nope")
    table = remote.query("SELECT CAST(:p AS DECIMAL(10,2)) AS p, :n + 1 AS n",
                         {"p": decimal.Decimal("1.25"), "n": 41})
    assert table.to_pylist() == [{"p": decimal.Decimal("1.25"), "n": 42}]


# -- item 8 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [Format.ARROW_STREAM, Format.CSV])
def test_inline_takes_json_array_only(served, fmt):
    """INLINE returns JSON_ARRAY only; ARROW_STREAM and CSV need EXTERNAL_LINKS. A workspace
    refuses the pair: INVALID_PARAMETER_VALUE "The format field must be JSON_ARRAY when the
    disposition field is INLINE." (The SQL connector's SEA client sends ARROW_STREAM with
    EXTERNAL_LINKS, or JSON_ARRAY with INLINE: neither is refused.)

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — "there are
    3 supported formats: JSON_ARRAY, ARROW_STREAM and CSV compared to only JSON_ARRAY with
    INLINE"
    """
    w = sdk(served)
    with pytest.raises(InvalidParameterValue, match="format field must be JSON_ARRAY when "
                                                    "the disposition field is INLINE"):
        w.statement_execution.execute_statement(statement="SELECT 1 AS x", warehouse_id=WH,
                                                format=fmt, disposition=Disposition.INLINE)
    ok = execute(w, "SELECT 1 AS x", format=fmt, disposition=Disposition.EXTERNAL_LINKS)
    assert ok.status.state == StatementState.SUCCEEDED
    (link,) = ok.result.external_links
    with urllib.request.urlopen(link.external_link) as resp:
        assert len(resp.read()) == link.byte_count > 0


# -- item 9 ----------------------------------------------------------------------------------
def test_typed_parameters_are_bound_as_their_type(served):
    """Each parameter is bound with its ``type`` (STRING when absent; INT, BIGINT, SMALLINT,
    TINYINT, DOUBLE, FLOAT, DECIMAL(p,s), BOOLEAN, DATE, TIMESTAMP, ...), a missing value is
    NULL, and values are never spliced into the text. A value that is not of its type fails the
    statement as the cast would (CAST_INVALID_INPUT); a type that is not one is a request error.

    https://docs.databricks.com/api/workspace/statementexecution/executestatement —
    parameters: "type: The data type, given as a string. For example: INT, STRING,
    DECIMAL(10,2). If no type is given the type is assumed to be STRING. Complex types, such as
    ARRAY, MAP, and STRUCT are not supported." "value: ... If omitted, the value is interpreted
    as NULL."
    """
    w = sdk(served)

    def one(sql: str, **params: tuple[str | None, str | None]) -> list[Any]:
        r = execute(w, sql, parameters=[StatementParameterListItem(name=k, value=v, type=t)
                                        for k, (v, t) in params.items()])
        assert r.status.state == StatementState.SUCCEEDED, r.status
        return list(r.result.data_array[0])

    assert one("SELECT :n + 1 AS n", n=("41", "INT")) == ["42"]
    assert one("SELECT :d + INTERVAL 1 DAY AS d", d=("2026-02-28", "DATE"))[0].startswith(
        "2026-03-01")
    assert one("SELECT :p * 2 AS p", p=("1.25", "DECIMAL(10,2)")) == ["2.50"]
    assert one("SELECT :b AND true AS b, :f / 2 AS f, :i AS i, :s AS s",
               b=("true", "BOOLEAN"), f=("1.5", "DOUBLE"), i=("-7", "TINYINT"),
               s=("x'; DROP TABLE t; --", None)) == ["true", "0.75", "-7",
                                                       "x'; DROP TABLE t; --"]
    assert one("SELECT hour(:t) AS h", t=("2026-11-30T06:30:00Z", "TIMESTAMP")) == ["6"]
    # a STRING parameter (the default) is coerced where it stands, as Databricks does
    assert one("SELECT 0.5 > :p AS p, :q AS q", p=("0.25", None), q=("7", "STRING")) == [
        "true", "7"]
    assert one("SELECT :v IS NULL AS v", v=(None, "DATE")) == ["true"]
    r = execute(w, "SELECT :n + 1 AS n", parameters=[
        StatementParameterListItem(name="n", value="forty-one", type="INT")])
    assert "'forty-one'" in failed(r, "CAST_INVALID_INPUT", "22018")
    with pytest.raises(InvalidParameterValue, match="ARRAY<INT>"):
        execute(w, "SELECT :a AS a", parameters=[
            StatementParameterListItem(name="a", value="[1]", type="ARRAY<INT>")])


# -- item 10 ---------------------------------------------------------------------------------
def test_limits_truncate_byte_counts_and_the_async_state(served):
    """row_limit and byte_limit cut the result and set manifest.truncated; EXTERNAL_LINKS
    chunks and links carry byte_count and the manifest total_byte_count (absent with INLINE);
    a submission with wait_timeout 0s answers PENDING.

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — "truncated:
    Indicates whether the result is truncated due to row_limit or byte_limit"; "byte_count: The
    number of bytes in the result chunk. This field is not available when using INLINE
    disposition."; "when set to 0s, the call is asynchronous and responds immediately with a
    statement ID"; "PENDING: waiting for warehouse"
    """
    w = sdk(served)
    sql = f"SELECT entity_id, probability FROM {VIEW} ORDER BY entity_id"
    cut = execute(w, sql, row_limit=10)
    assert (cut.manifest.truncated, cut.manifest.total_row_count) == (True, 10)
    assert len(cut.result.data_array) == 10
    assert cut.manifest.total_byte_count is None and cut.manifest.chunks[0].byte_count is None
    small = execute(w, sql, byte_limit=4096)
    assert small.manifest.truncated and 0 < small.manifest.total_row_count < ROWS
    whole = execute(w, f"SELECT count(*) AS n FROM {VIEW}", row_limit=10)
    assert whole.manifest.truncated is False
    links = execute(w, sql, format=Format.ARROW_STREAM, disposition=Disposition.EXTERNAL_LINKS)
    sizes = [c.byte_count for c in links.manifest.chunks]
    assert all(n > 0 for n in sizes) and links.manifest.total_byte_count == sum(sizes)
    assert links.manifest.truncated is False
    assert links.result.external_links[0].byte_count == sizes[0]
    pending = w.statement_execution.execute_statement(statement=sql, warehouse_id=WH,
                                                      wait_timeout="0s")
    assert pending.status.state == StatementState.PENDING and pending.manifest is None
    deadline = time.monotonic() + 30
    state = pending
    while state.status.state in (StatementState.PENDING, StatementState.RUNNING):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        state = w.statement_execution.get_statement(pending.statement_id)
    assert state.status.state == StatementState.SUCCEEDED


# -- item 11 ---------------------------------------------------------------------------------
def test_result_types_and_column_names(served):
    """DECIMAL keeps its precision and scale; BINARY, ARRAY, MAP and STRUCT are typed, their
    values encoded as strings (BINARY as hex, as the SQL connector's SEA client decodes it;
    complex values as JSON text); an expression without an alias is named as Databricks names
    it (``count(*)`` is ``count(1)``).

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — ColumnInfo:
    "type_name: The name of the base data type. This doesn't include details for complex types
    such as STRUCT, MAP or ARRAY", "type_text: The full SQL type specification",
    "type_precision", "type_scale"; "data_array: ... each non-null value is formatted as a
    string. Null values are encoded as JSON null."
    """
    w = sdk(served)
    r = execute(w, "SELECT CAST(1.5 AS DECIMAL(10,2)) AS d, X'CAFE' AS b, array(1, 2) AS a, "
                   "map('k', 1) AS m, named_struct('x', 1, 's', 'y') AS s, "
                   "CAST(NULL AS STRING) AS n, CAST(1 AS BIGINT) AS l, 1.5D AS f")
    cols = {c.name: c for c in r.manifest.schema.columns}
    assert (cols["d"].type_name.value, cols["d"].type_text, cols["d"].type_precision,
            cols["d"].type_scale) == ("DECIMAL", "DECIMAL(10,2)", 10, 2)
    assert (cols["b"].type_name.value, cols["b"].type_text) == ("BINARY", "BINARY")
    assert (cols["a"].type_name.value, cols["a"].type_text) == ("ARRAY", "ARRAY<INT>")
    assert (cols["m"].type_name.value, cols["m"].type_text) == ("MAP", "MAP<STRING, INT>")
    assert (cols["s"].type_name.value, cols["s"].type_text) == ("STRUCT",
                                                                "STRUCT<x: INT, s: STRING>")
    assert (cols["l"].type_name.value, cols["f"].type_name.value) == ("LONG", "DOUBLE")
    assert r.result.data_array == [["1.50", "CAFE", "[1,2]", '{"k":1}', '{"x":1,"s":"y"}',
                                    None, "1", "1.5"]]
    named = execute(w, f"SELECT count(*), max(band), 1 + 1 FROM {VIEW}")
    assert [c.name for c in named.manifest.schema.columns] == ["count(1)", "max(band)",
                                                               "(1 + 1)"]


# -- item 12 ---------------------------------------------------------------------------------
def test_catalog_schema_current_user_and_ansi_division(served):
    """The request's catalog and schema apply to unqualified names (like USE CATALOG / USE
    SCHEMA); current_user() is the caller; division by zero fails (ANSI mode is on in
    Databricks SQL), try_divide returns NULL.

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — "catalog:
    Sets default catalog for statement execution, similar to USE CATALOG in SQL", "schema: Sets
    default schema for statement execution, similar to USE SCHEMA in SQL";
    https://docs.databricks.com/en/sql/language-manual/functions/current_user.html;
    https://docs.databricks.com/en/error-messages/divide-by-zero-error-class.html
    """
    w = sdk(served)
    r = execute(w, "SELECT count(*) AS n FROM v_yws_predictions", catalog="yws_dev", schema="ml")
    assert r.result.data_array == [[str(ROWS)]]
    r = execute(w, "SELECT count(*) AS n FROM ml.v_yws_predictions", catalog="yws_dev")
    assert r.result.data_array == [[str(ROWS)]]
    # no schema: the default schema (`default`) has no such view
    failed(execute(w, "SELECT * FROM v_yws_predictions"), "TABLE_OR_VIEW_NOT_FOUND", "42P01")
    assert execute(w, "SELECT current_user() AS u").result.data_array == [["ana"]]
    failed(execute(w, "SELECT 1/0 AS x"), "DIVIDE_BY_ZERO", "22012")
    failed(execute(w, "SELECT 7 % 0 AS x"), "DIVIDE_BY_ZERO", "22012")
    failed(execute(w, "SELECT CASE WHEN true THEN 1 / 0 END AS x"), "DIVIDE_BY_ZERO", "22012")
    # evaluated only where reached, as in Spark
    assert execute(w, "SELECT CASE WHEN p > 2 THEN 1 / 0 END AS x FROM "
                      "(SELECT 1 AS p)").result.data_array == [[None]]
    assert execute(w, "SELECT try_divide(1, 0) AS x").result.data_array == [[None]]
    assert execute(w, "SELECT 1/4 AS x").result.data_array == [["0.25"]]


# -- item 13 ---------------------------------------------------------------------------------
def test_warehouses_get_and_list(served):
    """GET /api/2.0/sql/warehouses/{id} answers the warehouse with odbc_params (hostname, path,
    protocol, port) pointing at this server, as list does; an unknown id is 404.

    https://docs.databricks.com/api/workspace/warehouses/get — "odbc_params: ODBC parameters
    for the SQL warehouse" (hostname, path, port, protocol), "jdbc_url", "state";
    https://docs.databricks.com/api/workspace/warehouses/list
    """
    w = sdk(served)
    got = w.warehouses.get(WH)
    port = int(served["host"].rsplit(":", 1)[1])
    assert got.id == WH and got.state.value == "RUNNING"
    assert (got.odbc_params.hostname, got.odbc_params.path, got.odbc_params.protocol,
            got.odbc_params.port) == ("127.0.0.1", f"/sql/1.0/warehouses/{WH}", "http", port)
    assert f"httpPath=/sql/1.0/warehouses/{WH}" in got.jdbc_url
    assert got.warehouse_type.value == "PRO" and got.enable_serverless_compute
    (listed,) = list(w.warehouses.list())
    assert listed.odbc_params == got.odbc_params and listed.id == WH
    with pytest.raises(NotFound):
        w.warehouses.get("nope")
    with pytest.raises((NotFound, BadRequest)):
        w.statement_execution.execute_statement(statement="SELECT 1", warehouse_id="nope")


def test_dates_and_timestamps_in_json_array(served):
    """DATE and TIMESTAMP values in JSON_ARRAY are ISO 8601 strings, timestamps in UTC.

    https://docs.databricks.com/api/workspace/statementexecution/getstatement — "data_array:
    ... each non-null value is formatted as a string"
    """
    w = sdk(served)
    r = execute(w, f"SELECT as_of_date, scored_at FROM {VIEW} LIMIT 1")
    day, at = r.result.data_array[0]
    assert dt.date.fromisoformat(day) == dt.date(2026, 9, 30)
    assert at == "2026-09-30T06:00:00.000Z"


def test_chunks_cancel_and_close(served):
    """A result larger than a chunk is fetched chunk by chunk (next_chunk_index,
    next_chunk_internal_link, row_offset); cancel ends a running statement CANCELED; DELETE
    closes a finished one (CLOSED: "result no longer available for fetch").

    https://docs.databricks.com/api/workspace/statementexecution/getstatementresultchunkn —
    "the chunk_index ... for the next chunk. If absent, indicates there are no more chunks";
    https://docs.databricks.com/api/workspace/statementexecution/cancelexecution — "Callers
    must poll for status to see the terminal state."
    """
    w = sdk(served)
    first = execute(w, f"SELECT entity_id FROM {VIEW} ORDER BY entity_id")
    assert first.manifest.total_row_count == ROWS and first.manifest.total_chunk_count == 2
    assert first.result.next_chunk_index == 1
    assert first.result.next_chunk_internal_link == (
        f"/api/2.0/sql/statements/{first.statement_id}/result/chunks/1")
    second = w.statement_execution.get_statement_result_chunk_n(first.statement_id, 1)
    assert second.chunk_index == 1 and second.row_offset == len(first.result.data_array)
    assert second.next_chunk_index is None
    assert len(first.result.data_array) + len(second.data_array) == ROWS
    forever = w.statement_execution.execute_statement(
        statement="WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                  "SELECT max(n) AS n FROM r", warehouse_id=WH, wait_timeout="0s")
    w.statement_execution.cancel_execution(forever.statement_id)
    canceled = w.statement_execution.get_statement(forever.statement_id)
    assert canceled.status.state == StatementState.CANCELED
    req = urllib.request.Request(
        f"{served['host']}/api/2.0/sql/statements/{first.statement_id}", method="DELETE",
        headers={"Authorization": f"Bearer {served['tokens']['ana']}"})
    with urllib.request.urlopen(req) as resp:  # the SDK has no call for it; the connector does
        assert resp.status == 200
    closed = w.statement_execution.get_statement(first.statement_id)
    assert closed.status.state == StatementState.CLOSED and closed.result is None


def test_a_result_over_the_server_budget_fails_resource_exhausted(served):
    """A result larger than the server keeps (YWS_SQL_RESULT_BYTES) ends FAILED with the
    documented error code RESOURCE_EXHAUSTED, not a partial result.

    https://docs.databricks.com/api/workspace/statementexecution/getstatement — status.error
    error_code values include RESOURCE_EXHAUSTED
    """
    service = served["app"].state.statements
    before = service.limits
    service.limits = replace(before, result_bytes=10_000)
    try:
        r = execute(sdk(served), f"SELECT * FROM {VIEW}")
    finally:
        service.limits = before
    assert r.status.state == StatementState.FAILED and r.result is None
    assert r.status.error.error_code == ServiceErrorCode.RESOURCE_EXHAUSTED
    assert "YWS_SQL_RESULT_BYTES" in r.status.error.message


def test_statement_text_limits(served):
    """The text limit is the documented one, plus a token bound the local warehouse adds.

    https://docs.databricks.com/api/workspace/statementexecution/executestatement — "statement:
    The SQL statement to execute ... The maximum query text size is 16 MiB." Past it: 400.
    Locally a statement of more than 50,000 tokens is refused too (400
    ``INVALID_PARAMETER_VALUE``), because each statement is parsed and rewritten in Python
    before DuckDB runs it; a long list of values goes in as parameters instead.
    """
    from databricks.sdk.errors import InvalidParameterValue

    w = sdk(served)
    many = "SELECT " + ", ".join(["1"] * 25_001)  # 50,001 tokens: 25,001 numbers + 25,000 commas
    with pytest.raises(InvalidParameterValue, match="more than 50000 tokens"):
        execute(w, many)
    fine = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(2_000))  # 8,000 tokens
    response = execute(w, fine)
    assert response.status.state.value == "SUCCEEDED"
    assert len(response.manifest.schema.columns) == 2_000
    with pytest.raises(InvalidParameterValue, match="16777216 bytes"):
        execute(w, "SELECT '" + "x" * (16 * 2**20) + "'")
