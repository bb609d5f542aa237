"""``ai_query`` on the local warehouse with a stand-in scorer (no model): the call's syntax as
Databricks documents it, the DuckDB it becomes, the result types, and the refusals.

Syntax (https://docs.databricks.com/en/sql/language-manual/functions/ai_query.html):
``ai_query(endpoint, request)`` for a custom model endpoint with a model schema, and
``ai_query(endpoint, request, returnType, failOnError)`` without one; ``endpoint`` is a STRING
literal; ``request`` a struct whose field names match the model's input features; with
``failOnError => false`` the answer is ``STRUCT<result, errorMessage>``; without
``returnType`` the result's type is the served model's signature (here probability,
prediction, band, error: ``yws.model.flavor``). A predictive model called with
``named_struct`` is the guide's example
(https://docs.databricks.com/en/large-language-models/how-to-ai-query.html).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import sqlglot

from yws.contract.spec import load_spec
from yws.contract.sqlfiles import statements
from yws.scoring.ai_query import endpoint_name
from yws.warehouse.ai_query import check, rewrite
from yws.warehouse.base import SqlError
from yws.warehouse.dialect import to_duckdb
from yws.warehouse.local import LocalWarehouse

SPEC = load_spec()
REQUEST = "named_struct(" + ", ".join(f"'{f.name}', {f.name}" for f in SPEC.features) + ")"
ROW = ("12.0 AS tenure_months, 50.0 AS monthly_spend, 0.3 AS balance_utilization, "
       "1.0 AS days_past_due_avg, 0.0 AS late_payments_12m, 1000.0 AS credit_limit, "
       "2.0 AS support_calls_90d, true AS has_autopay, false AS is_business, "
       "'north' AS region, 'gold' AS product_tier, 'web' AS channel")


class FakeEndpoints:
    """Probability = tenure_months / 100; a row with a null tenure is refused."""

    def __init__(self, names=("ep",)):
        self.names, self.calls = names, []

    def __call__(self, endpoint: str, rows: pa.Table) -> pa.Table:
        if endpoint not in self.names:
            from yws.warehouse.ai_query import EndpointNotFoundError

            raise EndpointNotFoundError(endpoint, list(self.names))
        self.calls.append((endpoint, rows.num_rows, rows.schema))
        t = np.asarray(rows["tenure_months"].to_numpy(zero_copy_only=False), dtype=float)
        refused = np.isnan(t)
        p = t / 100 + (0.5 if endpoint == "other" else 0.0)
        return pa.table({
            "probability": pa.array(np.where(refused, 0, p), mask=refused),
            "prediction": pa.array((p >= 0.5).astype(np.int32), mask=refused),
            "band": pa.array(np.where(p >= 0.4, "RED", "GREEN"), mask=refused),
            "error": pa.array([("tenure_months is null or NaN" if r else None)
                               for r in refused], pa.string())})


@pytest.fixture
def warehouse(settings):
    wh = LocalWarehouse(settings, FakeEndpoints(("ep", "other", "yws_lr")))
    wh.apply(statements(settings))
    yield wh
    wh.close()


def _duck(sql: str) -> str:
    return to_duckdb(sqlglot.parse_one(sql, read="databricks"), {})[0]


def test_a_call_becomes_the_warehouse_function_exactly():
    assert _duck("SELECT ai_query('ep', named_struct('a', x, 'b', 1)) AS r FROM t") == (
        "SELECT YWS_AI_QUERY('ep', {'a': x, 'b': 1}) AS r FROM t")
    assert _duck("SELECT ai_query(endpoint => 'ep', request => named_struct('a', x), "
                 "failOnError => false) AS r FROM t") == (
        "SELECT YWS_AI_QUERY_OR_ERROR('ep', {'a': x}) AS r FROM t")
    # positional returnType and failOnError: the syntax for an endpoint without a model schema
    assert _duck("SELECT ai_query('ep', named_struct('a', x), "
                 "'STRUCT<probability: DOUBLE, band: STRING>', true) AS r FROM t") == (
        "SELECT CAST(YWS_AI_QUERY('ep', {'a': x}) AS STRUCT(probability DOUBLE, band TEXT)) "
        "AS r FROM t")
    assert _duck("SELECT AI_QUERY('ep', named_struct('a', x), returnType => 'STRUCT<p: DOUBLE>',"
                 " failOnError => false) AS r FROM t") == (
        "SELECT CAST(YWS_AI_QUERY_OR_ERROR('ep', {'a': x}) AS STRUCT(result STRUCT(p DOUBLE), "
        "errorMessage TEXT)) AS r FROM t")
    tree = sqlglot.parse_one("SELECT 1 AS x", read="databricks")
    assert rewrite(tree) is tree  # nothing to rewrite: the tree as it came


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT ai_query(ep_col, named_struct('a', 1)) AS r", "endpoint must be a STRING literal"),
    ("SELECT ai_query('ep') AS r", "needs a request"),
    ("SELECT ai_query('ep', named_struct('a', 1), failOnError => 'no') AS r",
     "failOnError must be a BOOLEAN literal"),
    ("SELECT ai_query('ep', named_struct('a', 1), returnType => 'NOT A TYPE <') AS r",
     "is not a type"),
    ("SELECT ai_query('ep', named_struct('a', 1), modelParameters => named_struct('t', 1)) AS r",
     "UNSUPPORTED_ENDPOINT_TYPE"),
    ("SELECT ai_query('ep', request => named_struct('a', 1), named_struct('b', 1)) AS r",
     "positional arguments come before named ones"),
    ("SELECT ai_query('ep', named_struct('a', 1), colour => 1) AS r", "no argument 'colour'"),
    ("SELECT ai_query('ep', named_struct('a', 1), request => named_struct('a', 1)) AS r",
     "given twice"),
])
def test_calls_databricks_would_refuse_are_refused_before_they_run(sql, message):
    with pytest.raises(SqlError, match=message):
        check(sqlglot.parse_one(sql, read="databricks"))


RESULT = pa.struct([("probability", pa.float64()), ("prediction", pa.int32()),
                    ("band", pa.string()), ("error", pa.string())])


def test_rows_score_in_vectors_with_typed_results(warehouse):
    got = warehouse.query(f"""
        WITH rows AS (SELECT {ROW} FROM range(5000))
        SELECT ai_query('ep', {REQUEST}) AS r,
               ai_query('ep', {REQUEST}, failOnError => false) AS s FROM rows""")
    assert got.num_rows == 5000
    assert got.schema.field("r").type == RESULT
    assert got.schema.field("s").type == pa.struct([("result", RESULT),
                                                    ("errorMessage", pa.string())])
    scored = {"probability": 0.12, "prediction": 0, "band": "GREEN", "error": None}
    assert got.slice(0, 1).to_pylist() == [{"r": scored,
                                            "s": {"result": scored, "errorMessage": None}}]
    calls = warehouse.endpoints.calls
    assert sum(n for _, n, _ in calls) == 10_000 and len(calls) < 20  # vectors, not rows
    # the scorer gets the spec's features, typed as the spec says, whatever the SQL types
    assert calls[0][2] == pa.schema([(f.name, f.kind.arrow()) for f in SPEC.features])


def test_fields_are_taken_by_name_cast_to_the_features_types_extra_ones_ignored(warehouse):
    fields = [f.name for f in SPEC.features]
    shuffled = "named_struct(" + ", ".join(
        f"'{n}', {'12' if n == 'tenure_months' else n}" for n in reversed(fields)) + \
        ", 'not_a_feature', 1)"
    got = warehouse.query(f"SELECT ai_query('ep', {shuffled}).probability AS p "
                          f"FROM (SELECT {ROW})").to_pylist()
    assert got == [{"p": 0.12}]


def test_a_refused_row_says_why_and_has_no_probability(warehouse):
    """The served model answers a refused row (error set, the rest NULL): the query does not
    fail, with failOnError true or false, as on Databricks with this model's signature."""
    null_tenure = ROW.replace("12.0 AS tenure_months", "NULL::DOUBLE AS tenure_months")
    refused = {"probability": None, "prediction": None, "band": None,
               "error": "tenure_months is null or NaN"}
    got = warehouse.query(f"SELECT ai_query('ep', {REQUEST}) AS r, "
                          f"ai_query('ep', {REQUEST}, failOnError => false) AS s "
                          f"FROM (SELECT {null_tenure})").to_pylist()
    assert got == [{"r": refused, "s": {"result": refused, "errorMessage": None}}]


