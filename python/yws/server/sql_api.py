"""The SQL Statement Execution API 2.0 on the local warehouse, with grants enforced.

A principal may read only objects granted (SELECT) to it or one of its groups in ``sql/``,
call only the SQL functions granted (EXECUTE) to it, and name in ``ai_query`` only a Model
Serving endpoint it may query (``CAN_QUERY`` in the bundle's permissions for the endpoint);
only queries run here (DDL and DML go through ``yws sql apply``). Results are cut into chunks
of :data:`ROWS_PER_CHUNK` rows: JSON_ARRAY inline as ``data_array`` (every value a string, as
Databricks sends it); ARROW_STREAM and CSV only through ``EXTERNAL_LINKS``, as on Databricks.

A request error (an unknown warehouse, a bad field or parameter type) is an HTTP 4xx; a
statement that cannot run — it does not parse, reads what does not exist or is not granted,
fails in the engine — is a statement in state ``FAILED`` (HTTP 200) with
``status.error`` ``{error_code, message}`` and ``status.sql_state``, the message in Databricks'
form (``[TABLE_OR_VIEW_NOT_FOUND] ... SQLSTATE: 42P01``).

Resources are bounded (settings from ``YWS_SQL_*`` variables, see :class:`ResultLimits`):

- a result never stays in memory: it is streamed from DuckDB into an Arrow IPC file (one record
  batch per chunk) in a folder under ``$YWS_HOME/tmp`` that the server removes when it stops,
  and each chunk is read back from disk when it is fetched;
- a result is kept ``YWS_SQL_RESULT_TTL`` seconds (default 3600), and the oldest go first when
  all results together pass ``YWS_SQL_RESULT_BYTES`` (default 2 GiB); ``DELETE`` on a statement
  frees its result at once. A statement whose result is gone reports ``CLOSED`` ("result no
  longer available for fetch"); statement records go after 12 hours (then 404), as Databricks
  removes them "after at least 12 hours in terminal state", and the oldest first beyond
  ``YWS_SQL_MAX_RECORDS`` (10,000) in all or ``YWS_SQL_MAX_RECORDS_PER_PRINCIPAL`` (1,000) of one
  principal;
- cancel (``POST …/cancel``, ``DELETE``, ``on_wait_timeout=CANCEL``) interrupts the query in
  DuckDB (``cursor.interrupt()``), and every query is stopped after
  ``YWS_SQL_STATEMENT_TIMEOUT`` seconds (default 300), ending ``FAILED`` with
  ``DEADLINE_EXCEEDED``;
- an external link is valid ``YWS_SQL_LINK_TTL`` seconds (default 900: Databricks' links last
  "<= 15 minutes"); its expiry is signed into the link, and an expired link answers 403 — ask
  ``…/result/chunks/{n}`` for a fresh one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import itertools
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from yws.config import Settings, SettingsError
from yws.server.errors import ApiError, invalid, not_found
from yws.server.grants import relations
from yws.server.store import Principal
from yws.warehouse import QueryError, WarehouseError, check_query
from yws.warehouse.base import SqlError
from yws.warehouse.dialect import ParameterTypeError, Typed, sql_error, to_duckdb, typed
from yws.warehouse.local import LocalWarehouse

log = logging.getLogger("yws.server")
ROWS_PER_CHUNK = 20_000
LOCAL_WAREHOUSE_ID = "yws_local"
FORMATS = ("JSON_ARRAY", "ARROW_STREAM", "CSV")
_WAIT = re.compile(r"^(\d+)s$")
DISPOSITIONS = ("INLINE", "EXTERNAL_LINKS")
# the default schema of a request that names none (Databricks: the schema ``default``)
DEFAULT_SCHEMA = "default"
_INTS = {8: ("BYTE", "TINYINT"), 16: ("SHORT", "SMALLINT"), 32: ("INT", "INT"),
         64: ("LONG", "BIGINT")}
EXECUTE_PRIVILEGES = ("EXECUTE", "ALL PRIVILEGES")

EndpointAccess = Callable[[Principal, str], object]
"""``access(principal, endpoint)``: returns when the principal may query the Model Serving
endpoint (``CAN_QUERY``); raises the API's 403 ``PERMISSION_DENIED`` when it may not, 404 when
there is no such endpoint (``yws.server.serving.ServingService.endpoint`` with ``CAN_QUERY``)."""


def column_type(t: pa.DataType) -> dict[str, Any]:
    """``type_name`` / ``type_text`` (and precision, scale) of a result column, as Databricks.

    ``type_name`` is the base type (``ColumnInfoTypeName``); ``type_text`` the full SQL type:
    ``DECIMAL(10,2)``, ``ARRAY<INT>``, ``STRUCT<a: INT>``, ``MAP<STRING, INT>``.
    """
    if pa.types.is_decimal(t):
        return {"type_name": "DECIMAL", "type_text": f"DECIMAL({t.precision},{t.scale})",
                "type_precision": t.precision, "type_scale": t.scale}
    if pa.types.is_integer(t):
        name, text = _INTS[t.bit_width]
        if pa.types.is_unsigned_integer(t):  # DuckDB's unsigned types: the next wider one
            name, text = _INTS.get(t.bit_width * 2, ("DECIMAL", "DECIMAL(20,0)"))
            if name == "DECIMAL":
                return {"type_name": name, "type_text": text, "type_precision": 20,
                        "type_scale": 0}
        return {"type_name": name, "type_text": text}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"type_name": "ARRAY", "type_text": f"ARRAY<{_text_of(t.value_type)}>"}
    if pa.types.is_map(t):
        return {"type_name": "MAP",
                "type_text": f"MAP<{_text_of(t.key_type)}, {_text_of(t.item_type)}>"}
    if pa.types.is_struct(t):
        inner = ", ".join(f"{f.name}: {_text_of(f.type)}" for f in t)
        return {"type_name": "STRUCT", "type_text": f"STRUCT<{inner}>"}
    if pa.types.is_timestamp(t):
        return {"type_name": "TIMESTAMP",
                "type_text": "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ"}
    simple = [(pa.types.is_boolean, "BOOLEAN", "BOOLEAN"), (pa.types.is_float32, "FLOAT", "FLOAT"),
              (pa.types.is_float64, "DOUBLE", "DOUBLE"), (pa.types.is_date, "DATE", "DATE"),
              (pa.types.is_binary, "BINARY", "BINARY"),
              (pa.types.is_large_binary, "BINARY", "BINARY"),
              (pa.types.is_interval, "INTERVAL", "INTERVAL"), (pa.types.is_null, "NULL", "VOID")]
    for test, name, text in simple:
        if test(t):
            return {"type_name": name, "type_text": text}
    return {"type_name": "STRING", "type_text": "STRING"}


def _text_of(t: pa.DataType) -> str:
    return str(column_type(t)["type_text"])


def type_name(t: pa.DataType) -> str:
    return str(column_type(t)["type_name"])


def _plain(value: Any) -> Any:
    """A nested value (inside an ARRAY, MAP or STRUCT) as JSON would hold it."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(_text(k)): _plain(v) for k, v in value}  # a MAP's (key, value) pairs
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _text(value)
    return _text(value)


