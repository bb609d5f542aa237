"""Bounds on what a request may carry, checked before the request can cost anything.

Limits, and where they come from:

* ``statement`` of ``POST /api/2.0/sql/statements``: at most :data:`MAX_STATEMENT_BYTES`
  (16 MiB) — "The maximum query text size is 16 MiB" (SQL Statement Execution API,
  ``executeStatement``). Its body may be twice that, room for a statement escaped as JSON.
  And at most :data:`MAX_STATEMENT_TOKENS` tokens (words, numbers, symbols; a quoted string or
  name is one), counted before it is parsed: this server parses and rewrites a statement in
  Python before DuckDB runs it, outside the statement timeout, at about 4 kB of memory and
  0.1 ms per token — a 16 MiB statement of ``1/x`` columns would take half an hour and tens of
  gigabytes. Databricks' own engine has no such bound; the refusal says so.
* ``idempotency_token`` of ``run-now``: at most 64 characters — "This token must have at most
  64 characters" (Jobs API 2.2, ``run-now``).
* ``job_parameters`` of ``run-now``: at most :data:`MAX_JOB_PARAMETERS_BYTES` as JSON. The
  Jobs API documents that limit for ``jar_params``, ``notebook_params``, ``python_params``
  ("cannot exceed 10,000 bytes"); ``job_parameters`` carries the same values, so the same
  bound keeps a run's parameters (stored with the run) small.
* Task keys of ``only`` (run-now) and ``rerun_tasks`` (runs/repair): at most
  :data:`MAX_TASK_KEY` characters each — task_key "The maximum length is 100 characters" —
  and at most :data:`MAX_TASKS` of them. ``limit`` of ``jobs/list``: 1 to 100; of
  ``runs/list``: 1 to 25, 0 meaning 25 (Jobs API 2.2, ``list``, ``listruns``). A field of
  run-now, runs/repair or runs/cancel that this server does not act on is refused by name
  (:func:`served_fields`), never ignored.
* ``warehouse_id``, ``catalog``, ``schema``, parameter names and the other string fields of a
  statement: at most 255 characters — "Object names cannot exceed 255 characters" (Databricks
  SQL reference, Names, for every Unity Catalog object).
* A file uploaded to a volume (``PUT /api/2.0/fs/files/Volumes/...``): at most
  :data:`MAX_VOLUME_FILE_BYTES` (16 MiB). The Files API takes "a file of up to 5 GiB"; what
  goes to a volume here is an R model's JSON export, and a local volume is a folder of
  ``$YWS_HOME``, so the bound is far lower; the refusal names it.
* Any other body: at most :data:`MAX_BODY_BYTES` (1 MiB); no endpoint served here takes more.
* JSON: objects and arrays nested at most :data:`MAX_JSON_DEPTH` deep (the APIs' own requests
  nest four), no ``NaN``/``Infinity``, numbers within a double; ids within a signed 64-bit
  integer, as the APIs' ``int64`` fields.

A body is refused by its ``Content-Length`` before a byte of it is read, and a chunked body is
counted while it arrives, so a refused body never sits whole in memory.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from yws.server.errors import ApiError, invalid

log = logging.getLogger("yws.server")

MiB = 1024 * 1024
MAX_STATEMENT_BYTES = 16 * MiB
MAX_STATEMENT_BODY_BYTES = 2 * MAX_STATEMENT_BYTES
MAX_STATEMENT_TOKENS = 50_000
# What the tokenizer would count, roughly: a quoted string or name, a word or number, a symbol.
# No escapes inside quotes: with them, text like \'\'\'... would make every quote scan to the end.
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\w+|[^\w\s]")
MAX_BODY_BYTES = 1 * MiB
MAX_JOB_PARAMETERS_BYTES = 10_000
MAX_IDEMPOTENCY_TOKEN = 64
MAX_JSON_DEPTH = 32
MAX_ID = 2**63 - 1
MAX_NAME = 255
STATEMENTS_PATH = "/api/2.0/sql/statements"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_REQUEST", message)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "BAD_REQUEST",
                    f"the request body is larger than {limit} bytes, the limit for this "
                    "endpoint")


# Model Serving: "Payload size | Per request | 16 MB" (Model Serving limits and regions).
MAX_INVOCATION_BYTES = 16 * MiB


# Files API uploads to a volume (see the module's docstring).
MAX_VOLUME_FILE_BYTES = 16 * MiB
FILES_PATH = "/api/2.0/fs/files/"


def body_limit(method: str, path: str) -> int:
    if method == "PUT" and path.startswith(FILES_PATH):
        return MAX_VOLUME_FILE_BYTES
    if method == "POST" and path.rstrip("/") == STATEMENTS_PATH:
        return MAX_STATEMENT_BODY_BYTES
    if method == "POST" and path.startswith("/serving-endpoints/") and \
            path.rstrip("/").endswith("/invocations"):
        return MAX_INVOCATION_BYTES
    return MAX_BODY_BYTES


class BodyLimit:
    """ASGI middleware: refuse a body over the endpoint's limit without reading it whole."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                length = -1
            error = malformed("Content-Length is not a number") if length < 0 else \
                too_large(limit) if length > limit else None
            if error is not None:
                response = JSONResponse({"error_code": error.code, "message": error.message},
                                        error.status, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counted, send)


