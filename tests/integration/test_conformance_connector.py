"""`databricks-sql-connector` as a client of `yws serve`: the real connector, a real server.

Each test drives ``databricks.sql.connect(..., use_sea=True)`` — the connector's Statement
Execution API backend, which opens a session with ``POST /api/2.0/sql/sessions`` — and asserts
what the connector's user sees; its docstring cites the contract (Databricks docs, or the
connector's own source where the REST reference is silent: the sessions endpoints are not in
it). Rows in ``docs/api-conformance.md`` ("SQL sessions and databricks-sql-connector") name
these tests.

How a user connects to a local ``yws serve`` (``http://127.0.0.1:PORT``), and why:

- ``server_hostname="http://127.0.0.1"`` and ``_port=PORT``: without a scheme the connector
  speaks TLS; with the port inside ``server_hostname`` its SEA client builds ``HOST:PORT:443``;
- ``use_sea=True``: the default transport, Thrift, is refused (501, "use use_sea=True");
- ``enable_telemetry=False``: otherwise ``connect`` first fetches feature flags from the host
  without the port (port 80 here) and waits ~30 s for connections that are refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from databricks import sql as dbsql
from databricks.sql.exc import DatabaseError, RequestError, ServerOperationError
from databricks.sql.parameters import (
    DateParameter,
    DecimalParameter,
    IntegerParameter,
    StringParameter,
    TimestampParameter,
)

from conftest import serving, synthetic_home
from yws.server.app import create_app
from yws.server.store import Store

ROWS = 45_000  # three chunks of the statement service's 20,000 rows
VIEW = "yws_dev.ml.v_yws_predictions"
HTTP_PATH = "/sql/1.0/warehouses/yws_local"
FOREVER = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
           "SELECT max(n) AS n FROM r")
# A connect() that fails leaves a half-built Connection whose __del__ raises AttributeError
# (the connector's own bug, databricks/sql/client.py Connection.__del__): not ours to report.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Synthetic predictions (no Spark), the SQL layer applied, ``yws serve`` on loopback."""
    home = synthetic_home(tmp_path_factory.mktemp("connector"), ROWS, seed=7)
    store = Store(home.home.resolve() / "server.db")
    tokens = {"ana": store.create_token("ana", ["yws_analysts", "yws_r_users"]),
              "mallory": store.create_token("mallory", ["marketing"])}
    app = create_app(home)
    with serving(app) as host:
        yield {"host": host, "port": int(host.rsplit(":", 1)[1]), "tokens": tokens,
               "app": app, "sessions": app.state.sessions}


def connect(served: dict[str, Any], who: str = "ana", **options: Any) -> Any:
    """``databricks.sql.connect`` as a user points it at a local ``yws serve``."""
    settings: dict[str, Any] = {"server_hostname": "http://127.0.0.1", "_port": served["port"],
                                "http_path": HTTP_PATH, "access_token": served["tokens"][who],
                                "use_sea": True, "enable_telemetry": False}
    return dbsql.connect(**{**settings, **options})


def query(served: dict[str, Any], sql: str, parameters: Any = None,
          **options: Any) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """Rows (as tuples) and ``cursor.description`` of one statement on a fresh connection."""
    with connect(served, **options) as conn, conn.cursor() as cur:
        cur.execute(sql, parameters)
        return [tuple(r) for r in cur.fetchall()], list(cur.description)


def call(served: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None,
         who: str = "ana") -> tuple[int, dict[str, Any], dict[str, str]]:
    """A raw request: status, JSON body, headers."""
    request = urllib.request.Request(
        served["host"] + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {served['tokens'][who]}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw or b"{}"), headers
    except ValueError:
        return status, {"text": raw.decode(errors="replace")}, headers


def open_session(served: dict[str, Any], who: str = "ana", **fields: Any) -> str:
    status, out, _ = call(served, "POST", "/api/2.0/sql/sessions",
                          {"warehouse_id": "yws_local", **fields}, who)
    assert status == 200, out
    return str(out["session_id"])


def timed(what: Any) -> tuple[float, Any]:
    start = time.monotonic()
    try:
        return time.monotonic() - start, what()
    except Exception as e:  # the caller asserts on it
        return time.monotonic() - start, e