def _text(value: Any) -> str | None:
    """A value as the JSON_ARRAY format carries it: a string (or null).

    Dates and timestamps in ISO 8601 (timestamps in UTC), BINARY as hex (as the SQL connector's
    SEA client decodes it), ARRAY / MAP / STRUCT as JSON text, NaN and infinities as Spark
    writes them.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat(timespec="milliseconds")
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, dict | list | tuple):
        return json.dumps(_plain(value), separators=(",", ":"))
    return str(value)


def _encode(fmt: str, part: pa.Table, header: bool) -> bytes:
    """A chunk in a result format: JSON_ARRAY rows, an Arrow IPC stream or CSV."""
    if fmt == "JSON_ARRAY":
        return json.dumps(_rows(part)).encode()
    sink = io.BytesIO()
    if fmt == "ARROW_STREAM":
        with pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
    else:
        import pyarrow.csv as csv

        csv.write_csv(part, sink, csv.WriteOptions(include_header=header))
    return sink.getvalue()


def _rows(part: pa.Table) -> list[list[str | None]]:
    columns = [[_text(v) for v in _values(col)] for col in part.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def _values(column: pa.ChunkedArray) -> list[Any]:
    """A column's values as Python objects; dates and timestamps past Python's years 1-9999
    (DuckDB reads ``DATE '10000-01-01'``, ``'infinity'``) as their text, not an exception."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError):
        return [_wide(value) for value in column]


def _wide(value: pa.Scalar) -> Any:
    """One value as :func:`_values` gives it, nested values included."""
    t = value.type
    if not value.is_valid:
        return None
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        try:
            return value.as_py()
        except (OverflowError, ValueError):
            raw = pa.int32() if pa.types.is_date32(t) else pa.int64()
            return _civil(t, int(value.cast(raw).as_py()))
    if pa.types.is_map(t):
        return [(_wide(kv["key"]), _wide(kv["value"])) for kv in value.values]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [_wide(item) for item in value.values]
    if pa.types.is_struct(t):
        return {f.name: _wide(value[f.name]) for f in t}
    return value.as_py()


def _civil(t: pa.DataType, raw: int) -> str:
    """A date or timestamp outside Python's range in ISO 8601 with an expanded year, as Spark
    writes one (``+10000-01-01``); proleptic Gregorian (H. Hinnant's days_from_civil inverse)."""
    per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000,
               "ns": 86_400_000_000_000}.get(getattr(t, "unit", ""), 1)
    if pa.types.is_date64(t):
        per_day = 86_400_000
    days, rest = divmod(raw, per_day)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day, month = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    text = f"{'+' if year > 9999 else '-' if year < 0 else ''}{abs(year):04d}-{month:02d}-{day:02d}"
    if pa.types.is_date(t):
        return text
    millis = rest * 86_400_000 // per_day if per_day > 1 else 0
    seconds, ms = divmod(millis, 1000)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{ms:03d}"
    return f"{text}T{clock}" + ("Z" if getattr(t, "tz", None) else "")


