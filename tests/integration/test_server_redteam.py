"""Red team of the surfaces `yws serve` grew for issue 13's conformance (items 15, 19, 22, 23).

An attacker holds a valid token and no grants, or a clumsy user sends what the documentation
does not foresee, against what the conformance work added: typed parameters bound as
``CAST($p AS type)``, the request's ``catalog``/``schema`` qualifying names, the
``DIVIDE_BY_ZERO`` guard, Spark-style results, external links, SQL sessions and ``runs/repair``.
Every refusal is asserted exactly: its status, its error code, and that nothing leaks (no
server path, no traceback). Each family sends the attack in several forms.

What was found and is fixed here (each family says so):

* typed parameters: a DECIMAL precision of 5000 digits, a DECIMAL value of ``1e999999999``, and
  any DECIMAL value of more than 28 digits (``DECIMAL(38,0)``, ``0.5`` as ``DECIMAL(38,30)``)
  answered a plain HTTP 500 (``int()`` of 5000 digits; ``Decimal.quantize`` under the default
  28-digit context); an INT of Arabic-Indic digits bound as a number;
* a result holding a date or timestamp past Python's year 9999 (``DATE '10000-01-01'``,
  ``'infinity'``, a TIMESTAMP parameter at ``9999-12-31T23:59:59-14:00``) answered 500 on submit
  and on every later fetch;
* the division guard copied each divisor twice, so ``1/(1/(1/...))`` grew as 2^depth: 16 levels
  (a 70-byte statement) held a core for 48 s before the statement even existed, out of reach of
  cancel and of the statement timeout;
* a statement is parsed and rewritten in Python outside the statement timeout, with no bound
  but 16 MiB of text: 400 kB of ``1/x`` columns took 45 s and 1.4 GB (16 MiB: half an hour and
  tens of GB, any token, no grant needed); now at most 50,000 tokens, counted before parsing;
* finished statements were forgotten oldest first beyond 10,000 in all, so one token sending
  failing statements in a loop (no grant needed) pushed out everyone else's unread results;
* an external link whose expiry had 5000 digits, or whose signature was not ASCII, answered
  500 (that route takes no token);
* ``user()`` and ``session_user()`` answered DuckDB's user name, ``duckdb``, not the caller;
* a job parameter value that looked like a flag (``--mode=ok``) became a task argument of its
  own, so a runner could change what a task does (the gated task passed without its gate);
* a NUL in a job parameter started a run that could only end INTERNAL_ERROR;
* ``runs/repair`` echoed every unknown ``rerun_tasks`` key, duplicates included: a 100 kB
  error message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from conftest import serving, synthetic_home
from test_conformance_jobs import task_world
from yws.server.app import create_app
from yws.server.store import Store
from yws.warehouse import check_query
from yws.warehouse.dialect import to_duckdb

WH = "yws_local"
STATEMENTS = "/api/2.0/sql/statements"
SESSIONS = "/api/2.0/sql/sessions"


def short(value: Any) -> str:
    """A test id for a value that may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)})"


HOSTILE_PRINCIPAL = "o'hare\"); SELECT * FROM yws_dev.ml.yws_features; -- $x :y"


@pytest.fixture(scope="module")
def sql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A home with the SQL layer over synthetic predictions (no Spark); an analyst and a token
    with no grants at all."""
    home = synthetic_home(tmp_path_factory.mktemp("redteam-sql"), 50)
    store = Store(home.home.resolve() / "server.db")
    tokens = {"ana": store.create_token("ana", ["yws_analysts"]),
              "mallory": store.create_token("mallory", []),
              "o'hare": store.create_token(HOSTILE_PRINCIPAL, [])}
    app = create_app(home)
    with serving(app) as host:
        yield {"host": host, "tokens": tokens, "home": str(home.home.resolve()), "app": app}


def call(server: dict[str, Any], method: str, path: str, who: str | None = "ana",
         **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {server['tokens'][who]}"} if who else {}
    return requests.request(method, server["host"] + path, headers=headers, timeout=60,
                            **kwargs)


def execute(server: dict[str, Any], statement: str, who: str = "ana",
            **body: Any) -> requests.Response:
    return call(server, "POST", STATEMENTS, who,
                json={"warehouse_id": WH, "wait_timeout": "30s", "statement": statement, **body})


def refused(response: requests.Response, status: int, code: str, home: str) -> str:
    """A Databricks-shaped error: the status, the code, and no path or traceback in it."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    assert home not in body["message"] and "Traceback" not in body["message"]
    return str(body["message"])


