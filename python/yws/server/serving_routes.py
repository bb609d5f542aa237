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
loaded once per version and kept, nothing is written per call, and small requests that arrive
together are scored in one call (:mod:`yws.server.coalesce`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import chain
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from yws.errors import InvalidValueError
from yws.scoring.records import score_records
from yws.server.coalesce import Coalescer
from yws.server.context import Api
from yws.server.errors import unauthenticated
from yws.server.serving import ServingService, bad_request
from yws.server.store import Principal

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
# Fields Databricks accepts beside the input: recorded there (inference and usage tables),
# accepted and not recorded here.
PASSED_OVER = ("client_request_id", "usage_context")
BATCHED_ROWS = 64  # a request of at most this many rows may share a call with others
MAX_COLUMNS = 10_000
# Bounds on what one request may make this server build and score (a 16 MiB body of short
# values could hold millions): split a larger request.
MAX_ROWS = 100_000
MAX_CELLS = 2_000_000


class _Refused:
    """A cell that cannot be a feature value (an array, an object, an integer past a double):
    its row is refused with this description instead of the value itself."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return self.what


_SCALARS = frozenset({str, int, float, bool, type(None)})
_LARGEST_INT = 2**1023  # an integer a double can hold; past it float() fails


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The request body as a JSON object, and whether it may hold a lone surrogate (a
    ``\\u`` escape: no Arrow string can hold an unpaired \\ud800-\\udfff).

    The same refusals as the other endpoints' bounded parser (not UTF-8, not JSON, NaN or
    Infinity literals, too deep, not an object), at the cost of ``json.loads`` alone: the cells
    are checked once, by :func:`records`, where only a suspect body is checked cell by cell.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad_request(f"the request body is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise bad_request("the request body is empty: send a JSON object with one of the "
                          f"input fields {', '.join(FORMATS)}")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise bad_request("the request body nests too deeply to read") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, an integer of 4300+ digits
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    return data, "\\u" in text


def _cell(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise bad_request("the request body holds a number out of range (past a double)")
        return value
    if kind is str:
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise bad_request("the request body holds a lone UTF-16 surrogate (an "
                                  "unpaired \\ud800-\\udfff escape)") from None
        return value
    if kind is int:
        return value if abs(value) <= _LARGEST_INT else _Refused("an integer out of range")
    if value is None or kind is bool:
        return value
    if kind is list:
        return _Refused("a JSON array")
    return _Refused("a JSON object")


def _clean(rows: list[dict[str, Any]], escapes: bool) -> list[dict[str, Any]]:
    """Rows whose every cell is a JSON scalar a feature can take, else a refusal marker.

    The common case is proved with C-level passes over the cells (their types, the largest
    float and integer: json reads 1e999 as infinity), and only a request that fails it, or
    holds ``\\u`` escapes, is checked cell by cell."""
    cells = list(chain.from_iterable(r.values() for r in rows))
    if set(map(type, cells)) <= _SCALARS and not escapes:
        largest_float = max(map(abs, filter(float.__instancecheck__, cells)), default=0.0)
        largest_int = max(map(abs, filter(int.__instancecheck__, cells)), default=0)
        if math.isfinite(largest_float) and largest_int <= _LARGEST_INT:
            return rows
    return [{k: _cell(v) for k, v in r.items()} for r in rows]


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
    for i, row in enumerate(value):
        if type(row) is not dict:
            raise bad_request(f"{field}[{i}] must be an object of column name to value, not "
                              f"{_kind(row)}")
    _bounded(len(value), sum(map(len, value)))
    return value


def _bounded(rows: int, cells: int) -> None:
    if rows > MAX_ROWS or cells > MAX_CELLS:
        raise bad_request(f"the request holds {rows} rows ({cells} values): at most {MAX_ROWS} "
                          f"rows and {MAX_CELLS} values are scored per request; split it")


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
    width = len(columns)
    _bounded(len(data), len(data) * width)
    for i, row in enumerate(data):
        if type(row) is not list or len(row) != width:
            raise bad_request(f"dataframe_split.data[{i}] must be an array of {width} values, "
                              "one per column")
    return [dict(zip(columns, row, strict=True)) for row in data]


def _columns(value: dict[str, Any], field: str) -> list[dict[str, Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise bad_request(f"{field} as columns must map each column name to an array of "
                          "values, all of the same length")
    names = list(value)
    rows = next(iter(lengths), 0)
    _bounded(rows, rows * len(names))
    return [dict(zip(names, cells, strict=True)) for cells in zip(*value.values(), strict=True)]


def records(payload: dict[str, Any], escapes: bool = True) -> list[dict[str, Any]]:
    """The rows of an invocation request, each cell a JSON scalar (or a refusal marker).
    ``escapes``: whether the body holds ``\\u`` escapes (a string may be a lone surrogate)."""
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
        rows = _split(value)
    elif field == "inputs" and isinstance(value, dict):
        rows = _columns(value, field)
    else:
        rows = _rows(value, field)
    return _clean(rows, escapes)


def predictions(service: ServingService, model: Any, rows: list[dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """One ``{probability, prediction, band, error}`` per row, in order."""
    try:
        out = score_records(model, service.spec(), rows)
    except InvalidValueError as e:  # a feature column missing from every row
        raise bad_request(str(e)) from None
    for row in out:  # JSON has no NaN (score_records clears probabilities; be sure)
        p = row.get("probability")
        if isinstance(p, float) and not math.isfinite(p):
            row["probability"] = None
    return out


def encode(out: list[dict[str, Any]]) -> bytes:
    # ASCII: a text a row carried back in its error cannot fail to encode
    return json.dumps({"predictions": out}, separators=(",", ":")).encode()


def complete(service: ServingService, rows: list[dict[str, Any]]) -> bool:
    """Whether every feature the model reads is in some row (else the request is refused
    whole, by :func:`predictions`, and must not share a batch)."""
    return bool(rows) and all(any(n in r for r in rows) for n in service.spec().feature_names)


def add_routes(app: FastAPI, api: Api, service: ServingService,
               limit: Callable[[str], None]) -> None:
    """The Serving routes; ``limit(principal)`` raises 429 past the invocation rate."""
    batches = Coalescer()

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
        payload, escapes = parse(await request.body())
        rows = records(payload, escapes)
        loaded = service.cached_model(endpoint)
        if loaded is None:
            loaded = await run_in_threadpool(service.model, endpoint)
        served, model = loaded
        if len(rows) <= BATCHED_ROWS and complete(service, rows):
            out = await batches.score(model, rows,
                                      lambda rs: predictions(service, model, rs))
        else:
            out = await run_in_threadpool(predictions, service, model, rows)
        return Response(encode(out), media_type="application/json",
                        headers={"served-model-name": served})