def routines(tree: Any, catalog: str, schema: str, known: set[str]) -> set[str]:
    """The lower-case three-level names of the SQL functions a statement calls: every
    qualified call (``schema.f(...)``, ``catalog.schema.f(...)``; the request's catalog
    completes a two-part name), and an unqualified call of a function of the request's
    catalog and schema (in ``known``), which is qualified in the tree, so that the engine
    runs the function it was checked as (as :func:`yws.server.grants.relations` does for
    tables)."""
    from sqlglot import exp

    def parts(node: Any) -> list[str] | None:
        if isinstance(node, exp.Identifier):
            return [str(node.this)]
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
            head = parts(node.this)
            return None if head is None else [*head, str(node.expression.this)]
        return None

    out: set[str] = set()
    for dot in tree.find_all(exp.Dot):
        if isinstance(dot.expression, exp.Anonymous):
            qualifier = parts(dot.this)
            if qualifier and len(qualifier) <= 2:
                name = [*([catalog] if len(qualifier) == 1 else []), *qualifier,
                        str(dot.expression.name)]
                out.add(".".join(name).lower())
    local = f"{catalog}.{schema}.".lower()
    for call in list(tree.find_all(exp.Anonymous)):
        full = local + str(call.name).lower()
        qualified = isinstance(call.parent, exp.Dot) and call.arg_key == "expression"
        if not qualified and full in known:
            out.add(full)
            call.replace(exp.Dot.build([exp.to_identifier(catalog.lower()),
                                        exp.to_identifier(schema.lower()), call.copy()]))
    return out


@dataclass(frozen=True)
class ResultLimits:
    """How long and how much the server keeps; each from ``YWS_SQL_<NAME>`` when set."""

    statement_timeout: float = 300.0  # seconds a query may run
    result_ttl: float = 3600.0  # seconds a result is kept after it is ready
    result_bytes: int = 2 * 1024**3  # all results on disk together (the oldest go first)
    link_ttl: float = 900.0  # seconds an external link is valid
    record_ttl: float = 12 * 3600.0  # seconds a finished statement is still known
    max_records: int = 10_000  # finished statements known at most
    # finished statements of one principal known at most: its own oldest go first, so one token
    # sending statements in a loop cannot push everyone else's out of max_records
    max_records_per_principal: int = 1_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ResultLimits:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"YWS_SQL_{f.name.upper()}")
            if raw:
                try:
                    value = float(raw) if f.type == "float" else int(raw)
                except ValueError:
                    raise SettingsError(f"YWS_SQL_{f.name.upper()}={raw!r} is not a number: "
                                        "give seconds or bytes") from None
                if value <= 0:
                    raise SettingsError(f"YWS_SQL_{f.name.upper()} must be positive")
                values[f.name] = value
        return cls(**values)


_SPILL = pa.ipc.IpcWriteOptions(compression="lz4")  # fast, and a third of the bytes on disk


class _TooLarge(WarehouseError):
    """The result outgrew what the server keeps (``YWS_SQL_RESULT_BYTES``)."""


class _Stopped(Exception):
    """The statement was canceled or timed out while its result was being written."""


@dataclass
class Result:
    """A finished statement's rows in an Arrow IPC file: one record batch per chunk."""

    path: Path
    schema: pa.Schema
    chunks: list[tuple[int, int]]  # (row_offset, row_count); [(0, 0)] when empty
    num_rows: int
    nbytes: int
    truncated: bool = False  # row_limit or byte_limit cut the result
    chunk_bytes: list[int] | None = None  # bytes of each chunk in its format (EXTERNAL_LINKS)
    ready: float = field(default_factory=time.monotonic)

    def part(self, index: int) -> pa.Table:
        """Chunk ``index``, read from disk (the file holds no batch for an empty result)."""
        if self.chunks[index][1] == 0:
            return self.schema.empty_table()
        try:
            with pa.OSFile(str(self.path)) as f:
                return pa.Table.from_batches([pa.ipc.open_file(f).get_batch(index)])
        except FileNotFoundError:
            raise ApiError(404, "NOT_FOUND", "the result is no longer available (closed or "
                                             "expired): run the statement again") from None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Statement:
    statement_id: str
    principal: str
    fmt: str
    disposition: str = "INLINE"
    link_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    state: str = "PENDING"
    result: Result | None = None
    error: tuple[str, str, str | None] | None = None  # (error_code, message, sql_state)
    done: threading.Event = field(default_factory=threading.Event)
    cursor: Any = None  # the DuckDB cursor while the query runs (to interrupt it)
    deadline: float | None = None  # time.monotonic() past which the query is stopped
    timed_out: bool = False
    ended: float | None = None  # time.monotonic() when it reached a terminal state


def _interrupt(cursor: Any) -> None:
    try:
        cursor.interrupt()
    except Exception:  # already closed: nothing runs on it any more
        pass