# -- sessions -------------------------------------------------------------------------------
def test_connect_opens_a_session_and_close_ends_it(served):
    """``connect(use_sea=True)`` creates a session (``POST /api/2.0/sql/sessions`` with
    ``warehouse_id`` from the ``http_path``) and ``close()`` deletes it
    (``DELETE /api/2.0/sql/sessions/{session_id}``): the connector's SEA backend,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/backend.py
    (``open_session``, ``close_session``)."""
    before = served["sessions"].open_count()
    conn = connect(served)
    assert served["sessions"].open_count() == before + 1
    session_id = conn.get_session_id_hex()
    assert served["sessions"]._sessions[session_id].principal == "ana"
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert [tuple(r) for r in cur.fetchall()] == [(1,)]
    conn.close()
    assert served["sessions"].open_count() == before


def test_session_catalog_and_schema_are_the_defaults_of_its_statements(served):
    """``connect(catalog=..., schema=...)`` opens the session with them, and unqualified names
    in its statements resolve there, as the Statement Execution API's ``catalog`` / ``schema``
    ("Sets default catalog for statement execution, similar to USE CATALOG in SQL"),
    https://docs.databricks.com/api/workspace/statementexecution/executestatement"""
    rows, description = query(served, "SELECT count(*) AS n FROM v_yws_predictions",
                              catalog="yws_dev", schema="ml")
    assert rows == [(ROWS,)]
    assert description[0][:2] == ("n", "bigint")


def test_named_parameters_bind_with_their_types(served):
    """Native parameters (the connector's default, ``:name`` markers with a dict of values) are
    sent as typed ``parameters`` and bound by the server: "parameter markers are named ... typed
    placeholder variables",
    https://docs.databricks.com/aws/en/sql/language-manual/sql-ref-parameter-marker and
    https://github.com/databricks/databricks-sql-python/blob/main/docs/parameters.md"""
    rows, description = query(
        served, "SELECT :n + 1 AS n, :s AS s, :d AS d, :x IS NULL AS x_is_null, :f * 2 AS f, "
                ":b AS b, :m AS m",
        {"n": 41, "s": "it's", "d": dt.date(2026, 1, 2), "x": None, "f": 1.25, "b": True,
         "m": decimal.Decimal("3.14")})
    assert rows == [(42, "it's", dt.date(2026, 1, 2), True, 2.5, True, decimal.Decimal("3.14"))]
    assert [d[1] for d in description] == ["int", "string", "date", "boolean", "double",
                                          "boolean", "decimal"]


def test_named_parameters_filter_a_view(served):
    """A named parameter in a WHERE clause over a granted view returns the rows it selects:
    https://docs.databricks.com/dev-tools/python-sql-connector ("Query data", parameters)."""
    rows, _ = query(served, f"SELECT entity_id FROM {VIEW} WHERE entity_id IN (:a, :b) "
                            "ORDER BY entity_id", {"a": "C00000007", "b": "C00044999"})
    assert rows == [("C00000007",), ("C00044999",)]


def test_pyformat_markers_become_named_parameters(served):
    """``%(name)s`` markers with native parameters are rewritten by the connector to ``:name``
    and bound the same way ("transform_paramstyle"); with ``use_inline_params`` the connector
    renders them into the SQL text:
    https://github.com/databricks/databricks-sql-python/blob/main/docs/parameters.md"""
    rows, _ = query(served, "SELECT %(n)s * 2 AS n, %(s)s AS s", {"n": 21, "s": "x"})
    assert rows == [(42, "x")]
    # the legacy inline mode renders the values into the SQL text itself, escaped
    rows, _ = query(served, "SELECT %(n)s * 2 AS n, %(s)s AS s", {"n": 21, "s": "it's"},
                    use_inline_params="silent")
    assert rows == [(42, "it's")]