def failed(response: requests.Response, error_class: str, sql_state: str, home: str) -> str:
    """A statement that ended FAILED (HTTP 200) with the Databricks error class."""
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    status = body["status"]
    assert status["state"] == "FAILED", body
    message = status["error"]["message"]
    assert message.startswith(f"[{error_class}] ") and status["sql_state"] == sql_state, status
    assert "result" not in body and home not in message and "Traceback" not in message
    return str(message)


def rows(response: requests.Response) -> list[list[Any]]:
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["status"]["state"] == "SUCCEEDED", body["status"]
    return list(body["result"]["data_array"])


# -- typed parameters: CAST($p AS <type>) --------------------------------------------------
@pytest.mark.parametrize("type_text", [
    "INT) FROM yws_dev.ml.yws_predictions; --",
    "DECIMAL(1,1)); DROP TABLE yws_dev.ml.yws_predictions; --",
    "STRING) UNION SELECT * FROM yws_dev.ml.yws_features --",
    "DATE' OR '1'='1",
    "INT\u0000",
    "DECIMAL(" + "9" * 5000 + ")",  # was a 500: int() of 5000 digits
    "DECIMAL(10," + "9" * 5000 + ")",
    "DECIMAL(\u0661\u0660,\u0662)",  # Arabic-Indic digits
    "\uff29\uff2e\uff34",  # fullwidth INT
    "DECIMAL(99,0)",
    "DECIMAL(10,11)",
    "DECIMAL(38,-1)",
    "ARRAY<INT>",
    "INTERVAL DAY",
    "TIMESTAMP WITH TIME ZONE",
    "x" * 10_000,
    "DECIMAL(38," + "x" * 1_000_000 + ")",
], ids=short)
def test_a_hostile_parameter_type_is_a_request_error(sql, type_text):
    """A type is one of the parameter types, parsed into a canonical one before it reaches the
    SQL text; anything else is a 400 and no statement, however it is written."""
    response = execute(sql, "SELECT :p AS x",
                       parameters=[{"name": "p", "value": "1", "type": type_text}])
    message = refused(response, 400, "INVALID_PARAMETER_VALUE", sql["home"])
    assert message.startswith("parameters.p: parameter type ")
    assert len(message) < 1000  # the type is echoed cut short (it was echoed whole)


