"""``ai_query`` on the local warehouse equals the batch job, row by row.

Databricks' ``ai_query(endpoint, request [, returnType] [, failOnError])`` sends a STRUCT of
named features to a custom Model Serving endpoint and returns the served model's outputs (the
return type is inferred from its signature: probability, prediction, band, error); with
``failOnError => false`` it returns ``STRUCT<result, errorMessage>`` instead of failing
(https://docs.databricks.com/en/sql/language-manual/functions/ai_query.html,
https://docs.databricks.com/en/large-language-models/how-to-ai-query.html). The same SQL runs
on the local warehouse, answered by the batch job's evaluator and quarantine rules.
"""

from __future__ import annotations

import pytest

from conftest import SCORE_DAY
from yws.contract.sqlfiles import statements
from yws.model import registry
from yws.platform import storage_for
from yws.scoring.ai_query import Endpoints, Route, endpoint_name
from yws.scoring.job import score
from yws.warehouse.base import SqlError
from yws.warehouse.local import LocalWarehouse


@pytest.fixture(scope="module")
def batch(trained_home, spec):
    """The batch job's answer for the score day: probabilities by entity, reasons held."""
    result = score(trained_home, spec, engine="arrow", as_of=SCORE_DAY, batch_id="aiq")
    storage = storage_for(trained_home)
    scored = {r["entity_id"]: r for r in storage.read_arrow(
        trained_home.predictions, where=("run_id", result.run_id)).to_pylist()}
    held = {r["entity_id"]: r["reason"] for r in storage.read_arrow(
        trained_home.quarantine, where=("run_id", result.run_id)).to_pylist()}
    return scored, held


@pytest.fixture(scope="module")
def warehouse(trained_home, spec):
    wh = LocalWarehouse(trained_home, Endpoints(trained_home, spec))
    wh.apply(statements(trained_home))
    yield wh
    wh.close()


def _request(spec) -> str:
    return "named_struct(" + ", ".join(f"'{f.name}', {f.name}" for f in spec.features) + ")"


def _compare(rows, batch, key="customer_id"):
    """Every row the batch job scored has its probability (to 1e-9: it is the same number),
    prediction and band; every row it held back has its reason and no probability."""
    scored, held = batch
    keys = [r[key] for r in rows]
    compared = refused = 0
    for row in rows:
        k = row[key]
        if k is None or keys.count(k) > 1:
            continue  # a missing or repeated entity key is the batch's concern, not a row's
        compared += 1
        if k in held:
            refused += 1
            assert row["probability"] is None and row["band"] is None, k
            assert row["error"] == held[k]
        else:
            assert row["error"] is None, (k, row["error"])
            assert abs(row["probability"] - scored[k]["probability"]) <= 1e-9
            assert row["probability"] == scored[k]["probability"]  # in fact bit for bit
            assert row["prediction"] == scored[k]["prediction"]
            assert row["band"] == scored[k]["band"]
    assert compared > 0.9 * len(rows) and refused > 0
    return compared


def test_ai_query_scores_equal_the_batch_jobs(trained_home, spec, warehouse, batch):
    """``SELECT ai_query(...)`` over the score day's features against the batch job's
    predictions and quarantine of the same snapshot; with failOnError => false the same
    result, wrapped, and no errorMessage (a refused row is the model's answer, not a failed
    call)."""
    sql = f"""
        SELECT customer_id, r.probability, r.prediction, r.band, r.error,
               s.result IS NOT DISTINCT FROM r AS same, s.errorMessage
        FROM (SELECT customer_id, ai_query('{endpoint_name(trained_home)}', {_request(spec)}) AS r,
                     ai_query('{endpoint_name(trained_home)}', {_request(spec)},
                              failOnError => false) AS s
              FROM yws_dev.ml.yws_features WHERE as_of_date = :day)"""
    rows = warehouse.query(sql, {"day": SCORE_DAY.isoformat()}).to_pylist()
    assert _compare(rows, batch) > 2500
    assert all(r["same"] and r["errorMessage"] is None for r in rows)


def test_the_analysts_function_scores_as_the_batch_job(trained_home, spec, warehouse, batch):
    """``yws_score_row(...)`` from sql/30_functions (what analysts and R users are granted)."""
    args = ", ".join(f.name for f in spec.features)
    rows = warehouse.query(f"""
        SELECT customer_id, s.probability, s.prediction, s.band, s.error
        FROM (SELECT customer_id, yws_dev.ml.yws_score_row({args}) AS s
              FROM yws_dev.ml.yws_features WHERE as_of_date = DATE'{SCORE_DAY}')""").to_pylist()
    _compare(rows, batch)


def test_an_endpoint_serves_a_version_or_an_alias(trained_home, spec, batch):
    """Endpoints map to (model, version or alias): v1 is today's champion, so both agree; an
    unknown endpoint is an error naming the served ones."""
    champion = registry.locate(trained_home, "champion").version
    routes = {"by-version": Route(trained_home.model_name, str(champion)),
              "by-alias": (trained_home.model_name, "champion")}
    wh = LocalWarehouse(trained_home).serve_endpoints(Endpoints(trained_home, spec, routes))
    wh.apply(statements(trained_home))
    got = wh.query(f"""
        SELECT customer_id,
               ai_query('by-version', {_request(spec)}, failOnError => false) AS v,
               ai_query('by-alias', {_request(spec)}, failOnError => false) AS a
        FROM yws_dev.ml.yws_features WHERE as_of_date = :day""",
                   {"day": SCORE_DAY.isoformat()}).to_pylist()
    assert got and all(r["v"] == r["a"] for r in got)
    with pytest.raises(SqlError, match="RESOURCE_DOES_NOT_EXIST.*served here: by-alias, "
                                       "by-version"):
        wh.query(f"SELECT ai_query('nope', {_request(spec)}) AS r "
                 "FROM yws_dev.ml.yws_features LIMIT 1")
    wh.close()


def test_the_sql_api_answers_ai_query_once_given_the_endpoints(trained_home, spec, warehouse,
                                                                batch):
    """The SQL Statement Execution API's path (grants, dialect, stream) with the scorer passed
    the way ``yws serve`` passes it (``statements.warehouse.serve_endpoints(...)``): an
    analyst calls the granted function; as JSON_ARRAY every value is a string."""
    from yws.server.sql_api import LOCAL_WAREHOUSE_ID, StatementService
    from yws.server.store import Principal

    service = StatementService(trained_home)
    try:
        service.warehouse.serve_endpoints(Endpoints(trained_home, spec))
        scored, _ = batch
        key, row = next(iter(scored.items()))
        features = warehouse.query(
            "SELECT * FROM yws_dev.ml.yws_features WHERE customer_id = :k AND as_of_date = :d",
            {"k": key, "d": SCORE_DAY.isoformat()}).to_pylist()[0]
        args = ", ".join("NULL" if features[f.name] is None else
                         str(features[f.name]).lower() if isinstance(features[f.name], bool)
                         else repr(features[f.name]) for f in spec.features)
        analyst = Principal("ann", (trained_home.analysts_group,))
        answer = service.submit({
            "warehouse_id": LOCAL_WAREHOUSE_ID, "wait_timeout": "30s",
            "statement": f"SELECT yws_dev.ml.yws_score_row({args}).probability AS p"},
            analyst)
        assert answer["status"]["state"] == "SUCCEEDED", answer["status"]
        assert abs(float(answer["result"]["data_array"][0][0]) - row["probability"]) <= 1e-9
    finally:
        service.shutdown()