def test_typed_parameter_objects(served):
    """Typed parameter objects (``IntegerParameter``, ``DateParameter``, ``DecimalParameter``,
    ``TimestampParameter``...) send their SQL type; the server binds the value as that type:
    https://github.com/databricks/databricks-sql-python/blob/main/docs/parameters.md"""
    rows, description = query(
        served, "SELECT :n + 1 AS n, :d AS d, :m AS m, :s AS s, :t AS t",
        [IntegerParameter(name="n", value=1), DateParameter(name="d", value=dt.date(2026, 3, 1)),
         DecimalParameter(name="m", value=decimal.Decimal("12.50")),
         StringParameter(name="s", value="a"),
         TimestampParameter(name="t", value=dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC))])
    n, d, m, s, t = rows[0]
    assert (n, d, m, s) == (2, dt.date(2026, 3, 1), decimal.Decimal("12.50"), "a")
    assert t == dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    assert [x[1] for x in description][:4] == ["int", "date", "decimal", "string"]


def test_positional_parameters_are_refused(served):
    """Positional ``?`` markers: the connector's SEA backend "does not support positional
    parameter binding" (it sends them without a name); the server refuses the request at once
    (400, not retried):
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/backend.py"""
    with connect(served) as conn, conn.cursor() as cur:
        elapsed, error = timed(lambda: cur.execute("SELECT ? + 1 AS n", [1]))
    assert isinstance(error, RequestError) and "status 400" in str(error)
    assert elapsed < 5


# -- results --------------------------------------------------------------------------------
def test_fetchall_fetchmany_fetchone_over_several_chunks(served):
    """``fetchone`` / ``fetchmany`` / ``fetchall`` (PEP 249) read a result of several chunks in
    order, whole — by default over ``EXTERNAL_LINKS`` + ``ARROW_STREAM`` (``use_cloud_fetch``),
    fetching each chunk's link from ``…/result/chunks/{n}``:
    https://docs.databricks.com/api/workspace/statementexecution/getstatementresultchunkn"""
    with connect(served) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT entity_id FROM {VIEW} ORDER BY entity_id")
        first = cur.fetchone()
        some = cur.fetchmany(25_000)
        rest = cur.fetchall()
    ids = [first[0]] + [r[0] for r in some] + [r[0] for r in rest]
    assert ids == [f"C{i:08d}" for i in range(ROWS)]


def test_arrow_fetches_over_several_chunks(served):
    """``fetchmany_arrow`` / ``fetchall_arrow`` give Arrow tables with the result's types across
    chunk boundaries: https://docs.databricks.com/dev-tools/python-sql-connector
    (``fetchall_arrow``, ``fetchmany_arrow``)."""
    with connect(served) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT entity_id, probability, as_of_date FROM {VIEW} ORDER BY entity_id")
        head = cur.fetchmany_arrow(30_000)
        tail = cur.fetchall_arrow()
    assert (head.num_rows, tail.num_rows) == (30_000, ROWS - 30_000)
    assert head.schema.field("probability").type == pa.float64()
    assert head.schema.field("as_of_date").type == pa.date32()
    assert tail.column("entity_id")[-1].as_py() == f"C{ROWS - 1:08d}"


def test_inline_results_arrive_whole(served):
    """``use_cloud_fetch=False`` asks for ``INLINE`` + ``JSON_ARRAY``; the connector reads only
    the first chunk of an inline result (``JsonQueue``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/queue.py),
    so the server answers a session's inline request through links, and every row arrives."""
    rows, description = query(served, f"SELECT entity_id, as_of_date FROM {VIEW} "
                                      "ORDER BY entity_id", use_cloud_fetch=False)
    assert len(rows) == ROWS and rows[-1][0] == f"C{ROWS - 1:08d}"
    assert rows[0][1] == dt.date(2026, 9, 30)
    assert [d[1] for d in description] == ["string", "date"]


def test_hybrid_disposition_is_answered_with_links(served):
    """``use_hybrid_disposition=True`` sends ``INLINE_OR_EXTERNAL_LINKS`` (the warehouse picks);
    the server picks links and the connector reads them:
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/utils/constants.py"""
    rows, _ = query(served, f"SELECT count(*) AS n FROM {VIEW}", use_hybrid_disposition=True)
    assert rows == [(ROWS,)]


def test_result_compression_is_answered_uncompressed(served):
    """The connector asks for ``result_compression: LZ4_FRAME`` (``enable_query_result_lz4_
    compression``, on by default) and decompresses only when ``manifest.result_compression``
    says so (``_results_message_to_execute_response``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/backend.py):
    the server answers uncompressed and says nothing, so results read correctly either way."""
    session_id = open_session(served)
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "yws_local", "session_id": session_id, "statement": "SELECT 1 AS one",
        "format": "ARROW_STREAM", "disposition": "EXTERNAL_LINKS",
        "result_compression": "LZ4_FRAME", "wait_timeout": "10s"})
    assert status == 200, out
    assert out["status"]["state"] == "SUCCEEDED"
    assert "result_compression" not in out["manifest"]
    rows, _ = query(served, "SELECT 1 AS one", enable_query_result_lz4_compression=True)
    assert rows == [(1,)]