@pytest.mark.parametrize(("value", "type_text", "error_class", "sql_state"), [
    ("1e999999999", "DECIMAL(10,2)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),  # was a 500
    ("-1e999999999", "DECIMAL(38,0)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),
    ("9" * 5000, "DECIMAL(38,0)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),  # was a 500
    ("1" + "0" * 38, "DECIMAL(38,0)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),
    ("1", "DECIMAL(38,38)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),  # was a 500
    ("9.995", "DECIMAL(3,2)", "NUMERIC_VALUE_OUT_OF_RANGE", "22003"),
    ("NaN", "DECIMAL(5,2)", "CAST_INVALID_INPUT", "22018"),
    ("Infinity", "DECIMAL(5,2)", "CAST_INVALID_INPUT", "22018"),
    ("1e", "DECIMAL(5,2)", "CAST_INVALID_INPUT", "22018"),
    ("\u0661", "INT", "CAST_INVALID_INPUT", "22018"),  # was bound as 1
    ("\uff11", "BIGINT", "CAST_INVALID_INPUT", "22018"),
    ("9" * 41, "BIGINT", "CAST_INVALID_INPUT", "22018"),
    ("2147483648", "INT", "CAST_INVALID_INPUT", "22018"),
    ("\u0661.\u0665", "DOUBLE", "CAST_INVALID_INPUT", "22018"),
    ("1; DROP TABLE x", "INT", "CAST_INVALID_INPUT", "22018"),
    ("2026-02-30", "DATE", "CAST_INVALID_INPUT", "22018"),
    ("2026-01-01T00:00:00+99:00", "TIMESTAMP", "CAST_INVALID_INPUT", "22018"),
], ids=short)
def test_a_hostile_parameter_value_fails_its_statement(sql, value, type_text, error_class,
                                                       sql_state):
    """A value that is not of its type fails the statement as a Databricks cast does."""
    response = execute(sql, "SELECT :p AS x",
                       parameters=[{"name": "p", "value": value, "type": type_text}])
    message = failed(response, error_class, sql_state, sql["home"])
    assert message.startswith(f"[{error_class}] parameter :p: ")
    assert len(message) < 600


@pytest.mark.parametrize(("value", "type_text", "want"), [
    ("12345678901234567890123456789012", "DECIMAL(38,0)", "12345678901234567890123456789012"),
    ("-99999999999999999999999999999999999999", "DECIMAL(38,0)",
     "-99999999999999999999999999999999999999"),
    ("0.5", "DECIMAL(38,30)", "0." + "5" + "0" * 29),
    ("1e-999999999", "DECIMAL(10,2)", "0.00"),
    ("0.999", "DECIMAL(3,2)", "1.00"),
])
def test_wide_decimal_parameters_bind(sql, value, type_text, want):
    """DECIMAL parameters up to 38 digits bind exactly (29 digits and more were a 500)."""
    response = execute(sql, "SELECT :p AS x",
                       parameters=[{"name": "p", "value": value, "type": type_text}])
    assert rows(response) == [[want]]


# -- current_user() and its aliases ---------------------------------------------------------
@pytest.mark.parametrize("who, name", [("ana", "ana"), ("mallory", "mallory"),
                                       ("o'hare", HOSTILE_PRINCIPAL)])
@pytest.mark.parametrize("function", ["current_user()", "current_user", "user()",
                                      "session_user()", "upper(user())"])
def test_every_user_function_is_the_caller(sql, who, name, function):
    """current_user() and its aliases user() and session_user() are the principal, bound as a
    value (a principal name that looks like SQL stays a name); user() and session_user() were
    DuckDB's own user, ``duckdb``."""
    response = execute(sql, f"SELECT {function} AS u", who=who)
    assert rows(response) == [[name.upper() if function.startswith("upper") else name]]


# -- results: dates and timestamps past Python's range -------------------------------------
@pytest.mark.parametrize(("statement", "want"), [
    ("SELECT CAST('10000-01-01' AS DATE) AS d", "+10000-01-01"),
    ("SELECT DATE '5000000-01-01' AS d", "+5000000-01-01"),
    ("SELECT CAST('infinity' AS DATE) AS d", "+5881580-07-11"),
    ("SELECT CAST('200000-01-01 12:34:56.789' AS TIMESTAMP) AS d",
     "+200000-01-01T12:34:56.789Z"),
    ("SELECT CAST('200000-01-01 12:34:56.789' AS TIMESTAMP_NTZ) AS d",
     "+200000-01-01T12:34:56.789"),
    ("SELECT array(CAST('10000-01-01' AS DATE), NULL) AS d", '["+10000-01-01",null]'),
    ("SELECT named_struct('a', CAST('10000-01-01' AS DATE), 'b', 1) AS d",
     '{"a":"+10000-01-01","b":1}'),
    ("SELECT map(1, CAST('10000-02-29' AS DATE)) AS d", '{"1":"+10000-02-29"}'),
])
def test_dates_past_year_9999_are_text_not_a_500(sql, statement, want):
    """Databricks' DATE and TIMESTAMP reach far past year 9999 (ISO 8601 with an expanded year,
    as Spark writes it); DuckDB does too, Python's datetime does not: every fetch of such a
    result was a 500."""
    response = execute(sql, statement)
    assert rows(response) == [[want]]
    statement_id = response.json()["statement_id"]
    again = call(sql, "GET", f"{STATEMENTS}/{statement_id}")
    assert again.json()["result"]["data_array"] == [[want]]
    chunk = call(sql, "GET", f"{STATEMENTS}/{statement_id}/result/chunks/0")
    assert chunk.json()["data_array"] == [[want]]


def test_a_timestamp_parameter_that_ends_past_year_9999(sql):
    """A TIMESTAMP parameter within Python's range whose UTC instant is not (was a 500)."""
    response = execute(sql, "SELECT :t AS t", parameters=[
        {"name": "t", "value": "9999-12-31T23:59:59-14:00", "type": "TIMESTAMP"}])
    assert rows(response) == [["+10000-01-01T13:59:59.000Z"]]


# -- the DIVIDE_BY_ZERO guard on hostile expressions ---------------------------------------
def _nested(depth: int, op: str, inner: str = "1") -> str:
    text = inner
    for _ in range(depth):
        text = f"1 {op} ({text} + 1)"  # never a zero divisor, unless the innermost is one
    return f"SELECT {text} AS x"


def test_a_nested_divisor_is_tested_as_written_and_evaluated_guarded():
    """The exact DuckDB SQL of a division whose divisor divides again: the test of the outer
    divisor is the divisor as written, so each divisor appears guarded only once."""
    guard = ("ERROR('[DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor "
             "being 0 and return NULL instead. SQLSTATE: 22012')")
    duck, _ = to_duckdb(check_query("SELECT a / (b / c) AS x FROM t", {}), {})
    assert duck == (f"SELECT a / (CASE WHEN (b / c) = 0 THEN {guard} ELSE (b / (CASE WHEN c = 0 "
                    f"THEN {guard} ELSE c END)) END) AS x FROM t")


@pytest.mark.parametrize("op", ["/", "%", "div"])
@pytest.mark.parametrize("depth", [16, 24, 40])
def test_nested_divisions_are_guarded_in_bounded_time(sql, op, depth):
    """A divisor that divides again is guarded without being copied twice per level (16 levels
    took 48 s, 40 would take years): the answer comes at once, a value or a zero division."""
    start = time.monotonic()
    response = execute(sql, _nested(depth, op))
    if response.status_code == 400:  # past what the parser nests: the request's own error
        refused(response, 400, "INVALID_PARAMETER_VALUE", sql["home"])
    else:
        assert len(rows(response)) == 1
        zero = execute(sql, _nested(depth, op, f"1 {op} 0"))
        failed(zero, "DIVIDE_BY_ZERO", "22012", sql["home"])
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("statement", [
    "SELECT " + " + ".join(f"1 / (2 / (3 / {i + 1}))" for i in range(300)) + " AS x",
    "SELECT " + "/".join(["(1/(1/(1/(1/(1/1)))))"] * 60) + " AS x",
], ids=short)
def test_wide_division_statements_are_bounded(sql, statement):
    start = time.monotonic()
    response = execute(sql, statement)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        refused(response, 400, "INVALID_PARAMETER_VALUE", sql["home"])
    else:
        assert response.json()["status"]["state"] == "SUCCEEDED"
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("statement", [
    "SELECT " + ",".join(["1/x"] * 4_000_000),  # 16 MiB: half an hour and tens of GB to rewrite
    "SELECT " + ",".join(["1"] * 60_000),
    "SELECT 1 WHERE 1 IN (" + ",".join(["1"] * 30_000) + ")",
    "SELECT " + "\\'" * 7_000_000,  # escaped quotes that never close
    "SELECT " + "'" * 15_000_000 + "x",
    "SELECT " + "`a`." * 3_000_000 + "b",
], ids=short)
def test_a_statement_of_too_many_tokens_is_refused_before_it_is_parsed(sql, statement):
    """The statement is parsed and rewritten in Python, outside the statement timeout: more
    than 50,000 tokens is a request error at once (a 400 kB statement of ``1/x`` columns took
    45 s and 1.4 GB before the bound)."""
    start = time.monotonic()
    response = execute(sql, statement, who="mallory")
    message = refused(response, 400, "INVALID_PARAMETER_VALUE", sql["home"])
    assert message.startswith("statement has more than 50000 tokens")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("statement", [
    "SELECT " + ",".join(["1"] * 12_000),
    "SELECT '" + "x, " * 200_000 + "' AS s",  # a long string is one token
], ids=short)
def test_a_large_statement_under_the_bound_runs(sql, statement):
    response = execute(sql, statement)
    assert response.json()["status"]["state"] == "SUCCEEDED"


# -- catalog / schema of the request and of a session --------------------------------------
HOSTILE_NAMESPACES = [
    ("yws_dev`.ml.yws_features --", "ml"), ("yws_dev", "ml`.yws_features --"),
    ("yws_dev.ml", "yws_features"), ("system", "main"), ("temp", "main"), ("memory", "main"),
    ("yws_dev", "information_schema"), ("system", "information_schema"), ("yws_dev", "main"),
    ("/tmp", "x"), ("..", "ml"), ("yws_dev", "*"), ("\uff59ws_dev", "ml"), ("yws_dev", "ml\u0000"),
    ("yws_dev", "ml\n"), ("'yws_dev'", "ml"), ("\"yws_dev\"", "ml"),
]


@pytest.mark.parametrize("who", ["ana", "mallory"])
@pytest.mark.parametrize(("catalog", "schema"), HOSTILE_NAMESPACES)
def test_a_hostile_request_namespace_reads_nothing(sql, who, catalog, schema):
    """The request's catalog and schema only complete names that must then be catalog objects
    granted to the caller: no quoting escapes them, no DuckDB catalog or file is reached."""
    response = execute(sql, "SELECT * FROM yws_features", who=who, catalog=catalog,
                       schema=schema)
    failed(response, "TABLE_OR_VIEW_NOT_FOUND", "42P01", sql["home"])
    assert "entity_id" not in response.text


@pytest.mark.parametrize(("catalog", "schema", "status", "code"), [
    ("system", None, 404, "RESOURCE_DOES_NOT_EXIST"),
    ("yws_dev`; --", None, 404, "RESOURCE_DOES_NOT_EXIST"),
    ("yws_dev", "information_schema", 404, "RESOURCE_DOES_NOT_EXIST"),
    ("yws_dev", "main", 404, "RESOURCE_DOES_NOT_EXIST"),
    ("temp", "main", 404, "RESOURCE_DOES_NOT_EXIST"),
    ("/etc", None, 404, "RESOURCE_DOES_NOT_EXIST"),
    ("x" * 256, None, 400, "INVALID_PARAMETER_VALUE"),
    (5, None, 400, "INVALID_PARAMETER_VALUE"),
    (["yws_dev"], None, 400, "INVALID_PARAMETER_VALUE"),
    ("yws_dev", {"a": 1}, 400, "INVALID_PARAMETER_VALUE"),
])
def test_a_hostile_session_namespace_is_refused(sql, catalog, schema, status, code):
    """A session's catalog and schema must exist, as USE CATALOG / USE SCHEMA."""
    body = {"warehouse_id": WH, "catalog": catalog, **({"schema": schema} if schema else {})}
    refused(call(sql, "POST", SESSIONS, json=body), status, code, sql["home"])


def test_a_session_namespace_grants_nothing(sql):
    """An outsider's session on the catalog reads no more than the outsider may; a request's own
    catalog wins over the session's and is checked the same way."""
    opened = call(sql, "POST", SESSIONS, "mallory",
                  json={"warehouse_id": WH, "catalog": "yws_dev", "schema": "ml"})
    session_id = opened.json()["session_id"]
    for statement in ("SELECT * FROM v_yws_predictions", "SELECT * FROM yws_predictions"):
        response = execute(sql, statement, who="mallory", session_id=session_id)
        failed(response, "INSUFFICIENT_PERMISSIONS", "42501", sql["home"])
    response = execute(sql, "SELECT * FROM v_yws_predictions", who="mallory",
                       session_id=session_id, catalog="system", schema="main")
    failed(response, "TABLE_OR_VIEW_NOT_FOUND", "42P01", sql["home"])


# -- one principal's flood and everyone else's statements ------------------------------------
def test_one_token_cannot_push_out_another_principals_statements(sql):
    """Finished statements are forgotten oldest first beyond a bound; a token with no grant
    sending failing statements in a loop pushed everyone's out (ana's unread result was a 404)
    until each principal had its own bound, within which only its own oldest go."""
    service = sql["app"].state.statements
    before = service.limits
    service.limits = replace(before, max_records=30, max_records_per_principal=10)
    try:
        mine = execute(sql, "SELECT 42 AS answer").json()["statement_id"]
        flood = [execute(sql, "SELECT * FROM yws_dev.ml.yws_features", who="mallory")
                 .json()["statement_id"] for _ in range(45)]
        deadline = time.monotonic() + 5
        while call(sql, "GET", f"{STATEMENTS}/{flood[-11]}", "mallory").status_code != 404:
            assert time.monotonic() < deadline, "the flood was not bounded"
            time.sleep(0.05)
        assert call(sql, "GET", f"{STATEMENTS}/{flood[-1]}", "mallory").status_code == 200
        assert call(sql, "GET", f"{STATEMENTS}/{mine}/result/chunks/0").json()[
            "data_array"] == [["42"]]
    finally:
        service.limits = before


# -- external links: the one route without a token ------------------------------------------
@pytest.mark.parametrize("secret", [
    "9" * 5000 + ".abc",  # was a 500: int() of 5000 digits
    "1796018700.%C3%A4",  # was a 500: compare_digest of a non-ASCII str
    "1796018700.%F0%9F%92%A5",
    "\u0661\u0662\u0663.abc",
    "-1.abc",
    "1796018700.",
    "abc",
    "0." + "f" * 64,
], ids=short)
def test_a_forged_result_link_is_not_found(sql, secret):
    response = execute(sql, "SELECT 1 AS x", disposition="EXTERNAL_LINKS", format="CSV")
    statement_id = response.json()["statement_id"]
    forged = call(sql, "GET", f"/api/2.0/sql/results/{statement_id}/0/{secret}", who=None)
    refused(forged, 404, "RESOURCE_DOES_NOT_EXIST", sql["home"])


# -- Jobs: runs/repair ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The conformance bundle with cheap task processes, and one ended (failed) run of chain."""
    settings, bundle_root, bin_dir = task_world(tmp_path_factory.mktemp("redteam-jobs"))
    store = Store(settings.home.resolve() / "server.db")
    tokens = {"ana": store.create_token("tester", ["runners"]),
              "mallory": store.create_token("mallory", [])}
    with serving(create_app(settings, bundle_root=bundle_root, bin_dir=bin_dir)) as host:
        server = {"host": host, "tokens": tokens, "home": str(settings.home.resolve())}
        listed = call(server, "GET", "/api/2.2/jobs/list").json()["jobs"]
        server["job_id"] = {j["settings"]["name"]: j["job_id"] for j in listed}["chain"]
        run_id = call(server, "POST", "/api/2.2/jobs/run-now",
                      json={"job_id": server["job_id"]}).json()["run_id"]
        deadline = time.monotonic() + 60
        while call(server, "GET", f"/api/2.2/jobs/runs/get?run_id={run_id}").json()[
                "state"]["life_cycle_state"] != "TERMINATED":
            assert time.monotonic() < deadline, "the chain run did not end"
            time.sleep(0.1)
        server["run_id"] = run_id
        yield server


@pytest.mark.parametrize(("fields", "says"), [
    ({"rerun_tasks": [f"k{i:099d}" for i in range(1000)]}, "'k0"),  # was a 100 kB message
    ({"rerun_tasks": ["nope"] * 1000}, "'nope' is not a task of run"),
    ({"rerun_tasks": ["a"] * 1001}, "a list of 1 to 1000 task keys"),
    ({"rerun_tasks": []}, "a list of 1 to 1000 task keys"),
    ({"rerun_tasks": "a"}, "a list of 1 to 1000 task keys"),
    ({"rerun_tasks": {"a": 1}}, "a list of 1 to 1000 task keys"),
    ({"rerun_tasks": [1]}, "each task key must be a string"),
    ({"rerun_tasks": [None]}, "each task key must be a string"),
    ({"rerun_tasks": [""]}, "each task key must be a string"),
    ({"rerun_tasks": ["x" * 101]}, "each task key must be a string"),
    ({"rerun_tasks": ["+a"]}, "'+a' is not a task of run"),
    ({"rerun_tasks": ["a"], "latest_repair_id": True}, "latest_repair_id must be"),
    ({"rerun_tasks": ["a"], "latest_repair_id": "1e3"}, "latest_repair_id must be"),
    ({"rerun_tasks": ["a"], "latest_repair_id": 2**64}, "latest_repair_id must be"),
    ({"rerun_tasks": ["a"], "latest_repair_id": -1}, "latest_repair_id must be"),
    ({"rerun_tasks": ["a"], "latest_repair_id": 1.5}, "latest_repair_id must be"),
    ({"rerun_tasks": ["a"], "latest_repair_id": 1}, "has not been repaired yet"),
    ({"rerun_tasks": ["a"], "rerun_all_failed_tasks": "true"}, "must be true or false"),
    ({"rerun_tasks": ["a"], "rerun_dependent_tasks": 1}, "must be true or false"),
    ({"rerun_all_failed_tasks": False}, "name the tasks to repair"),
    ({"rerun_tasks": ["a"], "job_parameters": {"": "1"}}, "parameter name must be"),
    ({"rerun_tasks": ["a"], "job_parameters": ["gate"]}, "job_parameters must be an object"),
    ({"rerun_tasks": ["a"], "queue": {"enabled": True}}, "unknown field 'queue'"),
    ({"rerun_tasks": ["a"], "python_params": ["x"]}, "pass job_parameters instead"),
])
def test_a_hostile_repair_is_refused_in_a_few_words(jobs, fields, says):
    """Every refusal of runs/repair is a 400 that says what is wrong in a bounded message, and
    the run is not repaired."""
    response = call(jobs, "POST", "/api/2.2/jobs/runs/repair",
                    json={"run_id": jobs["run_id"], **fields})
    message = refused(response, 400, "INVALID_PARAMETER_VALUE", jobs["home"])
    assert says in message and len(message) < 2000, message[:300]
    run = call(jobs, "GET", f"/api/2.2/jobs/runs/get?run_id={jobs['run_id']}&include_history=true")
    assert run.json()["state"]["life_cycle_state"] == "TERMINATED"
    assert len(run.json()["repair_history"]) == 1


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/2.2/jobs/runs/repair", {"rerun_tasks": ["a"]}),
    ("POST", "/api/2.2/jobs/runs/repair", {"rerun_all_failed_tasks": True}),
    ("POST", "/api/2.2/jobs/runs/cancel", {}),
    ("GET", "/api/2.2/jobs/runs/get?run_id={run}", None),
    ("GET", "/api/2.2/jobs/runs/get-output?run_id={task}", None),
])
def test_a_token_without_permission_touches_no_run(jobs, method, path, body):
    """A principal without a permission on the job neither repairs, cancels nor reads its runs
    or their task runs' output."""
    run = call(jobs, "GET", f"/api/2.2/jobs/runs/get?run_id={jobs['run_id']}").json()
    path = path.format(run=jobs["run_id"], task=run["tasks"][0]["run_id"])
    kwargs = {"json": {"run_id": jobs["run_id"], **body}} if body is not None else {}
    response = call(jobs, method, path, "mallory", **kwargs)
    message = refused(response, 403, "PERMISSION_DENIED", jobs["home"])
    assert "gate" not in message


@pytest.mark.parametrize("only", [["+"], ["++"], ["a++"], ["+++a"], [" a"], ["A"], ["+" * 102]])
def test_hostile_only_forms_start_nothing(jobs, only):
    before = len(call(jobs, "GET", "/api/2.2/jobs/runs/list?limit=25").json()["runs"])
    response = call(jobs, "POST", "/api/2.2/jobs/run-now",
                    json={"job_id": jobs["job_id"], "only": only})
    message = refused(response, 400, "INVALID_PARAMETER_VALUE", jobs["home"])
    assert message.startswith("only: ")
    assert len(call(jobs, "GET", "/api/2.2/jobs/runs/list?limit=25").json()["runs"]) == before


@pytest.mark.parametrize("value", ["--mode=ok", "--home=/tmp/elsewhere", "--target=databricks",
                                   "--gate", "--"])
def test_a_job_parameter_value_never_becomes_a_flag(jobs, value):
    """A task's ``--gate {{job.parameters.gate}}`` gets the runner's value as its value, whatever
    it looks like: ``--mode=ok`` made a flag of its own, so the gated task passed without its
    gate (and ``--home=...`` moved the task to another home)."""
    started = call(jobs, "POST", "/api/2.2/jobs/run-now",
                   json={"job_id": jobs["job_id"], "only": ["a"],
                         "job_parameters": {"gate": value}})
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 60
    while (run := call(jobs, "GET", f"/api/2.2/jobs/runs/get?run_id={run_id}").json())[
            "state"]["life_cycle_state"] != "TERMINATED":
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)
    assert run["state"]["result_state"] == "FAILED"  # the gate named by the value is closed
    (task,) = run["tasks"]
    output = call(jobs, "GET", f"/api/2.2/jobs/runs/get-output?run_id={task['run_id']}").json()
    assert json.loads(output["logs"].splitlines()[0]) == {"mode": "gate", "gate": value}


@pytest.mark.parametrize("endpoint", ["run-now", "runs/repair"])
@pytest.mark.parametrize("params", [{"gate": "a\u0000b"}, {"gate": "\u0000"},
                                    {"ga\u0000te": "x"}, {"gate": "ok", "\u0000": ""}])
def test_a_nul_in_a_job_parameter_is_refused_before_a_run(jobs, endpoint, params):
    """No process argument holds a NUL: such a value started a run that ended INTERNAL_ERROR
    ("embedded null byte"); it is refused with the request, and nothing runs."""
    before = call(jobs, "GET", "/api/2.2/jobs/runs/list?limit=25").json()["runs"]
    body = ({"job_id": jobs["job_id"], "only": ["a"]} if endpoint == "run-now" else
            {"run_id": jobs["run_id"], "rerun_tasks": ["a"]})
    response = call(jobs, "POST", f"/api/2.2/jobs/{endpoint}",
                    json={**body, "job_parameters": params})
    message = refused(response, 400, "INVALID_PARAMETER_VALUE", jobs["home"])
    assert "holds a NUL character" in message
    assert call(jobs, "GET", "/api/2.2/jobs/runs/list?limit=25").json()["runs"] == before


def test_host_metadata_tells_an_anonymous_caller_nothing(jobs, sql):
    """``/.well-known/databricks-config`` is unauthenticated, as on a workspace: a workspace id
    and nothing of the server's home or paths."""
    for server in (jobs, sql):
        response = call(server, "GET", "/.well-known/databricks-config", who=None)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"workspace_id"} and body["workspace_id"].isdigit()
        assert server["home"] not in response.text and "/" not in json.dumps(body)
