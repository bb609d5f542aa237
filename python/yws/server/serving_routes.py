"""The Model Serving routes of ``yws serve``: the endpoints of the bundle, their config, and
``POST /serving-endpoints/{name}/invocations``.

An invocation takes, as MLflow's scoring server and Databricks Model Serving do, a JSON object
with exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...], ...]}``),
``dataframe_records`` (``[{column: value}, ...]``), ``inputs`` (columns, ``{column: [...]}``,
or rows) or ``instances`` (rows), and answers ``{"predictions": [...]}``, one object per row
with ``probability``, ``prediction``, ``band`` and ``error`` (the pyfunc's DataFrame in the
records orientation). ``params`` beside the input (MLflow's scoring protocol) may be
``{"reasons": true}``: each row then also carries its reason codes (``reason_1``,
``reason_1_contribution``, … ``reason_3_contribution``); any other parameter is a 400.
A row that the batch job would quarantine, or that holds a value of the
wrong type, gets its reason in ``error`` and no probability; a request that is not one of those
shapes is a 400 ``BAD_REQUEST`` saying what is wrong.

The path is kept short: the route is the router's first, a plain Starlette route (no FastAPI
parameter solving), the token is checked against the store (a read), the served model is
loaded once per version and kept, nothing is written per call, small requests that arrive
together are scored in one call (:mod:`yws.server.coalesce`), and a larger request sent by
columns goes to Arrow column by column, never as one dict per row (:class:`Columns`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from yws.errors import InvalidValueError
from yws.model.evaluator import InvalidInputError, reasons_param
from yws.scoring.records import score_columns, score_records
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


@dataclass(frozen=True)
class Columns:
    """The rows of a request sent by columns (``dataframe_split``, ``inputs`` as columns) whose
    every cell :func:`_cell` passes as it is: each column's values in row order. Scored as the
    same rows sent as records would be (:func:`yws.scoring.records.score_columns`)."""

    values: Mapping[str, Sequence[Any]]
    rows: int


Rows = list[dict[str, Any]]
_SCALARS = frozenset({str, int, float, bool, type(None)})
_LARGEST_INT = 2**1023  # an integer a double can hold; past it float() fails


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The request body as a JSON object, and whether it may hold a lone surrogate (a
    ``\\u`` escape: no Arrow string can hold an unpaired \\ud800-\\udfff).

    The same refusals as the other endpoints' bounded parser (not UTF-8, not JSON, NaN or
    Infinity literals, too deep, not an object), at the cost of ``json.loads`` alone: the cells
    are checked once, by :func:`inputs`, where only a suspect body is checked cell by cell.
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


def _plain(cells: list[Any], escapes: bool) -> bool:
    """Whether :func:`_cell` passes every cell as it is, proved with C-level passes over the
    cells: their types, the largest float and integer (json reads 1e999 as infinity) and, when
    the body holds ``\\u`` escapes, that no string holds a lone surrogate."""
    if not set(map(type, cells)) <= _SCALARS:
        return False
    largest_float = max(map(abs, filter(float.__instancecheck__, cells)), default=0.0)
    largest_int = max(map(abs, filter(int.__instancecheck__, cells)), default=0)
    if not (math.isfinite(largest_float) and largest_int <= _LARGEST_INT):
        return False
    if escapes:
        try:
            "".join(filter(str.__instancecheck__, cells)).encode()
        except UnicodeEncodeError:
            return False
    return True


def _clean(rows: Rows, escapes: bool) -> Rows:
    """Rows whose every cell is a JSON scalar a feature can take, else a refusal marker.

    The common case is proved by :func:`_plain`, and only a request that fails it is checked
    cell by cell (where the first bad number or string, in row order, refuses it whole)."""
    if _plain(list(chain.from_iterable(r.values() for r in rows)), escapes):
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


def _split(value: Any) -> tuple[list[str], list[list[Any]]]:
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
    return columns, data


def _columns(value: dict[str, Any], field: str) -> int:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise bad_request(f"{field} as columns must map each column name to an array of "
                          "values, all of the same length")
    rows = next(iter(lengths), 0)
    _bounded(rows, rows * len(value))
    return int(rows)


def inputs(payload: dict[str, Any], escapes: bool = True) -> Rows | Columns:
    """The rows of an invocation request, each cell a JSON scalar (or a refusal marker);
    ``escapes``: whether the body holds ``\\u`` escapes (a string may be a lone surrogate).

    A request sent by columns of more than :data:`BATCHED_ROWS` rows whose every cell is plain
    (:func:`_plain`) comes back as :class:`Columns`: the same rows, never built one by one."""
    given = [f for f in FORMATS if f in payload]
    if len(given) != 1:
        raise bad_request(
            "The input must be a JSON object with exactly one of the input fields "
            f"{', '.join(FORMATS)}; received {', '.join(repr(k[:100]) for k in payload) or 'none'}")
    unknown = sorted(set(payload) - {*FORMATS, *PASSED_OVER, "params"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0][:100]!r}: the model takes its rows in "
                          f"{given[0]}")
    wants_reasons(payload)
    field = given[0]
    value = payload[field]
    if field == "dataframe_split":
        names, data = _split(value)
        if names and len(data) > BATCHED_ROWS and \
                _plain(list(chain.from_iterable(data)), escapes):
            return Columns(dict(zip(names, zip(*data, strict=True), strict=True)), len(data))
        rows = [dict(zip(names, row, strict=True)) for row in data]
    elif field == "inputs" and isinstance(value, dict):
        count = _columns(value, field)
        if value and count > BATCHED_ROWS and \
                _plain(list(chain.from_iterable(value.values())), escapes):
            return Columns(value, count)
        rows = [dict(zip(value, cells, strict=True))
                for cells in zip(*value.values(), strict=True)]
    else:
        rows = _rows(value, field)
    return _clean(rows, escapes)


def wants_reasons(payload: dict[str, Any]) -> bool:
    """Whether the request's ``params`` ask for reason codes (``{"reasons": true}``); an
    unknown parameter or a value of the wrong type is a 400 saying which."""
    try:
        return reasons_param(payload.get("params"))
    except InvalidInputError as e:
        raise bad_request(str(e)) from None


def predictions(service: ServingService, model: Any, rows: Rows | Columns,
                reasons: bool = False) -> list[dict[str, Any]]:
    """One ``{probability, prediction, band, error}`` per row, in order (with ``reasons``,
    the reason code columns after them)."""
    try:
        if isinstance(rows, Columns):
            out = score_columns(model, service.spec(), rows.values, rows.rows,
                                reasons=reasons)
        else:
            out = score_records(model, service.spec(), rows, reasons=reasons)
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


def answer(service: ServingService, model: Any, rows: Rows | Columns,
           reasons: bool = False) -> bytes:
    """The response body for ``rows`` (in a worker thread: the event loop stays free)."""
    return encode(predictions(service, model, rows, reasons))


def complete(service: ServingService, rows: Rows) -> bool:
    """Whether every feature the model reads is in some row (else the request is refused
    whole, by :func:`predictions`, and must not share a batch)."""
    if not rows:
        return False
    names = service.spec().feature_names
    return all(map(rows[0].__contains__, names)) or \
        all(any(n in r for r in rows) for n in names)


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

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        principal = who(request)
        limit(principal.name)
        endpoint = service.endpoint(name, principal, "CAN_QUERY")
        payload, escapes = parse(await request.body())
        rows = inputs(payload, escapes)
        explain = wants_reasons(payload)
        loaded = service.cached_model(endpoint)
        if loaded is None:
            loaded = await run_in_threadpool(service.model, endpoint)
        served, model = loaded
        if not isinstance(rows, Columns) and len(rows) <= BATCHED_ROWS and \
                complete(service, rows):
            # requests for reasons share calls with each other, not with the others
            key = (model, "reasons") if explain else model
            body = encode(await batches.score(
                key, rows, lambda rs: predictions(service, model, rs, explain)))
        else:
            body = await run_in_threadpool(answer, service, model, rows, explain)
        return Response(body, media_type="application/json",
                        headers={"served-model-name": served})

    # First in the router, and a plain Starlette route: as the last FastAPI route, every call
    # tried the 25 routes before it and had the endpoint's parameters solved, some 0.1 ms of
    # CPU per call (about a quarter of the server's CPU per single-record call with 20 clients).
    # Its errors go to the app's exception handlers all the same; a wrong method gets the same
    # 405.
    app.router.routes.insert(0, Route("/serving-endpoints/{name}/invocations", invoke,
                                      methods=["POST"], include_in_schema=False))
