"""The Model Serving routes of ``yws serve``: the endpoints of the bundle, their config, and
``POST /serving-endpoints/{name}/invocations``.

An invocation takes, as MLflow's scoring server and Databricks Model Serving do, a JSON object
with exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...], ...]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``inputs`` (columns, ``{column: [...]}``,
or rows) or ``instances`` (rows), and answers ``{"predictions": [...]}``, one object per row
with ``probability``, ``prediction``, ``band`` and ``error`` (the pyfunc's DataFrame in the
records orientation). A row that the batch job would quarantine, or that holds a value of the
wrong type, gets its reason in ``error`` and no probability; a request that is not one of those
shapes is a 400 ``BAD_REQUEST`` saying what is wrong.

The path is kept short: the token is checked against the store (a read), the served model is
loaded once per version and kept, and nothing is written per call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from yws.errors import InvalidValueError
from yws.scoring.records import score_records
from yws.server.context import Api
from yws.server.errors import ApiError, unauthenticated
from yws.server.limits import parse_object
from yws.server.serving import ServingService, bad_request
from yws.server.store import Principal

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
# Fields Databricks accepts beside the input: recorded there (inference and usage tables),
# accepted and not recorded here.
PASSED_OVER = ("client_request_id", "usage_context")
INLINE_ROWS = 64  # a request of at most this many rows is scored on the event loop
MAX_COLUMNS = 10_000


class _Refused:
    """A cell that cannot be a feature value (an array, an object, an integer past a double):
    its row is refused with this description instead of the value itself."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return self.what


def _cell(value: Any) -> Any:
    if isinstance(value, str | bool | float) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**1023 else _Refused("an integer out of range")
    if isinstance(value, list):
        return _Refused("a JSON array")
    return _Refused("a JSON object")


def _row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise bad_request(f"{where} must be an object of column name to value, not "
                          f"{_kind(row)}")
    return {k: _cell(v) for k, v in row.items()}


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _rows(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad_request(f"{field} must be an array of rows (objects of column name to "
                          f"value), not {_kind(value)}")
    return [_row(row, f"{field}[{i}]") for i, row in enumerate(value)]


def _split(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise bad_request('dataframe_split must be an object {"columns": [...], "data": '
                          f"[[...], ...]}}, not {_kind(value)}")
    unknown = sorted(set(value) - {"columns", "data", "index"})
    if unknown:
        raise bad_request(f"dataframe_split: unknown field {unknown[0][:100]!r}; it takes "
                          "columns, data and index")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or \
            len(columns) > MAX_COLUMNS:
        raise bad_request("dataframe_split.columns must be an array of column names "
                          "(strings)")
    if len(set(columns)) != len(columns):
        raise bad_request("dataframe_split.columns names a column twice")
    if not isinstance(data, list):
        raise bad_request("dataframe_split.data must be an array of rows (arrays of values, "
                          "one per column)")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise bad_request("dataframe_split.index must be an array with one entry per row")
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise bad_request(f"dataframe_split.data[{i}] must be an array of "
                              f"{len(columns)} values, one per column")
        out.append({c: _cell(v) for c, v in zip(columns, row, strict=True)})
    return out


def _columns(value: dict[str, Any], field: str) -> list[dict[str, Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise bad_request(f"{field} as columns must map each column name to an array of "
                          "values, all of the same length")
    n = lengths.pop() if lengths else 0
    return [{c: _cell(v[i]) for c, v in value.items()} for i in range(n)]


def records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an invocation request, each cell a JSON scalar (or a refusal marker)."""
    given = [f for f in FORMATS if f in payload]
    if len(given) != 1:
        raise bad_request(
            "The input must be a JSON object with exactly one of the input fields "
            f"{', '.join(FORMATS)}; received {', '.join(repr(k[:100]) for k in payload) or 'none'}")
    unknown = sorted(set(payload) - {*FORMATS, *PASSED_OVER, "params"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0][:100]!r}: the model takes its rows in "
                          f"{given[0]}")
    if payload.get("params"):
        raise bad_request("params: the model takes no inference parameters")
    field = given[0]
    value = payload[field]
    if field == "dataframe_split":
        return _split(value)
    if field == "inputs" and isinstance(value, dict):
        return _columns(value, field)
    return _rows(value, field)


def score(service: ServingService, model: Any, rows: list[dict[str, Any]]) -> bytes:
    try:
        out = score_records(model, service.spec(), rows)
    except InvalidValueError as e:  # a feature column missing from every row
        raise bad_request(str(e)) from None
    for row in out:  # JSON has no NaN (score_records clears probabilities; be sure)
        p = row.get("probability")
        if isinstance(p, float) and not math.isfinite(p):
            row["probability"] = None
    # ASCII: a text a row carried back in its error cannot fail to encode
    return json.dumps({"predictions": out}, separators=(",", ":")).encode()


def add_routes(app: FastAPI, api: Api, service: ServingService,
               limit: Callable[[str], None]) -> None:
    """The Serving routes; ``limit(principal)`` raises 429 past the invocation rate."""

    def who(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("a bearer token is required: create one with "
                                  "`yws tokens create --principal NAME`")
        principal = api.store.principal(token.strip())
        if principal is None:
            raise unauthenticated("Invalid access token.")
        return principal

    @app.get("/api/2.0/serving-endpoints")
    def list_endpoints(request: Request) -> dict[str, Any]:
        principal = api.who(request)
        return {"endpoints": [service.as_api(e, principal, detailed=False)
                              for e in service.visible(principal)]}

    @app.get("/api/2.0/serving-endpoints/{name}")
    def get_endpoint(request: Request, name: str) -> dict[str, Any]:
        principal = api.who(request)
        endpoint = service.endpoint(name, principal, "CAN_VIEW")
        return service.as_api(endpoint, principal, detailed=True, base_url=str(request.base_url))

    @app.put("/api/2.0/serving-endpoints/{name}/config")
    async def update_config(request: Request, name: str) -> dict[str, Any]:
        principal = api.who(request)
        endpoint = service.endpoint(name, principal, "CAN_MANAGE")
        payload = await api.body(request)
        await run_in_threadpool(service.update_config, endpoint, payload)
        return service.as_api(endpoint, principal, detailed=True, base_url=str(request.base_url))

    @app.post("/serving-endpoints/{name}/invocations")
    async def invoke(request: Request, name: str) -> Response:
        principal = who(request)
        limit(principal.name)
        endpoint = service.endpoint(name, principal, "CAN_QUERY")
        try:
            payload = parse_object(await request.body())
        except ApiError as e:  # the shared parser's MALFORMED_REQUEST, as Serving words it
            raise bad_request(e.message) from None
        rows = records(payload)
        loaded = service.cached_model(endpoint)
        if loaded is None:
            loaded = await run_in_threadpool(service.model, endpoint)
        served, model = loaded
        if len(rows) <= INLINE_ROWS:
            body = score(service, model, rows)
        else:
            body = await run_in_threadpool(score, service, model, rows)
        return Response(body, media_type="application/json",
                        headers={"served-model-name": served})