class StatementService:
    def __init__(self, settings: Settings, limits: ResultLimits | None = None) -> None:
        self.settings = settings
        self.limits = limits or ResultLimits.from_env()
        self.warehouse = LocalWarehouse(settings)
        # who may query which endpoint in ai_query (set by check_endpoints_with); without it
        # the warehouse serves no endpoint to check
        self.endpoint_access: EndpointAccess | None = None
        self._statements: dict[str, Statement] = {}
        self._lock = threading.Lock()
        self._dir = self._results_dir(settings.home.resolve() / "tmp")
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="yws-sql-monitor",
                                         daemon=True)
        self._monitor.start()

    @staticmethod
    def _results_dir(tmp: Path) -> Path:
        """A results folder of this process; folders of servers that died are removed."""
        tmp.mkdir(parents=True, exist_ok=True)
        for old in tmp.glob("sql-results-*"):
            pid = old.name.split("-")[2]
            try:
                os.kill(int(pid), 0)
            except (ValueError, ProcessLookupError):
                shutil.rmtree(old, ignore_errors=True)
            except PermissionError:  # alive, someone else's
                pass
        path = tmp / f"sql-results-{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def shutdown(self) -> None:
        """Stop every query and remove every result (the server is stopping)."""
        self._stop.set()
        with self._lock:
            for st in self._statements.values():
                if st.cursor is not None:
                    _interrupt(st.cursor)
        shutil.rmtree(self._dir, ignore_errors=True)

    def held(self) -> tuple[int, int]:
        """How many results the server holds, and their bytes on disk."""
        with self._lock:
            results = [st.result for st in self._statements.values() if st.result is not None]
        return len(results), sum(r.nbytes for r in results)

    def warehouse_info(self, base_url: str = "") -> dict[str, Any]:
        """The one warehouse, as ``GET /api/2.0/sql/warehouses/{id}`` describes one.

        ``odbc_params`` and ``jdbc_url`` point at this server (plain HTTP on its own port), the
        way a workspace's point at ``<host>:443`` with the path ``/sql/1.0/warehouses/<id>``.
        """
        from urllib.parse import urlsplit

        url = urlsplit(base_url or "http://localhost")
        protocol = url.scheme or "http"
        port = url.port or (443 if protocol == "https" else 80)
        host = url.hostname or "localhost"
        path = f"/sql/1.0/warehouses/{LOCAL_WAREHOUSE_ID}"
        return {
            "id": LOCAL_WAREHOUSE_ID, "name": "yws local (DuckDB over the Delta tables)",
            "state": "RUNNING", "warehouse_type": "PRO", "enable_serverless_compute": True,
            "enable_photon": False, "cluster_size": "2X-Small", "min_num_clusters": 1,
            "max_num_clusters": 1, "num_clusters": 1, "num_active_sessions": 0,
            "auto_stop_mins": 0, "spot_instance_policy": "COST_OPTIMIZED",
            "channel": {"name": "CHANNEL_NAME_CURRENT"}, "creator_name": "yws serve",
            "health": {"status": "HEALTHY"}, "tags": {},
            "statement_timeout": int(self.limits.statement_timeout),
            "odbc_params": {"hostname": host, "path": path, "protocol": protocol, "port": port},
            "jdbc_url": (f"jdbc:databricks://{host}:{port}/default;transportMode=http;"
                         f"ssl={1 if protocol == 'https' else 0};AuthMech=3;httpPath={path};"),
        }

    def warehouses(self, base_url: str = "") -> dict[str, Any]:
        return {"warehouses": [self.warehouse_info(base_url)]}

    def get_warehouse(self, warehouse_id: str, base_url: str = "") -> dict[str, Any]:
        if warehouse_id != LOCAL_WAREHOUSE_ID:
            raise not_found(f"warehouse {warehouse_id[:100]!r} does not exist; this server has "
                            f"one: {LOCAL_WAREHOUSE_ID}")
        return self.warehouse_info(base_url)

    def _allowed(self, principal: Principal, objects: set[str]) -> None:
        """Every object exists and is granted (SELECT) to the principal, or the statement fails
        as on Databricks: ``TABLE_OR_VIEW_NOT_FOUND``, else ``INSUFFICIENT_PERMISSIONS``."""
        known = self.warehouse.objects()
        for name in sorted(objects - known):
            quoted = ".".join(f"`{p}`" for p in name.split("."))
            raise SqlError("TABLE_OR_VIEW_NOT_FOUND",
                           f"The table or view {quoted} cannot be found. Verify the spelling "
                           "and correctness of the schema and catalog. If you did not qualify "
                           "the name with a schema, pass catalog and schema with the "
                           "statement (the default schema is `default`).", "42P01")
        grants = self.warehouse.grants()
        readable = {g.securable for g in grants
                    if g.principal in principal.identities
                    and g.privilege in ("SELECT", "ALL PRIVILEGES")}
        missing = sorted(objects - readable)
        if missing:
            raise SqlError("INSUFFICIENT_PERMISSIONS",
                           f"Insufficient privileges: User {principal.name} does not have "
                           f"SELECT on {', '.join(missing)}; grants in sql/90_grants.sql decide "
                           "who reads what.", "42501")

    def check_endpoints_with(self, access: EndpointAccess | None) -> StatementService:
        """Check every endpoint a statement's ``ai_query`` names with ``access`` before it runs
        (see :data:`EndpointAccess`); returns the service."""
        self.endpoint_access = access
        return self

    def _functions(self) -> set[str]:
        """The lower-case three-level names of the applied SQL functions."""
        state = self.warehouse._state()  # the applied state: objects() lists tables and views
        return {str(s["object"]).lower() for s in state["statements"]
                if s["kind"] == "FUNCTION"}

    def _may_call(self, principal: Principal, tree: Any, catalog: str, schema: str) -> None:
        """The statement calls only SQL functions granted (EXECUTE, on the function or
        inherited from its schema or catalog) to the principal, and names in ``ai_query``
        only endpoints it may query (CAN QUERY), or it fails ``INSUFFICIENT_PERMISSIONS``."""
        from yws.warehouse import ai_query

        known = self._functions()
        called = routines(tree, catalog, schema, known)
        for name in sorted(called - known):  # never a DuckDB function by another name
            quoted = ".".join(f"`{p}`" for p in name.split("."))
            raise SqlError("UNRESOLVED_ROUTINE",
                           f"Cannot resolve routine {quoted}: the SQL functions here are "
                           f"those sql/ creates ({', '.join(sorted(known)) or 'none'}).",
                           "42883")
        if called:
            grants = self.warehouse.grants()
            held = {g.securable.lower() for g in grants if g.principal in principal.identities
                    and g.privilege in EXECUTE_PRIVILEGES}
            for name in sorted(called):
                parts = name.split(".")
                if not held & {name, ".".join(parts[:2]), parts[0]}:
                    raise SqlError("INSUFFICIENT_PERMISSIONS",
                                   f"Insufficient privileges: User {principal.name} does not "
                                   f"have EXECUTE on Routine or Model '{name}'; grants in "
                                   "sql/90_grants.sql decide who calls what.", "42501")
        if self.endpoint_access is None:
            return
        for endpoint in ai_query.endpoints(tree):
            try:
                self.endpoint_access(principal, endpoint)
            except ApiError as e:
                if e.status != 403:
                    continue  # no such endpoint: the call says so when it runs
                raise SqlError("INSUFFICIENT_PERMISSIONS",
                               f"Insufficient privileges: User {principal.name} does not have "
                               f"CAN QUERY on serving endpoint '{endpoint}', which ai_query "
                               "needs; the endpoint's permissions in the bundle "
                               "(jobs/resources/yws_serving.yml) decide who queries it.",
                               "42501") from None

    def _parameters(self, body: dict[str, Any]) -> dict[str, Typed | SqlError]:
        """Each parameter typed (STRING unless ``type`` says otherwise); a bad type is a 400, a
        value that is not of its type fails the statement (CAST_INVALID_INPUT), as a cast."""
        params: dict[str, Typed | SqlError] = {}
        for p in body.get("parameters") or []:
            if not isinstance(p, dict) or not p.get("name"):
                raise invalid("each parameter needs a name")
            try:
                params[p["name"]] = typed(p.get("value"), p.get("type"))
            except ParameterTypeError as e:
                raise invalid(f"parameters.{p['name']}: {e}") from None
            except SqlError as e:
                params[p["name"]] = e
        return params

    def _prepare(self, body: dict[str, Any], params: dict[str, Typed | SqlError],
                 principal: Principal) -> tuple[str, dict[str, Any]]:
        """The statement checked, its names resolved and granted, as DuckDB SQL and values."""
        sql = str(body["statement"])
        try:
            tree = check_query(sql, params)
        except QueryError as e:
            if "only queries" in str(e):
                raise SqlError("INSUFFICIENT_PERMISSIONS",
                               f"{e} (statements through this endpoint are read-only)",
                               "42501") from None
            raise sql_error(e) from None
        for name in sorted(params):
            value = params[name]
            if isinstance(value, SqlError):  # a value that is not of its type
                raise SqlError(value.error_class, f"parameter :{name}: {value.message}",
                               value.sql_state)
        # Every relation, in its scope, must be a granted catalog object (server/grants.py);
        # unqualified names take the request's catalog and schema, in the statement too.
        catalog = body.get("catalog") or self.settings.catalog
        schema = body.get("schema") or DEFAULT_SCHEMA
        try:
            objects = relations(tree, catalog, schema)
        except ApiError as e:
            if e.code == "PERMISSION_DENIED":
                raise SqlError("INSUFFICIENT_PERMISSIONS", e.message, "42501") from None
            raise SqlError("TABLE_OR_VIEW_NOT_FOUND", e.message, "42P01") from None
        self._allowed(principal, objects)
        self._may_call(principal, tree, catalog, schema)
        typed_params = {k: v for k, v in params.items() if isinstance(v, Typed)}
        try:
            return to_duckdb(tree, typed_params, user=principal.name)
        except RecursionError:
            raise  # nested too deeply: the request's 400 (server/limits.py)
        except Exception as e:  # sqlglot cannot write it for DuckDB
            raise SqlError("UNSUPPORTED_FEATURE", f"this statement cannot run on the local "
                           f"warehouse (DuckDB): {type(e).__name__}: {str(e)[:300]}",
                           "0A000") from None

    @staticmethod
    def _limit(body: dict[str, Any], field: str) -> int | None:
        value = body.get(field)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid(f"{field} must be a non-negative integer") from None
        if number < 0:
            raise invalid(f"{field} must be a non-negative integer")
        return number

    def submit(self, body: dict[str, Any], principal: Principal,
               base_url: str = "") -> dict[str, Any]:
        # -- request errors: HTTP 4xx, no statement is made
        if body.get("warehouse_id") != LOCAL_WAREHOUSE_ID:
            raise not_found(f"warehouse {body.get('warehouse_id')!r} does not exist; this "
                            f"server has one: {LOCAL_WAREHOUSE_ID}")
        sql = body.get("statement")
        if not isinstance(sql, str) or not sql.strip():
            raise invalid("statement is required")
        fmt = body.get("format", "JSON_ARRAY")
        if fmt not in FORMATS:
            raise invalid(f"format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
        disposition = body.get("disposition", "INLINE")
        if disposition not in DISPOSITIONS:
            raise invalid("disposition must be INLINE or EXTERNAL_LINKS")
        if disposition == "INLINE" and fmt != "JSON_ARRAY":
            # the API reference: 3 formats with EXTERNAL_LINKS "compared to only JSON_ARRAY with
            # INLINE"; a workspace refuses the pair with this message
            raise invalid("The format field must be JSON_ARRAY when the disposition field is "
                          "INLINE. Use disposition EXTERNAL_LINKS for ARROW_STREAM or CSV.")
        wait = body.get("wait_timeout", "10s")
        m = _WAIT.fullmatch(str(wait))
        if not m or not (int(m.group(1)) == 0 or 5 <= int(m.group(1)) <= 50):
            raise invalid(f"wait_timeout {wait!r} must be 0s or between 5s and 50s")
        on_timeout = body.get("on_wait_timeout", "CONTINUE")
        if on_timeout not in ("CONTINUE", "CANCEL"):
            raise invalid("on_wait_timeout must be CONTINUE or CANCEL")
        row_limit, byte_limit = self._limit(body, "row_limit"), self._limit(body, "byte_limit")
        params = self._parameters(body)
        # -- the statement: from here on a failure is a FAILED statement
        st = Statement(statement_id=str(uuid.uuid4()), principal=principal.name, fmt=fmt,
                       disposition=disposition)
        try:
            duck, values = self._prepare(body, params, principal)
        except SqlError as e:
            st.state, st.ended = "FAILED", time.monotonic()
            st.error = ("BAD_REQUEST", str(e), e.sql_state)
            st.done.set()
            with self._lock:
                self._statements[st.statement_id] = st
        else:
            with self._lock:
                self._statements[st.statement_id] = st
            threading.Thread(target=self._run, args=(st, duck, values, row_limit, byte_limit),
                             daemon=True).start()
        seconds = int(m.group(1))
        if seconds == 0:
            # asynchronous: the statement was accepted; its state comes from getStatement
            return {"statement_id": st.statement_id, "status": {"state": "PENDING"}}
        if not st.done.wait(seconds) and on_timeout == "CANCEL":
            self.cancel(st.statement_id, principal)
        return self.response(st, base_url)

    def _attach(self, st: Statement, cursor: Any) -> None:
        with self._lock:
            if st.state != "RUNNING":  # canceled before the query started
                raise _Stopped
            st.cursor = cursor

    def _run(self, st: Statement, duck: str, values: dict[str, Any],
             row_limit: int | None, byte_limit: int | None = None) -> None:
        with self._lock:
            if st.state != "PENDING":  # canceled before it started
                st.done.set()
                return
            st.state = "RUNNING"
            st.deadline = time.monotonic() + self.limits.statement_timeout
        result: Result | None = None
        error: tuple[str, str, str | None] | None = None
        batches: Iterator[pa.RecordBatch] | None = None
        try:
            batches = self.warehouse.stream(duck, values,
                                            on_cursor=lambda c: self._attach(st, c))
            result = self._spill(st, batches, row_limit, byte_limit)
        except _Stopped:
            pass
        except SqlError as e:
            error = ("BAD_REQUEST", str(e), e.sql_state)
        except _TooLarge as e:
            error = ("RESOURCE_EXHAUSTED", str(e), None)
        except (QueryError, WarehouseError) as e:
            error = ("BAD_REQUEST", str(e), None)
        except Exception as e:  # report, never leave the statement RUNNING
            error = ("INTERNAL_ERROR", f"{type(e).__name__}: {e}", None)
        finally:
            if isinstance(batches, Generator):
                batches.close()  # DuckDB's cursor closes with it (a LIMITed query stops here)
        with self._lock:
            st.cursor = None
            if st.state == "RUNNING" and st.timed_out:
                st.error = ("DEADLINE_EXCEEDED", "the statement ran longer than this server's "
                            f"statement timeout ({self.limits.statement_timeout:g} s, "
                            "YWS_SQL_STATEMENT_TIMEOUT) and was stopped", None)
                st.state = "FAILED"
            elif st.state == "RUNNING" and result is not None:
                st.result, st.state = result, "SUCCEEDED"
                result = None
            elif st.state == "RUNNING":
                st.error = error or ("INTERNAL_ERROR", "the query stopped", None)
                st.state = "FAILED"
            st.ended = time.monotonic()
        if result is not None:  # canceled or closed meanwhile: nobody will fetch it
            result.remove()
        st.done.set()
        pa.default_memory_pool().release_unused()  # hand the statement's buffers back
        self._evict()

    def _spill(self, st: Statement, batches: Iterator[pa.RecordBatch],
               row_limit: int | None, byte_limit: int | None = None) -> Result:
        """Write the rows to disk as they come, one record batch per chunk of the manifest.

        ``row_limit`` and ``byte_limit`` cut the result (``truncated`` says so); bytes count as
        Arrow holds the rows ("Byte counts are based on internal data representations").
        With EXTERNAL_LINKS each chunk's size in its format is kept for ``byte_count``.
        """
        per_chunk = ROWS_PER_CHUNK
        first = next(batches)  # LocalWarehouse.batches yields at least one (maybe empty) batch
        path = self._dir / f"{st.statement_id}.arrow"
        chunks: list[tuple[int, int]] = []
        sizes: list[int] = []
        rows = 0
        kept_bytes = 0
        truncated = False
        try:
            with pa.OSFile(str(path), "wb") as sink, \
                    pa.ipc.new_file(sink, first.schema, options=_SPILL) as writer:
                pending = first.schema.empty_table()

                def write(part: pa.Table) -> None:
                    nonlocal rows
                    part = part.combine_chunks()
                    writer.write_table(part, max_chunksize=part.num_rows)
                    if st.disposition == "EXTERNAL_LINKS":
                        sizes.append(len(_encode(st.fmt, part, header=not chunks)))
                    chunks.append((rows, part.num_rows))
                    rows += part.num_rows
                    if sink.tell() > self.limits.result_bytes:
                        raise ApiError(400, "RESOURCE_EXHAUSTED", "the result is larger than "
                                       f"this server keeps ({self.limits.result_bytes} bytes, "
                                       "YWS_SQL_RESULT_BYTES): add a LIMIT or aggregate")

                for batch in itertools.chain([first], batches):
                    if st.state != "RUNNING" or st.timed_out:
                        raise _Stopped
                    keep = batch.num_rows
                    if row_limit is not None:
                        keep = min(keep, max(0, row_limit - rows - pending.num_rows))
                    if byte_limit is not None and batch.num_rows:
                        per_row = max(1.0, batch.nbytes / batch.num_rows)
                        keep = min(keep, max(0, int((byte_limit - kept_bytes) // per_row)))
                    if keep < batch.num_rows:
                        truncated = True
                        batch = batch.slice(0, keep)
                    kept_bytes += batch.nbytes
                    pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
                    while pending.num_rows >= per_chunk:
                        write(pending.slice(0, per_chunk))
                        pending = pending.slice(per_chunk)
                    if truncated:
                        break
                if pending.num_rows:
                    write(pending)
            if not chunks and st.disposition == "EXTERNAL_LINKS":
                sizes.append(len(_encode(st.fmt, first.schema.empty_table(), header=True)))
            return Result(path=path, schema=first.schema, chunks=chunks or [(0, 0)],
                          num_rows=rows, nbytes=path.stat().st_size, truncated=truncated,
                          chunk_bytes=sizes or None)
        except ApiError as e:
            path.unlink(missing_ok=True)
            raise _TooLarge(e.message) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    # -- cancel, close, expiry ---------------------------------------------------------------
    def _watch(self) -> None:
        """Stop queries that were canceled or ran out of time; expire results and records."""
        while not self._stop.wait(0.2):
            try:
                self._police()
                self._evict()
            except Exception:  # keep watching: one bad pass must not end the limits
                log.exception("the SQL statement monitor failed once")

    def _police(self) -> None:
        now = time.monotonic()
        with self._lock:
            for st in self._statements.values():
                if st.cursor is None:
                    continue
                if st.state == "RUNNING" and st.deadline is not None and now > st.deadline:
                    st.timed_out = True
                if st.timed_out or st.state != "RUNNING":
                    # again and again: an interrupt that comes before DuckDB starts is lost
                    _interrupt(st.cursor)

    def _evict(self) -> None:
        """Results past their time or over the byte budget close, oldest first."""
        now = time.monotonic()
        freed: list[Result] = []
        with self._lock:
            held = sorted(((st.result.ready, st.statement_id, st.result)
                           for st in self._statements.values() if st.result is not None),
                          key=lambda t: t[0])
            total = sum(r.nbytes for _, _, r in held)
            for ready, statement_id, result in held:
                if now - ready > self.limits.result_ttl or total > self.limits.result_bytes:
                    total -= result.nbytes
                    freed.append(result)
                    st = self._statements[statement_id]
                    st.result, st.state = None, "CLOSED"
            ended = sorted(((st.ended, st) for st in self._statements.values()
                            if st.ended is not None), key=lambda t: t[0])
            # a principal over its own bound loses its oldest first; then all over max_records
            own = Counter(st.principal for _, st in ended)
            kept: list[Statement] = []
            gone: list[Statement] = []
            for when, st in ended:
                if now - when > self.limits.record_ttl or \
                        own[st.principal] > self.limits.max_records_per_principal:
                    own[st.principal] -= 1
                    gone.append(st)
                else:
                    kept.append(st)
            gone += kept[:max(0, len(kept) - self.limits.max_records)]
            for st in gone:
                del self._statements[st.statement_id]
                if st.result is not None:
                    freed.append(st.result)
                    st.result = None
        for r in freed:
            r.remove()

    def get(self, statement_id: str, principal: Principal) -> Statement:
        with self._lock:
            st = self._statements.get(statement_id)
        if st is None or st.principal != principal.name:
            raise not_found(f"statement {statement_id} does not exist")
        return st

    def cancel(self, statement_id: str, principal: Principal) -> None:
        """Cancel a statement that has not finished: its query is interrupted in DuckDB."""
        st = self.get(statement_id, principal)
        with self._lock:
            if st.state not in ("PENDING", "RUNNING"):
                return
            st.state, st.ended = "CANCELED", time.monotonic()
            if st.cursor is not None:
                _interrupt(st.cursor)

    def close(self, statement_id: str, principal: Principal) -> None:
        """``DELETE`` a statement: cancel it if it runs, free its result if it has one."""
        st = self.get(statement_id, principal)
        self.cancel(statement_id, principal)
        with self._lock:
            result, st.result = st.result, None
            if st.state == "SUCCEEDED":
                st.state = "CLOSED"
        if result is not None:
            result.remove()

    # -- results -----------------------------------------------------------------------------
    def response(self, st: Statement, base_url: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"statement_id": st.statement_id, "status": {"state": st.state}}
        if st.state == "FAILED" and st.error:
            code, message, sql_state = st.error
            out["status"]["error"] = {"error_code": code, "message": message}
            if sql_state:
                out["status"]["sql_state"] = sql_state
        result = st.result
        if st.state == "SUCCEEDED" and result is not None:
            chunks = result.chunks
            sizes = result.chunk_bytes
            out["manifest"] = {
                "format": st.fmt,
                "schema": {"column_count": len(result.schema), "columns": [
                    {"name": f.name, "position": i, **column_type(f.type)}
                    for i, f in enumerate(result.schema)]},
                "total_chunk_count": len(chunks),
                "chunks": [{"chunk_index": i, "row_offset": o, "row_count": c,
                            **({"byte_count": sizes[i]} if sizes else {})}
                           for i, (o, c) in enumerate(chunks)],
                "total_row_count": result.num_rows,
                "truncated": result.truncated,
            }
            if sizes:  # "not available when using INLINE disposition"
                out["manifest"]["total_byte_count"] = sum(sizes)
            out["result"] = self.chunk(st, 0, base_url)
        return out

    def payload(self, st: Statement, result: Result, index: int) -> bytes:
        """A chunk as JSON_ARRAY, Arrow IPC stream or CSV bytes."""
        return _encode(st.fmt, result.part(index), header=index == 0)

    @staticmethod
    def _signature(st: Statement, index: int, expires: int) -> str:
        message = f"{st.statement_id}/{index}/{expires}".encode()
        return hmac.new(st.link_secret.encode(), message, hashlib.sha256).hexdigest()

    def _link(self, st: Statement, result: Result, index: int, base_url: str) -> tuple[str, str]:
        """A link to one chunk and its expiration, signed so that neither can be changed.

        A link never outlives the result: it expires with it if that comes first.
        """
        left = self.limits.result_ttl - (time.monotonic() - result.ready)
        expires = int(time.time() + max(0.0, min(self.limits.link_ttl, left)))
        secret = f"{expires}.{self._signature(st, index, expires)}"
        url = (f"{base_url.rstrip('/')}/api/2.0/sql/results/{st.statement_id}/{index}/"
               f"{secret}")
        when = dt.datetime.fromtimestamp(expires, dt.UTC)
        return url, when.isoformat(timespec="seconds").replace("+00:00", "Z")

    def link_payload(self, statement_id: str, index: int, secret: str) -> tuple[bytes, str]:
        """The bytes behind an external link: the link's secret is its only credential."""
        with self._lock:
            st = self._statements.get(statement_id)
        stamp, _, signature = secret.partition(".")
        # an expiry this server wrote: ASCII digits, seconds since 1970 (int() of 5000 digits
        # would raise, and str.isdigit() takes other scripts' digits too)
        if st is None or not re.fullmatch(r"[0-9]{1,12}", stamp) or not secrets.compare_digest(
                signature.encode(), self._signature(st, index, int(stamp)).encode()):
            raise not_found("no such result link")
        if time.time() > int(stamp):
            # Databricks: the expiration is "the time at which the URL is no longer valid";
            # the storage behind a link refuses it (403) and a new link must be requested
            when = dt.datetime.fromtimestamp(int(stamp), dt.UTC).isoformat()
            raise ApiError(403, "PERMISSION_DENIED",
                           f"this link expired at {when}: request a new one with GET "
                           f"/api/2.0/sql/statements/{statement_id}/result/chunks/{index}")
        result = st.result
        if st.state != "SUCCEEDED" or result is None or not 0 <= index < len(result.chunks):
            raise not_found("no such result link (the result was closed or expired)")
        kind = {"ARROW_STREAM": "application/vnd.apache.arrow.stream", "CSV": "text/csv",
                "JSON_ARRAY": "application/json"}[st.fmt]
        return self.payload(st, result, index), kind

    def chunk(self, st: Statement, index: int, base_url: str = "") -> dict[str, Any]:
        result = st.result
        if st.state != "SUCCEEDED" or result is None:
            raise ApiError(400, "BAD_REQUEST", f"statement {st.statement_id} is {st.state}"
                           + (": its result is no longer available" if st.state == "CLOSED"
                              else ""))
        chunks = result.chunks
        if not 0 <= index < len(chunks):
            raise not_found(f"chunk {index} does not exist (0..{len(chunks) - 1})")
        offset, count = chunks[index]
        data: dict[str, Any] = {"chunk_index": index, "row_offset": offset, "row_count": count}
        if st.disposition == "INLINE":  # JSON_ARRAY: INLINE takes no other format
            data["data_array"] = _rows(result.part(index))
        else:
            url, expiration = self._link(st, result, index, base_url)
            link = {**data, "external_link": url, "expiration": expiration}
            if result.chunk_bytes:
                link["byte_count"] = result.chunk_bytes[index]
            if index + 1 < len(chunks):
                link["next_chunk_index"] = index + 1
                link["next_chunk_internal_link"] = (
                    f"/api/2.0/sql/statements/{st.statement_id}/result/chunks/{index + 1}")
            data["external_links"] = [link]
        if index + 1 < len(chunks):
            data["next_chunk_index"] = index + 1
            data["next_chunk_internal_link"] = (
                f"/api/2.0/sql/statements/{st.statement_id}/result/chunks/{index + 1}")
        return data