# -- JSON ------------------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _check_tree(value: Any) -> None:
    """Depth within bounds, and every string encodable (no lone surrogate from a \\ud800)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise malformed("the request body holds a lone UTF-16 surrogate "
                                "(an unpaired \\ud800-\\udfff escape)") from None
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise malformed(f"the request body nests more than {MAX_JSON_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def parse_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object: UTF-8 (a BOM is allowed), bounded, finite numbers."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise malformed(f"the request body is not valid UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise malformed(f"the request body nests more than {MAX_JSON_DEPTH} levels "
                        "deep") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, too many digits
        raise malformed(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise malformed("the request body must be a JSON object")
    _check_tree(data)
    return data


# -- fields ----------------------------------------------------------------------------------
def positive_id(value: Any, field: str) -> int:
    """An id field: a JSON integer, or a string of one (int64 as proto3 JSON writes it)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,19}\s*", value):
        number = int(value)
    if number is None or not 1 <= number <= MAX_ID:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise invalid(f"{field} must be a positive 64-bit integer, not {shown}")
    return number


def page_offset(token: str | None) -> int:
    """The position a ``page_token`` of this server stands for."""
    if token is None or token == "":
        return 0
    if not re.fullmatch(r"\d{1,9}", token):
        raise invalid("page_token is not one this server issued: pass the next_page_token "
                      "of the previous page")
    return int(token)


def idempotency_token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_IDEMPOTENCY_TOKEN:
        raise invalid(f"idempotency_token must be a string of 1 to {MAX_IDEMPOTENCY_TOKEN} "
                      "characters")
    return value


def job_parameters(value: Any) -> dict[str, str]:
    """``job_parameters`` of run-now: names to string values, at most 10,000 bytes as JSON."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("job_parameters must be an object of name to value")
    out: dict[str, str] = {}
    for name, raw in value.items():
        if not 1 <= len(name) <= MAX_NAME:
            raise invalid(f"job_parameters: a parameter name must be 1 to {MAX_NAME} "
                          "characters")
        if isinstance(raw, bool | int | float | str):
            out[name] = str(raw)
        else:
            raise invalid(f"job_parameters.{name[:100]} must be a string")
        if "\x00" in name or "\x00" in out[name]:
            # a value reaches its task as a process argument, which cannot hold one: the run
            # would start and end INTERNAL_ERROR ("embedded null byte")
            raise invalid(f"job_parameters.{name[:100]!r} holds a NUL character (\\u0000), "
                          "which no task argument can carry")
    size = len(json.dumps(out).encode())
    if size > MAX_JOB_PARAMETERS_BYTES:
        name = max(out, key=lambda k: len(k.encode()) + len(out[k].encode()))
        raise invalid(f"job_parameters is {size} bytes as JSON, more than the limit of "
                      f"{MAX_JOB_PARAMETERS_BYTES} bytes (the largest is "
                      f"job_parameters.{name[:100]})")
    return out


# Fields of run-now and runs/repair that yws serve does not serve, and why: refused, never
# silently ignored.
LEGACY_TASK_PARAMETERS = ("python_params", "python_named_params", "jar_params",
                          "notebook_params", "spark_submit_params", "sql_params",
                          "dbt_commands", "pipeline_params")
SERVERLESS_ONLY = ("performance_target", "duration_target")
RUN_NOW_FIELDS = ("job_id", "job_parameters", "idempotency_token", "only", "queue")
REPAIR_FIELDS = ("run_id", "latest_repair_id", "rerun_tasks", "rerun_all_failed_tasks",
                 "rerun_dependent_tasks", "job_parameters")
MAX_TASK_KEY = 100  # "The maximum length is 100 characters" (task_key)
MAX_TASKS = 1000


def served_fields(payload: dict[str, Any], served: tuple[str, ...], endpoint: str) -> None:
    """Refuse every field of the request this server does not act on, naming it."""
    for name in payload:
        if name in served:
            continue
        if name in LEGACY_TASK_PARAMETERS:
            raise invalid(f"{endpoint}: {name} is not supported: the jobs here take job "
                          "parameters, which reach their tasks through {{job.parameters.*}}; "
                          "pass job_parameters instead")
        if name in SERVERLESS_ONLY:
            raise invalid(f"{endpoint}: {name} is not supported: tasks run as local processes, "
                          "with no serverless performance mode to choose")
        raise invalid(f"{endpoint}: unknown field {name[:100]!r}; this server accepts "
                      f"{', '.join(served)}")


def task_keys(value: Any, field: str, plus: bool = False) -> list[str] | None:
    """A list of task keys (``only`` may mark one ``+key``, ``key+``); None when absent."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_TASKS:
        raise invalid(f"{field} must be a list of 1 to {MAX_TASKS} task keys")
    limit = MAX_TASK_KEY + (2 if plus else 0)
    for key in value:
        if not isinstance(key, str) or not 1 <= len(key) <= limit:
            raise invalid(f"{field}: each task key must be a string of 1 to {MAX_TASK_KEY} "
                          "characters")
    return list(value)