def test_a_missing_feature_or_an_unknown_endpoint_is_an_error(warehouse):
    partial = "named_struct('tenure_months', 1.0)"
    with pytest.raises(SqlError, match='Could not find key "monthly_spend"'):
        warehouse.query(f"SELECT ai_query('ep', {partial}) AS r")
    with pytest.raises(SqlError, match="RESOURCE_DOES_NOT_EXIST.*'nope'.*served here: ep"):
        warehouse.query(f"SELECT ai_query('nope', {REQUEST}) AS r FROM (SELECT {ROW})")


def test_two_endpoints_in_one_query_each_answer_their_own_calls(warehouse):
    got = warehouse.query(f"SELECT ai_query('ep', {REQUEST}).probability AS p, "
                          f"ai_query('other', {REQUEST}).probability AS q FROM (SELECT {ROW})")
    assert got.to_pylist() == [{"p": 0.12, "q": pytest.approx(0.62)}]


def test_without_a_scorer_views_and_functions_apply_and_a_call_says_what_is_missing(settings):
    wh = LocalWarehouse(settings)
    steps = wh.apply(statements(settings))
    assert ("FUNCTION", "yws_dev.ml.yws_score_row") in {(s.kind, s.object) for s in steps}
    assert wh.query("SELECT count(*) AS n FROM yws_dev.ml.v_yws_predictions").num_rows == 1
    with pytest.raises(SqlError, match="AI_FUNCTION_UNAVAILABLE"):
        wh.query(f"SELECT ai_query('ep', {REQUEST}) AS r FROM (SELECT {ROW})")
    wh.serve_endpoints(FakeEndpoints())  # from now on, in the cursors already made too
    assert wh.query(f"SELECT ai_query('ep', {REQUEST}).band AS b FROM (SELECT {ROW})"
                    ).to_pylist() == [{"b": "GREEN"}]
    wh.close()