def test_description_names_databricks_types(served):
    """``cursor.description`` gives each column's name and its type as the connector names
    Databricks types (``tinyint`` … ``decimal`` with precision and scale):
    https://docs.databricks.com/aws/en/sql/language-manual/sql-ref-datatypes and the manifest
    ``schema.columns`` of https://docs.databricks.com/api/workspace/statementexecution/executestatement"""
    _, description = query(
        served, "SELECT CAST(1 AS TINYINT) a, CAST(1 AS SMALLINT) b, CAST(1 AS INT) c, "
                "CAST(1 AS BIGINT) d, CAST(1.5 AS FLOAT) e, CAST(1.5 AS DOUBLE) f, true g, "
                "DATE'2026-01-01' h, 'x' j, CAST(1.25 AS DECIMAL(10,2)) k")
    assert [(d[0], d[1]) for d in description] == [
        ("a", "tinyint"), ("b", "smallint"), ("c", "int"), ("d", "bigint"), ("e", "float"),
        ("f", "double"), ("g", "boolean"), ("h", "date"), ("j", "string"), ("k", "decimal")]
    assert description[-1][4:6] == (10, 2)


def test_row_limit_caps_the_result(served):
    """``cursor(row_limit=n)`` sends ``row_limit``: "Applies the given row limit to the
    statement's result set",
    https://docs.databricks.com/api/workspace/statementexecution/executestatement"""
    with connect(served) as conn, conn.cursor(row_limit=7) as cur:
        cur.execute(f"SELECT entity_id FROM {VIEW}")
        assert len(cur.fetchall()) == 7


# -- errors ---------------------------------------------------------------------------------
def test_execution_errors_raise_server_operation_error_with_the_message(served):
    """A statement that fails comes back ``FAILED`` with ``status.error``; the connector raises
    ``ServerOperationError`` (a ``DatabaseError``) carrying ``error_code`` and message
    (``_check_command_not_in_failed_or_closed_state``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/backend.py;
    statement ``status.error``: https://docs.databricks.com/api/workspace/statementexecution/executestatement)."""
    with connect(served) as conn, conn.cursor() as cur:
        for sql, marker in (("SELEC 1", "PARSE_SYNTAX_ERROR"),
                            ("SELECT * FROM yws_dev.ml.nope", "TABLE_OR_VIEW_NOT_FOUND")):
            elapsed, error = timed(lambda sql=sql: cur.execute(sql))
            assert isinstance(error, ServerOperationError), error
            assert isinstance(error, DatabaseError)
            assert marker in str(error)
            assert elapsed < 5
        cur.execute("SELECT 2 AS two")  # the session is still usable
        assert [tuple(r) for r in cur.fetchall()] == [(2,)]


def test_a_table_not_granted_fails_with_the_message(served):
    """A principal without SELECT on a view gets the permission error as a failed statement:
    https://docs.databricks.com/aws/en/data-governance/unity-catalog/manage-privileges/privileges"""
    with connect(served, who="mallory") as conn, conn.cursor() as cur:
        with pytest.raises(DatabaseError) as raised:
            cur.execute(f"SELECT count(*) FROM {VIEW}")
    assert "v_yws_predictions" in str(raised.value)


def test_execute_async_and_cancel(served):
    """``execute_async`` submits with ``wait_timeout=0s``; ``cancel()`` posts
    ``…/statements/{id}/cancel`` and the statement ends ``CANCELED`` ("Requests that an
    executing statement be canceled. Callers must poll for status to see the terminal state"):
    https://docs.databricks.com/api/workspace/statementexecution/cancelexecution"""
    with connect(served) as conn, conn.cursor() as cur:
        cur.execute_async(FOREVER)
        assert cur.get_query_state().name in ("PENDING", "RUNNING")
        cur.cancel()
        deadline = time.monotonic() + 10
        while cur.get_query_state().name != "CANCELLED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cur.execute_async("SELECT 5 AS five")
        while cur.is_query_pending():
            time.sleep(0.05)
        cur.get_async_execution_result()
        assert [tuple(r) for r in cur.fetchall()] == [(5,)]