def flag(value: Any, field: str) -> bool:
    """A boolean field; absent is false."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{field} must be true or false")
    return value


def queue_setting(value: Any) -> bool | None:
    """run-now ``queue``: ``{"enabled": bool}`` overrides the job's queue setting."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("enabled"), bool) or \
            set(value) != {"enabled"}:
        raise invalid('queue must be {"enabled": true} or {"enabled": false}')
    return bool(value["enabled"])


def optional_id(value: Any, field: str) -> int | None:
    return None if value is None else positive_id(value, field)


def list_limit(value: int, field: str, default: int, maximum: int,
               zero_is_maximum: bool = False) -> int:
    """A list ``limit``: 1 to ``maximum``; None is the default (and 0 the maximum where the
    API says so)."""
    if value == 0 and zero_is_maximum:
        return maximum
    if not 1 <= value <= maximum:
        raise invalid(f"{field} must be greater than 0 and at most {maximum}, not {value}"
                      + (" (0 means the maximum)" if zero_is_maximum else "")
                      + f"; the default is {default}")
    return value


def list_offset(value: int | None) -> int:
    if value is None:
        return 0
    if not 0 <= value <= 10**9:
        raise invalid(f"offset must be 0 or more, not {value}")
    return value


def check_statement(payload: dict[str, Any]) -> None:
    """The shape and size checks of an executeStatement request that come before any SQL."""
    sql = payload.get("statement")
    if isinstance(sql, str) and len(sql) > MAX_STATEMENT_BYTES // 4 and \
            len(sql.encode()) > MAX_STATEMENT_BYTES:
        raise invalid(f"statement is {len(sql.encode())} bytes; the maximum query text size "
                      f"is {MAX_STATEMENT_BYTES} bytes (16 MiB)")
    if isinstance(sql, str) and len(sql) > MAX_STATEMENT_TOKENS:  # fewer chars, fewer tokens
        count = 0
        for _ in _TOKEN.finditer(sql):
            count += 1
            if count > MAX_STATEMENT_TOKENS:
                raise invalid(f"statement has more than {MAX_STATEMENT_TOKENS} tokens, the most "
                              "the local warehouse parses (it rewrites each statement for DuckDB "
                              "before running it): split it, or pass values as parameters")
    for field in ("warehouse_id", "catalog", "schema", "format", "disposition", "wait_timeout",
                  "on_wait_timeout"):
        value = payload.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
            raise invalid(f"{field} must be a string of at most {MAX_NAME} characters")
    for field in ("row_limit", "byte_limit"):
        value = payload.get(field)
        if value is not None and not (
                (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID)
                or (isinstance(value, str) and re.fullmatch(r"\d{1,18}", value))):
            raise invalid(f"{field} must be a non-negative 64-bit integer")
    params = payload.get("parameters")
    if params is None:
        return
    if not isinstance(params, list):
        raise invalid("parameters must be a list of {name, value, type} objects")
    for i, p in enumerate(params):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or \
                not 1 <= len(p["name"]) <= MAX_NAME:
            raise invalid(f"parameters[{i}].name must be a string of 1 to {MAX_NAME} "
                          "characters")
        if not isinstance(p.get("value"), str | None):
            raise invalid(f"parameters[{i}].value must be a string or null")
        if not isinstance(p.get("type"), str | None):
            raise invalid(f"parameters[{i}].type must be a string")


# -- errors ----------------------------------------------------------------------------------
def install(app: FastAPI) -> None:
    """The body-size middleware and the handlers that make every error Databricks-shaped."""
    app.add_middleware(BodyLimit)

    @app.exception_handler(405)
    async def wrong_method(request: Request, e: Exception) -> JSONResponse:
        allow = getattr(e, "headers", None) or {}
        methods = allow.get("Allow", allow.get("allow", ""))
        return JSONResponse({"error_code": "ENDPOINT_NOT_FOUND",
                             "message": f"No API found for '{request.method} "
                                        f"{request.url.path}'"
                                        + (f"; it accepts {methods}" if methods else "")},
                            405, headers={"Allow": methods} if methods else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "ENDPOINT_NOT_FOUND", 413: "BAD_REQUEST"}.get(e.status_code,
                                                                   "BAD_REQUEST")
        if e.status_code >= 500:
            code = "INTERNAL_ERROR"
        return JSONResponse({"error_code": code, "message": str(e.detail)}, e.status_code)

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, e: RecursionError) -> JSONResponse:
        # input nested deeper than a parser's recursion (a SQL statement of 3000 parentheses)
        return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE",
                             "message": "the request is nested too deeply to parse; "
                                        "flatten the statement or the body"}, 400)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        # the detail goes to the server log only: a message may hold a path or a secret
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s: %s", ref, request.method, request.url.path,
                  type(e).__name__, exc_info=e)
        return JSONResponse({"error_code": "INTERNAL_ERROR",
                             "message": f"internal error (reference {ref}); the server log "
                                        "has the details"}, 500)
