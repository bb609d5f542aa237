"""Model Serving conformance of `yws serve`, driven with the official databricks-sdk (issue 16).

A real `yws serve` (in this process, on a loopback port) serves the real bundle in ``jobs/``:
its ``model_serving_endpoints`` resource (``jobs/resources/yws_serving.yml``) with the model
the home's training registered (version 1, and a second version promoted to @champion), and
tokens for an analyst, an R user, the jobs' service principal and an outsider. Each test cites
the documented contract it checks in its docstring; ``docs/api-conformance.md`` names each test.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.serving import DataframeSplitInput, EndpointStateReady

from conftest import SCORE_DAY, TRAIN_DAY, serving
from yws.config import Settings
from yws.datasets.synthetic import generate
from yws.deploy import serving_client
from yws.deploy.bundle import load
from yws.deploy.tasks import serving_update_main
from yws.model.evaluator import ArrowModel
from yws.scoring.records import score_records
from yws.server.app import create_app
from yws.server.serving import ServingService
from yws.server.store import Store

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "yws_lr"
MODEL = "yws_dev.ml.yws_lr"
PEOPLE = {"analyst": ["yws_analysts"], "r_user": ["yws_r_users"], "yws_jobs": [],
          "outsider": ["somebody_else"]}


@pytest.fixture(scope="module")
def home(trained_home, spark, spec) -> Settings:
    """Two registered versions: 1 (the bundle's serving_model_version) and 2, @champion."""
    from yws.platform import storage_for
    from yws.training.job import train

    train(trained_home, spec, spark, as_of=TRAIN_DAY, storage=storage_for(trained_home),
          force_promote=True)
    return trained_home


@pytest.fixture(scope="module")
def server(home) -> Iterator[tuple[str, dict[str, str]]]:
    store = Store(home.home.resolve() / "server.db")
    tokens = {who: store.create_token(who, groups) for who, groups in PEOPLE.items()}
    with serving(create_app(home, bundle_root=ROOT / "jobs", target="dev")) as host:
        yield host, tokens


def client(server: tuple[str, dict[str, str]], who: str) -> WorkspaceClient:
    host, tokens = server
    return WorkspaceClient(host=host, token=tokens[who])


def post(server: tuple[str, dict[str, str]], body: bytes | str | dict[str, Any],
         who: str | None = "analyst", endpoint: str = ENDPOINT,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    host, tokens = server
    data = body if isinstance(body, bytes) else \
        body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(f"{host}/serving-endpoints/{endpoint}/invocations",
                                     data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    if who is not None:
        request.add_header("Authorization", f"Bearer {tokens[who]}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


@pytest.fixture(scope="module")
def rows(spec) -> list[dict[str, Any]]:
    """Feature rows of a snapshot with anomalies, JSON-ready (what a caller sends: JSON has no
    NaN or infinity, so those travel as the strings "NaN", "Infinity", "-Infinity")."""

    def json_ready(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return value

    names = spec.feature_names
    return [{k: json_ready(r[k]) for k in names}
            for r in generate(300, SCORE_DAY, labeled=False, anomalies=6).to_pylist()]


def same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Row for row the same answer; probabilities to 1e-12 (the evaluator's last bits depend
    on how many rows share its call, in the batch job too: the contract is 1e-9)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(e)
        assert (g["prediction"], g["band"], g["error"]) == \
            (e["prediction"], e["band"], e["error"])
        if e["probability"] is None:
            assert g["probability"] is None
        else:
            assert abs(g["probability"] - e["probability"]) <= 1e-12
    return True


def version_model(home: Settings, version: int) -> ArrowModel:
    service = ServingService(home, load(ROOT / "jobs"))
    return ArrowModel.load(service.version_folder(MODEL, str(version)))


def test_list_and_get_show_the_bundles_endpoint(server):
    """`GET /api/2.0/serving-endpoints` lists the endpoints the caller may see and
    `GET /api/2.0/serving-endpoints/{name}` details one: served entities (entity_name,
    entity_version, workload_size, scale_to_zero_enabled, state.deployment), traffic_config,
    state.ready / config_update, tags and the caller's permission_level
    (https://docs.databricks.com/api/model-serving/v1/serving-endpoint.md,
    https://docs.databricks.com/en/machine-learning/model-serving/manage-serving-endpoints.html)."""
    w = client(server, "analyst")
    (listed,) = list(w.serving_endpoints.list())
    assert listed.name == ENDPOINT and listed.state.ready == EndpointStateReady.READY
    got = w.serving_endpoints.get(ENDPOINT)
    (entity,) = got.config.served_entities
    assert (entity.entity_name, entity.entity_version) == (MODEL, "1")
    assert entity.workload_size == "Small" and entity.scale_to_zero_enabled is True
    assert entity.state.deployment.value == "DEPLOYMENT_READY"
    assert got.config.traffic_config.routes[0].traffic_percentage == 100
    assert got.state.ready == EndpointStateReady.READY
    assert got.state.config_update.value == "NOT_UPDATING"
    assert {(t.key, t.value) for t in got.tags} == {("project", "yws"),
                                                    ("component", "serving")}
    assert got.permission_level.value == "CAN_QUERY"
    assert got.endpoint_url.endswith(f"/serving-endpoints/{ENDPOINT}/invocations")
    assert client(server, "yws_jobs").serving_endpoints.get(ENDPOINT) \
        .permission_level.value == "CAN_MANAGE"
    outsider = client(server, "outsider")
    assert list(outsider.serving_endpoints.list()) == []
    with pytest.raises(PermissionDenied):
        outsider.serving_endpoints.get(ENDPOINT)


def test_query_takes_dataframe_split_records_and_inputs(server, rows, spec, home):
    """`POST /serving-endpoints/{name}/invocations` takes exactly one of `dataframe_split`,
    `dataframe_records`, `inputs` (columns or rows) and `instances`, and answers
    `{"predictions": [...]}`: a pyfunc's DataFrame in the records orientation, here one object
    per row with probability, prediction, band and error; the `served-model-name` header names
    the served entity (https://docs.databricks.com/api/model-serving-query/v1,
    https://docs.databricks.com/en/machine-learning/model-serving/score-custom-model-endpoints.html)."""
    w = client(server, "r_user")
    expected = score_records(version_model(home, 1), spec, rows)
    names = spec.feature_names
    by_records = w.serving_endpoints.query(ENDPOINT, dataframe_records=rows)
    by_split = w.serving_endpoints.query(ENDPOINT, dataframe_split=DataframeSplitInput(
        columns=names, data=[[r[n] for n in names] for r in rows]))
    by_inputs = w.serving_endpoints.query(ENDPOINT, inputs={n: [r[n] for r in rows]
                                                            for n in names})
    status, by_instances, headers = post(server, {"instances": rows})
    assert status == 200 and headers["served-model-name"] == "yws_lr"
    assert by_records.served_model_name == "yws_lr"
    for answer in (by_records.predictions, by_split.predictions, by_inputs.predictions,
                   by_instances["predictions"]):
        assert answer == expected
    assert list(expected[0]) == ["probability", "prediction", "band", "error"]
    assert sum(r["error"] is None for r in expected) > 250
    one = w.serving_endpoints.query(ENDPOINT, dataframe_records=rows[:1])
    assert same(one.predictions, expected[:1])
    assert w.serving_endpoints.query(ENDPOINT, dataframe_records=[]).predictions == []


def test_bad_rows_are_errors_of_their_own_rows(server, rows, spec):
    """A row the batch job would quarantine, or with a value of the wrong type, is answered
    with its reason in `error` and no probability; the other rows of the request are scored
    (https://docs.databricks.com/en/machine-learning/model-serving/score-custom-model-endpoints.html:
    the model's DataFrame comes back row by row)."""
    numeric = next(f.name for f in spec.features if f.kind.checks_finite)
    category = next(f.name for f in spec.features if f.kind.categorical)
    strict = next(f.name for f in spec.features if f.kind.categorical and
                  f.unseen == "quarantine")
    no_nan = next(f.name for f in spec.features if f.kind.checks_finite and
                  f.quarantine_nulls)  # NaN in an imputed feature is imputed, as in the batch
    good = dict(rows[0])
    sent = [good, {**good, no_nan: "NaN"}, {**good, numeric: "12"}, {**good, category: 7},
            {**good, numeric: [1, 2]}, {**good, category: {"nested": {"junk": [1]}}},
            {**good, numeric: 10**400}, {**good, strict: "never-seen-category"},
            {**good, numeric: "-Infinity"}, good]
    status, body, _ = post(server, {"dataframe_records": sent})
    assert status == 200
    out = body["predictions"]
    assert len(out) == len(sent)
    assert out[0]["error"] is None and out[-1] == out[0]
    assert math.isfinite(out[0]["probability"]) and out[0]["band"]
    for row in out[1:-1]:
        assert row["error"] and row["probability"] is None and row["prediction"] is None
        assert row["band"] is None
    assert f"{numeric}: '12' is not a number" in out[2]["error"]
    assert f"{category}: 7 is not a category name" in out[3]["error"]
    assert "a JSON array" in out[4]["error"] and "a JSON object" in out[5]["error"]
    assert "an integer out of range" in out[6]["error"]
    assert "unseen category" in out[7]["error"]
    imputed = post(server, {"dataframe_records": [{**good, numeric: "NaN"}]})[1]
    assert imputed["predictions"][0]["error"] is None  # imputed: the batch job scores it too


def test_params_reasons_adds_each_rows_reason_codes(server, rows, spec, home):
    """`params` travels beside the input in MLflow's scoring protocol (its scoring server
    splits `"params"` off the request, `SERVING_PARAMS_KEY` in
    mlflow/pyfunc/scoring_server/__init__.py, and calls `predict(data, params=params)`; the
    params a model takes are its signature's ParamSchema,
    https://mlflow.org/docs/latest/model/signatures.html): `{"reasons": true}` adds the reason
    code columns to every row, null where a row is refused; without it the answer is as
    before. Sent through the official client's API client (its `query` has no `params`)."""
    from yws.model.evaluator import OUTPUTS, REASON_OUTPUTS

    w = client(server, "analyst")
    path = f"/serving-endpoints/{ENDPOINT}/invocations"
    model = version_model(home, 1)
    for sent in (rows[:3], rows):  # coalesced (small) and alone
        got = w.api_client.do("POST", path, body={"dataframe_records": sent,
                                                  "params": {"reasons": True}})
        expected = score_records(model, spec, sent, reasons=True)
        assert got["predictions"] == expected
        assert list(expected[0]) == [*OUTPUTS, *REASON_OUTPUTS]
        plain = w.api_client.do("POST", path, body={"dataframe_records": sent,
                                                    "params": {"reasons": False}})
        assert plain["predictions"] == score_records(model, spec, sent)
    refused = [r for r in expected if r["error"] is not None]
    assert refused and all(r["reason_1"] is None for r in refused)
    scored = [r for r in expected if r["error"] is None]
    assert sum(r["reason_1"] is not None for r in scored) > len(scored) // 2
    for r in scored:  # largest first, positive
        values = [r[f"reason_{k}_contribution"] for k in (1, 2, 3)
                  if r[f"reason_{k}"] is not None]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
    names = spec.feature_names
    split = w.api_client.do("POST", path, body={
        "dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in rows]},
        "params": {"reasons": True}})
    assert split["predictions"] == expected


def test_tokens_and_can_query_are_required(server, rows):
    """Every request needs a bearer token (401 `UNAUTHENTICATED` without one, or with an
    unknown one); querying needs `CAN_QUERY` (or `CAN_MANAGE`) on the endpoint, else 403
    `PERMISSION_DENIED` (https://docs.databricks.com/en/machine-learning/model-serving/score-custom-model-endpoints.html,
    https://docs.databricks.com/en/security/auth/access-control/index.html#serving-endpoint-acls)."""
    body = {"dataframe_records": rows[:2]}
    status, answer, _ = post(server, body, who=None)
    assert status == 401 and answer["error_code"] == "UNAUTHENTICATED"
    status, answer, _ = post(server, body, who=None,
                             headers={"Authorization": "Bearer dapi-not-a-token"})
    assert status == 401 and answer["error_code"] == "UNAUTHENTICATED"
    status, answer, _ = post(server, body, who="outsider")
    assert status == 403 and answer["error_code"] == "PERMISSION_DENIED"
    assert "CAN_QUERY" in answer["message"]
    with pytest.raises(PermissionDenied):
        client(server, "outsider").serving_endpoints.query(ENDPOINT, dataframe_records=rows[:1])
    for who in ("analyst", "r_user", "yws_jobs"):
        assert post(server, body, who=who)[0] == 200, who


def test_an_unknown_endpoint_is_resource_does_not_exist(server, rows):
    """An endpoint that does not exist is 404 `RESOURCE_DOES_NOT_EXIST`, for `get` and for
    invocations (https://docs.databricks.com/api/model-serving/v1/serving-endpoint.md)."""
    with pytest.raises(NotFound):
        client(server, "analyst").serving_endpoints.get("no_such_endpoint")
    status, answer, _ = post(server, {"dataframe_records": rows[:1]}, endpoint="nope")
    assert status == 404 and answer["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "nope" in answer["message"]


MALFORMED = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"dataframe_records": [{"x": NaN}]}', "not valid JSON"),
    (b'{"dataframe_records": [{"x": Infinity}]}', "not valid JSON"),
    (b'{"dataframe_records": [{"x": 1e999}]}', "out of range"),
    (b"{}", "exactly one of the input fields"),
    (b'{"dataframe_records": [], "inputs": {}}', "exactly one of the input fields"),
    (b'{"columns": ["a"], "data": [[1]]}', "exactly one of the input fields"),
    (b'{"dataframe_records": [], "extra": 1}', "unknown field 'extra'"),
    (b'{"dataframe_records": [], "params": {"a": 1}}', "unknown inference parameter 'a'"),
    (b'{"dataframe_records": [], "params": {"reasons": "yes"}}', "reasons must be true or"),
    (b'{"dataframe_records": [], "params": [true]}', "params must be an object"),
    (b'{"dataframe_records": {"a": 1}}', "must be an array of rows"),
    (b'{"dataframe_records": [1, 2]}', "dataframe_records[0] must be an object"),
    (b'{"dataframe_records": "rows"}', "must be an array of rows"),
    (b'{"dataframe_split": [[1]]}', "dataframe_split must be an object"),
    (b'{"dataframe_split": {"columns": "a", "data": []}}', "columns must be an array"),
    (b'{"dataframe_split": {"columns": [1], "data": []}}', "columns must be an array"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": []}}', "names a column twice"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "data[0] must be an array"),
    (b'{"dataframe_split": {"columns": ["a"], "data": {"a": 1}}}', "data must be an array"),
    (b'{"dataframe_split": {"columns": [], "data": [], "bogus": 1}}', "unknown field 'bogus'"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [1, 2]}}', "index"),
    (b'{"inputs": {"a": [1], "b": [1, 2]}}', "same length"),
    (b'{"inputs": {"a": 1}}', "same length"),
    (b'{"inputs": 3}', "must be an array of rows"),
    (b'{"dataframe_records": [{"x": 1}]}', "the rows have no column"),
    (b'{"dataframe_records": [{"x": "\\ud800"}]}', "surrogate"),
    (b'{"dataframe_records": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests"),
    (b"\xff\xfe", "UTF-8"),
    (json.dumps({"inputs": {"a": [0] * 100_001}}).encode(), "at most 100000 rows"),
    (json.dumps({"dataframe_records": [{}] * 100_001}).encode(), "at most 100000 rows"),
    (json.dumps({"dataframe_split": {"columns": [f"c{i}" for i in range(100)],
                                     "data": [[0] * 100] * 20_001}}).encode(),
     "2000000 values"),
]


@pytest.mark.parametrize("body, words", MALFORMED,
                         ids=[f"{i}-{words[:24]}" for i, (_, words) in enumerate(MALFORMED)])
def test_malformed_requests_are_400_bad_request(server, body, words):
    """A request that is not one of the input shapes is refused whole with 400 and the
    Databricks error shape `{"error_code", "message"}` (`BAD_REQUEST`, as MLflow's scoring server
    and Model Serving answer an input they cannot read), saying what is wrong — never a 500
    (https://docs.databricks.com/en/machine-learning/model-serving/score-custom-model-endpoints.html,
    https://mlflow.org/docs/latest/deployment/deploy-model-locally/)."""
    status, answer, _ = post(server, body)
    assert status == 400, answer
    assert answer["error_code"] == "BAD_REQUEST"
    assert words in answer["message"], answer["message"]


def test_a_body_over_16_mb_is_refused_unread(server):
    """Model Serving takes at most 16 MB per request ("Payload size | Per request | 16 MB",
    https://docs.databricks.com/en/machine-learning/model-serving/model-serving-limits.html):
    a larger declared body is 413 before a byte of it is read; a body past the other
    endpoints' 1 MiB but under 16 MiB is read."""
    import socket

    host, tokens = server
    port = int(host.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"POST /serving-endpoints/{ENDPOINT}/invocations HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nAuthorization: Bearer {tokens['analyst']}\r\n"
                      f"Content-Type: application/json\r\n"
                      f"Content-Length: {16 * 2**20 + 1}\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
    head, _, body = reply.partition(b"\r\n\r\n")
    answer = json.loads(body)
    assert head.split(b" ")[1] == b"413" and answer["error_code"] == "BAD_REQUEST"
    assert "16777216 bytes" in answer["message"]
    status, answer, _ = post(server, b'{"dataframe_records": [' + b" " * (2 * 2**20) + b"]}")
    assert (status, answer) == (200, {"predictions": []})


def test_update_config_moves_the_served_version(server, rows, spec, home, monkeypatch):
    """`PUT /api/2.0/serving-endpoints/{name}/config` (the SDK's `update_config`) replaces the
    served entities; it needs `CAN_MANAGE` (403 otherwise) and a version that exists (404
    otherwise), and answers the endpoint. The train job's `yws-serving-update` task does it
    through the SDK when @champion is another version, and nothing when it is the same
    (https://docs.databricks.com/api/model-serving/v1/serving-endpoint.md,
    https://docs.databricks.com/api/workspace/servingendpoints/updateconfig)."""
    from databricks.sdk.service.serving import ServedEntityInput

    host, tokens = server
    entity = ServedEntityInput(name="yws_lr", entity_name=MODEL, entity_version="9",
                               workload_size="Small", scale_to_zero_enabled=True)
    with pytest.raises(PermissionDenied):
        client(server, "analyst").serving_endpoints.update_config(ENDPOINT,
                                                                  served_entities=[entity])
    with pytest.raises(NotFound):
        client(server, "yws_jobs").serving_endpoints.update_config(ENDPOINT,
                                                                   served_entities=[entity])
    assert client(server, "analyst").serving_endpoints.get(ENDPOINT) \
        .config.served_entities[0].entity_version == "1"
    good = {"name": "yws_lr", "entity_name": MODEL, "entity_version": "1",
            "workload_size": "Small", "scale_to_zero_enabled": True}
    for body in (b"not json", b"[]", {"served_entities": []}, {"served_entities": [1]},
                 {"served_entities": [{**good, "entity_version": "champion"}]},
                 {"served_entities": [{**good, "entity_version": {"a": 1}}]},
                 {"served_entities": [{**good, "entity_name": ["x"]}]},
                 {"served_entities": [{**good, "workload_size": "Huge"}]},
                 {"served_entities": [{**good, "scale_to_zero_enabled": "yes"}]},
                 {"served_entities": [{**good, "bogus": 1}]},
                 {"served_entities": [good], "traffic_config": 5},
                 {"served_entities": [good], "traffic_config": {"routes": [
                     {"served_model_name": "other", "traffic_percentage": 100}]}},
                 {"served_entities": [good], "traffic_config": {"routes": [
                     {"served_model_name": "yws_lr", "traffic_percentage": "x"}]}},
                 {"served_entities": [good], "served_models": [{"a": 1}]},
                 {"served_entities": [good], "extra": 1}):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{host}/api/2.0/serving-endpoints/{ENDPOINT}/config", data=data, method="PUT",
            headers={"Authorization": f"Bearer {tokens['yws_jobs']}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400, body
        assert json.loads(refused.value.read())["error_code"] in (
            "INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST"), body

    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", tokens["yws_jobs"])
    argv = ["--target", "local", "--home", str(home.home), "--endpoint", ENDPOINT]
    moved = serving_client.follow_alias(home, ENDPOINT, "champion",
                                        client=client(server, "yws_jobs"))
    assert (moved.updated, moved.before, moved.version) == (True, ["1"], 2)
    got = client(server, "analyst").serving_endpoints.get(ENDPOINT)
    assert got.config.served_entities[0].entity_version == "2"
    assert got.config.config_version == 2
    assert got.config.served_entities[0].workload_size == "Small"
    answer = client(server, "analyst").serving_endpoints.query(ENDPOINT, dataframe_records=rows)
    assert answer.predictions == score_records(version_model(home, 2), spec, rows)
    serving_update_main(argv)  # the job task: already serving @champion, nothing sent
    assert client(server, "analyst").serving_endpoints.get(ENDPOINT) \
        .config.config_version == 2

    # kept across a restart; a bundle that says something else wins, as a deploy would
    bundle = load(ROOT / "jobs")
    kept = ServingService(home, bundle).endpoints[ENDPOINT]
    assert (kept.entities[0]["entity_version"], kept.config_version) == ("2", 2)
    redeployed = ServingService(home, bundle, overrides={"serving_model_version": "3"})
    assert redeployed.endpoints[ENDPOINT].entities[0]["entity_version"] == "3"
    assert redeployed.endpoints[ENDPOINT].config_version == 1


def test_concurrent_invocations_each_get_their_own_rows(server, rows, spec, home):
    """Concurrent invocations are independent: each answer holds its own rows' predictions in
    order, whatever else is being scored at the time (small requests that arrive together are
    scored in one call here); a request refused whole (a feature missing from all its rows)
    gets its 400 without touching the others
    (https://docs.databricks.com/api/model-serving-query/v1)."""
    from concurrent.futures import ThreadPoolExecutor

    expected = score_records(version_model(home, 2), spec, rows)
    served = client(server, "analyst").serving_endpoints.get(ENDPOINT) \
        .config.served_entities[0].entity_version
    if served != "2":
        expected = score_records(version_model(home, int(served)), spec, rows)
    first = spec.feature_names[0]
    requests = [(i, rows[i:i + 1 + i % 3]) for i in range(0, 120, 2)]
    requests += [(-1, [{k: v for k, v in rows[0].items() if k != first}])] * 5

    def send(item: tuple[int, list[dict[str, Any]]]) -> tuple[int, int, dict[str, Any]]:
        start, sent = item
        status, answer, _ = post(server, {"dataframe_records": sent})
        return start, status, answer

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(send, requests * 2))
    for (start, sent), (_, status, answer) in zip(requests * 2, results, strict=True):
        if start < 0:
            assert status == 400 and "the rows have no column" in answer["message"]
            continue
        assert status == 200, answer
        assert same(answer["predictions"], expected[start:start + len(sent)])


def test_ai_query_scores_with_the_version_each_endpoint_serves(home, spec, rows):
    """`ai_query('<endpoint>', ...)` on the local warehouse reaches the bundle's endpoints and
    scores with the version each serves now, as its invocations do; moving the served version
    (`update_config`) moves ai_query's too
    (https://docs.databricks.com/en/sql/language-manual/functions/ai_query.html)."""
    import pyarrow as pa

    app = create_app(home, bundle_root=ROOT / "jobs", target="dev")
    service, endpoints = app.state.serving, app.state.statements.warehouse.endpoints
    endpoint = service.endpoints[ENDPOINT]
    for version in ("1", "2"):
        entity = {**endpoint.entities[0], "entity_version": version}
        service.update_config(endpoint, {"served_entities": [entity]})
        assert endpoints.routes[ENDPOINT].version == version
        table = pa.Table.from_pylist(
            [r for r in rows if all(isinstance(v, str | int | float | bool) or v is None
                                    for v in r.values())][:50])
        table = pa.table({f.name: pa.array(
            [None if isinstance(v, str) and f.kind.checks_finite else v
             for v in table.column(f.name).to_pylist()], f.kind.arrow())
            for f in spec.features})
        got = endpoints(ENDPOINT, table).to_pylist()
        expected = score_records(version_model(home, int(version)), spec, table.to_pylist())
        assert same(got, expected)
    app.state.statements.shutdown()