def test_metadata_operations_are_refused(served):
    """``cursor.catalogs()`` / ``tables()`` run ``SHOW CATALOGS`` / ``SHOW TABLES`` through the
    statement API (``MetadataCommands``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/utils/constants.py);
    statements here are read-only queries, so they fail with that message."""
    with connect(served) as conn, conn.cursor() as cur:
        for call_it in (cur.catalogs, lambda: cur.tables(catalog_name="yws_dev")):
            elapsed, error = timed(call_it)
            assert isinstance(error, ServerOperationError), error
            assert "only queries" in str(error)
            assert elapsed < 5


def test_a_bad_token_fails_fast(served):
    """A token the server does not know: 401, which the connector never retries
    ("Received 401 - UNAUTHORIZED. Confirm your authentication credentials",
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/auth/retry.py)."""
    elapsed, error = timed(lambda: dbsql.connect(
        server_hostname="http://127.0.0.1", _port=served["port"], http_path=HTTP_PATH,
        access_token="dapi-not-a-token", use_sea=True, enable_telemetry=False))
    assert isinstance(error, RequestError) and "status 401" in str(error)
    assert elapsed < 5


# -- the session resource -------------------------------------------------------------------
def test_a_session_is_its_principals_own(served):
    """Only the principal that opened a session may run statements in it or close it; to anyone
    else it does not exist (404). The connector sends ``session_id`` with every statement
    (``ExecuteStatementRequest``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/models/requests.py)."""
    session_id = open_session(served, "ana")
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "yws_local", "session_id": session_id, "statement": "SELECT 1"},
        who="mallory")
    assert (status, out["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, out, _ = call(served, "DELETE", f"/api/2.0/sql/sessions/{session_id}",
                          {"warehouse_id": "yws_local", "session_id": session_id}, who="mallory")
    assert (status, out["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "yws_local", "session_id": session_id, "statement": "SELECT 1 AS one"})
    assert status == 200 and out["status"]["state"] == "SUCCEEDED", out
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "other", "session_id": session_id, "statement": "SELECT 1"})
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_a_closed_session_is_gone(served):
    """After ``DELETE /api/2.0/sql/sessions/{id}`` (``connection.close()``) the session is gone:
    a statement naming it, or a second close, gets 404 ("does not exist: it was closed")
    (``close_session``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/sea/backend.py)."""
    conn = connect(served)
    session_id = conn.get_session_id_hex()
    conn.close()
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "yws_local", "session_id": session_id, "statement": "SELECT 1"})
    assert (status, out["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "closed" in out["message"]
    status, _, _ = call(served, "DELETE", f"/api/2.0/sql/sessions/{session_id}",
                        {"warehouse_id": "yws_local", "session_id": session_id})
    assert status == 404
    status, out, _ = call(served, "POST", "/api/2.0/sql/statements", {
        "warehouse_id": "yws_local", "session_id": "not-a-session", "statement": "SELECT 1"})
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_an_idle_session_expires(served):
    """A session unused for the server's idle time ends; the connector's next statement fails
    at once (404, not retried: "Received 404 - NOT_FOUND",
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/auth/retry.py)."""
    store = served["sessions"]
    conn = connect(served)
    before, store.idle_ttl = store.idle_ttl, 0.3
    try:
        time.sleep(0.5)
        with conn.cursor() as cur:
            elapsed, error = timed(lambda: cur.execute("SELECT 1"))
        assert isinstance(error, RequestError) and "status 404" in str(error)
        assert elapsed < 5
    finally:
        store.idle_ttl = before
        conn.close()  # the connector logs the 404 of the gone session; close does not raise


def test_session_confs_are_checked(served):
    """``session_confs`` take the configuration parameters the connector lets through
    (https://docs.databricks.com/aws/en/sql/language-manual/sql-ref-parameters): those that
    only tune performance are accepted, ``TIMEZONE`` / ``ANSI_MODE`` /
    ``LEGACY_TIME_PARSER_POLICY`` only at the value the server runs with, ``STATEMENT_TIMEOUT``
    only when not shorter than the server's own (it cannot apply a shorter one); anything else is
    a 400 that names the parameter."""
    with connect(served, session_configuration={"TIMEZONE": "UTC", "ansi_mode": "true",
                                                "use_cached_result": "false",
                                                "STATEMENT_TIMEOUT": "0"}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            assert len(cur.fetchall()) == 1
    for confs, named in (({"timezone": "Europe/Paris"}, "timezone"),
                         ({"ansi_mode": "false"}, "ansi_mode"),
                         ({"statement_timeout": "5"}, "statement_timeout"),
                         ({"statement_timeout": "999999"}, "statement_timeout"),
                         ({"spark.sql.shuffle.partitions": "8"}, "spark.sql.shuffle.partitions")):
        status, out, _ = call(served, "POST", "/api/2.0/sql/sessions",
                              {"warehouse_id": "yws_local", "session_confs": confs})
        assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
        assert named in out["message"]
    elapsed, error = timed(lambda: connect(served,
                                           session_configuration={"TIMEZONE": "Asia/Tokyo"}))
    assert isinstance(error, RequestError) and "status 400" in str(error)
    assert elapsed < 5


def test_open_sessions_are_bounded(served):
    """A principal holds a bounded number of open sessions; one more is refused with
    ``RESOURCE_EXHAUSTED`` as a 400, which the connector does not retry (it retries a 429 for up
    to 15 minutes: ``status_forcelist=[429, 503]``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/auth/retry.py)."""
    store = served["sessions"]
    mine = sum(1 for s in store._sessions.values() if s.principal == "ana")
    before, store.per_principal = store.per_principal, mine + 2
    opened: list[str] = []
    try:
        opened = [open_session(served) for _ in range(2)]
        status, out, _ = call(served, "POST", "/api/2.0/sql/sessions",
                              {"warehouse_id": "yws_local"})
        assert (status, out["error_code"]) == (400, "RESOURCE_EXHAUSTED")
        assert open_session(served, "mallory")  # another principal is not affected
    finally:
        store.per_principal = before
        for session_id in opened:
            call(served, "DELETE", f"/api/2.0/sql/sessions/{session_id}", {})


def test_unknown_warehouse_catalog_or_schema_is_refused(served):
    """A session on a warehouse that does not exist (404, as ``executeStatement``'s
    ``warehouse_id``), or with a default catalog or schema that does not exist (as ``USE
    CATALOG``: ``NO_SUCH_CATALOG_EXCEPTION``, ``SCHEMA_NOT_FOUND``), is refused at connect time,
    without retries: https://docs.databricks.com/aws/en/sql/language-manual/sql-ref-syntax-ddl-use-catalog"""
    for options in ({"http_path": "/sql/1.0/warehouses/nope"}, {"catalog": "nope"},
                    {"catalog": "yws_dev", "schema": "nope"}):
        elapsed, error = timed(lambda options=options: connect(served, **options))
        assert isinstance(error, RequestError) and "status 404" in str(error), options
        assert elapsed < 5
    connect(served, catalog="yws_dev", schema="default").close()  # in every UC catalog
    status, out, _ = call(served, "POST", "/api/2.0/sql/sessions",
                          {"warehouse_id": "yws_local", "catalog": "nope"})
    assert (status, out["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "NO_SUCH_CATALOG_EXCEPTION" in out["message"]


# -- transports -----------------------------------------------------------------------------
def test_thrift_transport_fails_fast_saying_use_sea(served):
    """The connector's default transport POSTs Thrift to the ``http_path``; the server answers
    501, which the retry policy never retries ("Received code 501 from server",
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/auth/retry.py),
    with the message in ``x-thriftserver-error-message``, which the connector reports
    (``_extract_error_message_from_headers``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/backend/thrift_backend.py).
    The connector reaches a plain-HTTP server over Thrift only through ``_connection_uri``."""
    uri = f"{served['host']}{HTTP_PATH}"
    elapsed, error = timed(lambda: dbsql.connect(
        server_hostname="127.0.0.1", http_path=HTTP_PATH, access_token=served["tokens"]["ana"],
        _connection_uri=uri, enable_telemetry=False))
    assert isinstance(error, RequestError), error
    assert "use_sea=True" in str(error) and "does not speak Thrift" in str(error)
    assert elapsed < 5
    for path in (HTTP_PATH, "/sql/1.0/endpoints/yws_local", "/sql/protocolv1/o/0/0123-abc"):
        status, out, headers = call(served, "POST", path, {})
        assert status == 501
        assert "use_sea=True" in headers["x-thriftserver-error-message"]
        assert f"server_hostname='http://127.0.0.1', _port={served['port']}" in out["text"]
        assert "enable_telemetry=False" in out["text"]


def test_plain_http_needs_the_http_scheme_and_the_port_apart(served):
    """``server_hostname`` without a scheme means https (``normalize_host_with_protocol``,
    https://github.com/databricks/databricks-sql-python/blob/main/src/databricks/sql/common/url_utils.py):
    against this plain-HTTP port the TLS handshake fails (``WRONG_VERSION_NUMBER``) and the
    connector retries it like any connection error, for up to 15 minutes by default — nothing a
    plain-HTTP server answers can stop that (here capped at one attempt). With the port inside
    ``server_hostname`` the SEA client fails at once (it appends ``:443``); with ``http://`` and
    the Thrift transport the connector builds ``https://http://HOST…`` and looks up a host named
    ``http`` (retried like the TLS failure); the feature-flag request ``connect`` makes unless
    ``enable_telemetry=False`` ignores ``_port``."""
    elapsed, error = timed(lambda: dbsql.connect(
        server_hostname="127.0.0.1", _port=served["port"], http_path=HTTP_PATH,
        access_token=served["tokens"]["ana"], use_sea=True, enable_telemetry=False,
        _retry_stop_after_attempts_count=1))
    assert "WRONG_VERSION_NUMBER" in str(error) or "SSL" in str(error), error
    assert elapsed < 20
    error = timed(lambda: dbsql.connect(
        server_hostname=served["host"], http_path=HTTP_PATH,
        access_token=served["tokens"]["ana"], use_sea=True, enable_telemetry=False))[1]
    assert isinstance(error, ValueError) and ":443" in str(error)
    error = timed(lambda: dbsql.connect(
        server_hostname="http://127.0.0.1", _port=served["port"], http_path=HTTP_PATH,
        access_token=served["tokens"]["ana"], enable_telemetry=False,
        _retry_stop_after_attempts_count=1))[1]
    assert "host='http'" in str(error), error
    with connect(served) as conn:
        endpoint = conn.session.feature_flags._feature_flag_endpoint
    assert endpoint.startswith("http://127.0.0.1/api/2.0/connector-service/feature-flags/")


def test_tls_to_the_plain_http_port_is_refused_and_logged(served, caplog):
    """A client that speaks TLS to ``yws serve`` (``server_hostname`` without ``http://``) gets a
    fatal TLS alert, ``protocol_version`` ("the protocol version the peer has attempted to
    negotiate is recognized but not supported", https://www.rfc-editor.org/rfc/rfc8446#section-6.2),
    and the server log says which ``http://`` address and connector arguments to use; plain
    HTTP on the same port works as before (``PlainHttpProtocol``, uvicorn's ``http=``)."""
    import socket
    import threading

    import uvicorn

    from conftest import free_port
    from yws.server.sessions import PlainHttpProtocol

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(served["app"], host="127.0.0.1", port=port,
                                           http=PlainHttpProtocol, lifespan="off",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        PlainHttpProtocol._last_warning = 0.0
        with caplog.at_level("WARNING", logger="yws.server"):
            error = timed(lambda: dbsql.connect(
                server_hostname="127.0.0.1", _port=port, http_path=HTTP_PATH,
                access_token=served["tokens"]["ana"], use_sea=True, enable_telemetry=False,
                _retry_stop_after_attempts_count=1))[1]
        assert "alert protocol version" in str(error).lower(), error
        warnings = [r.getMessage() for r in caplog.records if r.name == "yws.server"]
        assert any(f"use http://127.0.0.1:{port}" in w and
                   f"server_hostname='http://127.0.0.1', _port={port}" in w for w in warnings)
        rows, _ = query({**served, "port": port}, "SELECT 3 AS three")
        assert rows == [(3,)]
    finally:
        server.should_exit = True
        thread.join(10)