def test_the_analysts_function_is_databricks_sql_and_runs_locally(warehouse, settings):
    """sql/30_functions/30_yws_score_row.sql: CREATE FUNCTION … RETURN ai_query(...) parses as
    Databricks SQL and becomes a DuckDB macro whose arguments are cast to their types."""
    stmt = next(s for s in statements(settings) if "yws_score_row(" in s.text and
                s.text.startswith("CREATE"))
    tree = sqlglot.parse_one(stmt.text, read="databricks")
    assert str(tree.args["kind"]) == "FUNCTION"
    # the endpoint yws.scoring.ai_query serves the settings' model @champion under
    assert f"ai_query(\n  '{endpoint_name(settings)}'," in stmt.text
    args = ", ".join(f.name for f in SPEC.features)
    got = warehouse.query(f"SELECT yws_dev.ml.yws_score_row({args}) AS s FROM (SELECT {ROW})")
    assert got.to_pylist() == [{"s": {"probability": 0.12, "prediction": 0, "band": "GREEN",
                                      "error": None}}]
    assert got.schema.field("s").type == RESULT
    # numbers as text, as an analyst may pass them: cast to the parameters' types first
    got = warehouse.query("SELECT yws_dev.ml.yws_score_row('40', 50, 0.3, 1, 0, 1000, 2, true, "
                          "false, 'north', 'gold', 'web').band AS b")
    assert got.to_pylist() == [{"b": "RED"}]


def test_routes_come_from_the_served_endpoints_or_default_to_the_champion(settings):
    """yws serve's endpoints (the bundle's served_entities, version moved by update_config)
    become ai_query's routes; without them, endpoint_name serves the model @champion."""
    from types import SimpleNamespace

    from yws.errors import InvalidValueError
    from yws.scoring.ai_query import Endpoints, Route, served_routes

    served = {"yws_lr": SimpleNamespace(entities=[{"entity_name": "yws_dev.ml.yws_lr",
                                                   "entity_version": "3"}]),
              "empty": SimpleNamespace(entities=[])}
    assert served_routes(served) == {"yws_lr": Route("yws_dev.ml.yws_lr", "3")}
    moving = {"v": "1"}
    endpoints = Endpoints(settings, SPEC, routes=lambda: {"e": ("yws_dev.ml.yws_lr", moving["v"])})
    assert endpoints.routes == {"e": Route("yws_dev.ml.yws_lr", "1")}
    moving["v"] = "2"  # read when a query runs, not when the warehouse was made
    assert endpoints.routes == {"e": Route("yws_dev.ml.yws_lr", "2")}
    assert Endpoints(settings, SPEC).routes == {"yws_lr": Route("yws_dev.ml.yws_lr",
                                                                "champion")}
    with pytest.raises(InvalidValueError, match="reserved"):
        Route("yws_dev.ml.yws_lr", "latest")
    with pytest.raises(SqlError, match="RESOURCE_DOES_NOT_EXIST.*'nope'.*served here: e"):
        endpoints.model("nope")


@pytest.mark.parametrize(("text", "message"), [
    ("CREATE FUNCTION yws_dev.ml.f(x DOUBLE) RETURNS DOUBLE RETURN SELECT max(x) FROM t",
     "only SQL functions of the form RETURNS <type> RETURN <expression>"),
    ("CREATE FUNCTION yws_dev.ml.f(x DOUBLE) RETURNS DOUBLE "
     "RETURN ai_query(ep, named_struct('x', x)).probability",
     "endpoint must be a STRING literal"),
])
def test_sql_functions_the_local_warehouse_cannot_run_are_refused_with_their_file(settings,
                                                                                  text,
                                                                                  message):
    from yws.contract.sqlfiles import SqlFileError, Statement

    schema = next(s for s in statements(settings) if s.text.startswith("CREATE SCHEMA"))
    with pytest.raises(SqlFileError, match=f"sql/30_f.sql:1: .*{message}"):
        LocalWarehouse(settings).apply([schema, Statement("30_f.sql", 1, text)])


def test_a_sql_function_casts_its_arguments_and_its_result(settings):
    from yws.contract.sqlfiles import Statement

    schema = next(s for s in statements(settings) if s.text.startswith("CREATE SCHEMA"))
    wh = LocalWarehouse(settings, FakeEndpoints())
    steps = wh.apply([schema, Statement(
        "30_f.sql", 1, "CREATE FUNCTION yws_dev.ml.half(x DOUBLE) RETURNS INT RETURN x / 2")])
    assert steps[-1].kind == "FUNCTION" and steps[-1].action == "replaced"
    got = wh.query("SELECT yws_dev.ml.half('8') AS h")  # text in, cast to DOUBLE first
    assert got.to_pylist() == [{"h": 4}] and got.schema.field("h").type == pa.int32()
    wh.close()
