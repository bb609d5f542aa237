"""SQL sessions of ``yws serve``, for ``databricks-sql-connector``'s Statement Execution backend.

``databricks.sql.connect(..., use_sea=True)`` opens a session with ``POST
/api/2.0/sql/sessions`` (``{warehouse_id, session_confs, catalog, schema}`` → ``{session_id}``),
runs every statement through ``POST /api/2.0/sql/statements`` with that ``session_id``, and
closes it with ``DELETE /api/2.0/sql/sessions/{session_id}`` (body ``{warehouse_id,
session_id}``). The REST reference does not list these two endpoints; their contract is the
connector's SEA backend (``databricks/sql/backend/sea/backend.py``, ``models/requests.py``):
https://github.com/databricks/databricks-sql-python/tree/main/src/databricks/sql/backend/sea

A session here is a small record: its owner, warehouse, default catalog and schema and
configuration. Only the principal that opened it may use or close it (anyone else gets the 404
of a session that does not exist); it ends when closed or after :attr:`SessionStore.idle_ttl`
seconds unused; a principal holds at most :attr:`SessionStore.per_principal` open sessions.
:func:`statement_request` turns an ``executeStatement`` request that names a session into the
plain request the statement service runs.

The connector's default transport is Thrift (HiveServer2 over HTTP), POSTed to the
``http_path``. This server does not speak it: :func:`add_routes` answers those POSTs with an
error the connector does not retry, whose message says to pass ``use_sea=True``. And a client
given a host without ``http://`` speaks TLS to this plain-HTTP port, retrying for minutes with
an SSL error that never says why: :class:`PlainHttpProtocol` (uvicorn's ``http=``) refuses the
handshake with a TLS alert and says in the server log how to connect.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from uvicorn.protocols.http.h11_impl import H11Protocol

from yws.server.context import Api
from yws.server.errors import ApiError, invalid, not_found
from yws.server.limits import MAX_NAME
from yws.server.store import Principal

log = logging.getLogger("yws.server")
SESSIONS_PATH = "/api/2.0/sql/sessions"
IDLE_TTL = 3600.0  # seconds a session may stay unused before it ends
MAX_SESSIONS_PER_PRINCIPAL = 200
MAX_SESSIONS = 10_000
MAX_CONF_VALUE = 1000
STATEMENT_TIMEOUT_MAX = 172_800  # "between 0 and 172800 seconds (2 days)" (STATEMENT_TIMEOUT)

# The configuration parameters a session may set: those the connector's SEA backend lets
# through (``ALLOWED_SESSION_CONF_TO_DEFAULT_VALUES_MAP``; Databricks SQL "Configuration
# parameters", https://docs.databricks.com/aws/en/sql/language-manual/sql-ref-parameters).
# Those that only tune performance or label queries are accepted and have no effect here; those
# that change results are accepted only at the value this server runs with, refused otherwise.
NO_EFFECT = ("enable_photon", "use_cached_result", "max_file_partition_bytes",
             "read_only_external_metastore", "query_tags")
ONLY = {"ansi_mode": ("true",), "timezone": ("utc", "etc/utc", "z", "+00:00", "gmt"),
        "legacy_time_parser_policy": ("exception",)}
SESSION_CONFS = (*NO_EFFECT, *ONLY, "statement_timeout")

# The paths the connector's Thrift transport POSTs to: a SQL warehouse
# (``/sql/1.0/warehouses/<id>``, formerly ``/sql/1.0/endpoints/<id>``) or a cluster
# (``/sql/protocolv1/o/<org>/<cluster>``).
THRIFT_PATHS = ("/sql/1.0/warehouses/{warehouse_id}", "/sql/1.0/endpoints/{warehouse_id}",
                "/sql/protocolv1/o/{org}/{cluster}")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Session:
    session_id: str
    principal: str
    warehouse_id: str
    catalog: str | None
    schema: str | None
    confs: dict[str, str]
    last_used: float = field(default_factory=time.monotonic)


def _name(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise invalid(f"{key} must be a string of at most {MAX_NAME} characters")
    return value


def session_confs(value: Any, statement_timeout: float) -> dict[str, str]:
    """``session_confs`` checked: known names, bounded string values, values this server honours.

    ``statement_timeout`` is the server's own bound on every statement (seconds): a session may
    ask for no timeout (0) or one at least that long — a statement is then stopped no later than
    it asked — but not a shorter one, which this server would not honour.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("session_confs must be an object of configuration parameter to value")
    out: dict[str, str] = {}
    for raw_key, raw in value.items():
        key = raw_key.lower()
        if key not in SESSION_CONFS:
            raise invalid(f"session_confs: {raw_key[:100]!r} is not a configuration parameter "
                          f"a session may set; these are: {', '.join(SESSION_CONFS)}")
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        if not isinstance(raw, str | int | float) or len(str(raw)) > MAX_CONF_VALUE:
            raise invalid(f"session_confs.{key} must be a string of at most "
                          f"{MAX_CONF_VALUE} characters")
        text = str(raw).strip()
        if key in ONLY and text.lower() not in ONLY[key]:
            raise invalid(f"session_confs.{key}={text[:100]!r} is not supported: this server "
                          f"runs every statement with {key.upper()}={ONLY[key][0].upper()}")
        if key == "statement_timeout":
            if not re.fullmatch(r"\d{1,6}", text) or int(text) > STATEMENT_TIMEOUT_MAX:
                raise invalid("session_confs.statement_timeout must be a number of seconds "
                              f"between 0 and {STATEMENT_TIMEOUT_MAX}")
            if 0 < int(text) < statement_timeout:
                raise invalid(f"session_confs.statement_timeout={text} is not supported: this "
                              f"server stops every statement after {statement_timeout:g} "
                              "seconds (YWS_SQL_STATEMENT_TIMEOUT) and cannot apply a shorter "
                              "timeout per session")
        out[key] = text
    return out


class SessionStore:
    """Open sessions, in memory (a restarted server has none: clients reconnect)."""

    def __init__(self, warehouse_ids: Any, objects: Any, statement_timeout: Any,
                 idle_ttl: float = IDLE_TTL, per_principal: int = MAX_SESSIONS_PER_PRINCIPAL,
                 total: int = MAX_SESSIONS) -> None:
        self._warehouse_ids = warehouse_ids  # () -> set of warehouse ids
        self._objects = objects  # () -> lower-case three-level names in the catalog
        self._statement_timeout = statement_timeout  # () -> seconds
        self.idle_ttl, self.per_principal, self.total = idle_ttl, per_principal, total
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items()
                    if now - s.last_used > self.idle_ttl]:
            del self._sessions[sid]

    def _check_warehouse(self, warehouse_id: Any) -> str:
        if not isinstance(warehouse_id, str) or not warehouse_id:
            raise invalid("warehouse_id is required")
        known = self._warehouse_ids()
        if warehouse_id not in known:
            raise not_found(f"warehouse {warehouse_id[:100]!r} does not exist; this server has "
                            f"{', '.join(sorted(known))}")
        return warehouse_id

    def _check_namespace(self, catalog: str | None, schema: str | None) -> None:
        """The session's default catalog and schema must exist, as USE CATALOG / USE SCHEMA."""
        if catalog is None and schema is None:
            return
        names = [n.split(".") for n in self._objects()]
        if catalog is not None and not any(n[0] == catalog.lower() for n in names):
            raise not_found(f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' was not found. "
                            "SQLSTATE: 42704")
        # Unity Catalog creates a schema ``default`` in every new catalog (and the statement
        # service takes ``default`` when a request names no schema)
        if schema is not None and schema.lower() != "default" and not any(
                n[1] == schema.lower() and (catalog is None or n[0] == catalog.lower())
                for n in names):
            where = f"{catalog}.{schema}" if catalog else schema
            raise not_found(f"[SCHEMA_NOT_FOUND] The schema `{where}` cannot be found. "
                            "SQLSTATE: 42704")

    def create(self, payload: dict[str, Any], principal: Principal) -> Session:
        warehouse_id = self._check_warehouse(payload.get("warehouse_id"))
        catalog, schema = _name(payload, "catalog"), _name(payload, "schema")
        confs = session_confs(payload.get("session_confs"), self._statement_timeout())
        self._check_namespace(catalog, schema)
        session = Session(session_id=str(uuid.uuid4()), principal=principal.name,
                          warehouse_id=warehouse_id, catalog=catalog, schema=schema, confs=confs)
        with self._lock:
            self._expire(time.monotonic())
            mine = sum(1 for s in self._sessions.values() if s.principal == principal.name)
            if mine >= self.per_principal or len(self._sessions) >= self.total:
                limit = self.per_principal if mine >= self.per_principal else self.total
                # 400, not 429: the connector would retry a 429 for up to 15 minutes
                raise ApiError(400, "RESOURCE_EXHAUSTED",
                               f"{limit} sessions are open, the limit: close connections you "
                               f"no longer use; an unused session ends after "
                               f"{self.idle_ttl:g} seconds")
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: Any, principal: Principal) -> Session:
        """The caller's open session, its idle clock reset; else the 404 of a missing one."""
        if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
            raise invalid("session_id must be the session_id that POST /api/2.0/sql/sessions "
                          "returned")
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None or session.principal != principal.name:
                raise not_found(f"session {session_id} does not exist: it was closed, or ended "
                                f"after {self.idle_ttl:g} seconds unused; open a new one")
            session.last_used = now
            return session

    def close(self, session_id: str, principal: Principal,
              warehouse_id: Any = None) -> None:
        session = self.get(session_id, principal)
        if warehouse_id is not None and warehouse_id != session.warehouse_id:
            raise invalid(f"session {session_id} belongs to warehouse {session.warehouse_id}, "
                          f"not {str(warehouse_id)[:100]!r}")
        with self._lock:
            self._sessions.pop(session_id, None)

    def open_count(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self._sessions)

    def statement_request(self, payload: dict[str, Any],
                          principal: Principal) -> dict[str, Any]:
        """An executeStatement request as the statement service runs it.

        A request without ``session_id`` is returned as it came. With one, the session must be
        the caller's and open, and on the request's warehouse; its catalog and schema become the
        request's defaults (a catalog or schema in the request itself wins) and ``session_id``
        goes. Only the SQL connector sends sessions, and three of the values it sends are
        rewritten to ones that give it the whole result:

        - ``result_compression`` (``LZ4_FRAME``) is dropped: the connector decompresses only
          when the result's ``manifest.result_compression`` says so (``sea/backend.py``,
          ``_results_message_to_execute_response``), which this server never sets, so results
          come uncompressed;
        - disposition ``INLINE_OR_EXTERNAL_LINKS`` (``use_hybrid_disposition=True``) lets the
          warehouse choose; this server chooses ``EXTERNAL_LINKS``;
        - ``INLINE`` + ``JSON_ARRAY`` (``use_cloud_fetch=False``) becomes ``EXTERNAL_LINKS`` +
          ``ARROW_STREAM``: the connector reads only the first chunk of an inline result
          (``sea/queue.py``, ``JsonQueue`` holds ``result.data_array`` and never asks for
          ``next_chunk_index``), and this server cuts results into chunks of 20,000 rows, so
          the rest would be lost without a word. It picks its reader from
          ``manifest.format`` (``SeaResultSetQueueFactory``), so it reads the links in full.
        """
        if payload.get("session_id") is None:
            return {k: v for k, v in payload.items() if k != "session_id"}
        out = dict(payload)
        session = self.get(out.pop("session_id"), principal)
        warehouse_id = out.get("warehouse_id")
        if warehouse_id is None:
            out["warehouse_id"] = session.warehouse_id
        elif warehouse_id != session.warehouse_id:
            raise invalid(f"session {session.session_id} belongs to warehouse "
                          f"{session.warehouse_id}, not {str(warehouse_id)[:100]!r}")
        for key in ("catalog", "schema"):
            default = getattr(session, key)
            if out.get(key) in (None, "") and default is not None:
                out[key] = default
        out.pop("result_compression", None)
        disposition, fmt = out.get("disposition", "INLINE"), out.get("format", "JSON_ARRAY")
        if disposition == "INLINE_OR_EXTERNAL_LINKS" or (
                disposition == "INLINE" and fmt == "JSON_ARRAY"):
            out["disposition"], out["format"] = "EXTERNAL_LINKS", "ARROW_STREAM"
        return out


def statement_request(request: Request, payload: dict[str, Any],
                      principal: Principal) -> dict[str, Any]:
    """The execute route's hook: ``payload`` with its session resolved (see
    :meth:`SessionStore.statement_request`)."""
    store: SessionStore | None = getattr(request.app.state, "sessions", None)
    if store is None:
        return payload
    return store.statement_request(payload, principal)


def connect_arguments(request: Request, warehouse: str) -> str:
    """The ``databricks.sql.connect`` arguments that reach this server as ``request`` did.

    ``server_hostname`` without a scheme means https, and the port goes apart in ``_port``
    (the connector's default is 443, and it appends it to ``server_hostname``). On any other
    port than the scheme's own, ``enable_telemetry=False``: otherwise ``connect`` first asks
    ``server_hostname`` without the port for its feature flags and waits for that to fail.
    """
    host = (request.url.hostname or "HOST")[:MAX_NAME]
    scheme = request.url.scheme
    port = request.url.port or (443 if scheme == "https" else 80)
    parts = [f"server_hostname='{host}'" if scheme == "https" else
             f"server_hostname='http://{host}'"]
    if port != 443:
        parts.append(f"_port={port}")
    parts += [f"http_path='/sql/1.0/warehouses/{warehouse}'", "access_token=TOKEN",
              "use_sea=True"]
    if port != (443 if scheme == "https" else 80):
        parts.append("enable_telemetry=False")
    return ", ".join(parts)


def thrift_refusal(request: Request, warehouse_ids: set[str]) -> Response:
    """The answer to a Thrift (HiveServer2) request: an error the SQL connector neither retries
    nor hides.

    The connector's retry policy (``databricks/sql/auth/retry.py``,
    ``DatabricksRetryPolicy.should_retry``) never retries a 501 ("this request can never
    succeed"); its Thrift client then fails to read a Thrift reply from the body and raises
    ``RequestError`` with the message of the ``x-thriftserver-error-message`` header
    (``backend/thrift_backend.py``, ``_extract_error_message_from_headers``). ODBC and JDBC
    drivers report that header too.
    """
    warehouse = sorted(warehouse_ids)[0] if warehouse_ids else "WAREHOUSE_ID"
    message = (
        "yws serve does not speak Thrift (HiveServer2), the default transport of "
        "databricks-sql-connector and of the ODBC and JDBC drivers: connect with "
        "use_sea=True (the SQL Statement Execution API), e.g. "
        f"databricks.sql.connect({connect_arguments(request, warehouse)})")
    return Response(content=message.encode(), status_code=501, media_type="text/plain",
                    headers={"x-thriftserver-error-message": message,
                             "x-databricks-reason-phrase": "use_sea=True"})


def add_routes(app: FastAPI, api: Api) -> None:
    statements, who, body = api.statements, api.who, api.body

    def warehouse_ids() -> set[str]:
        return {str(w["id"]) for w in statements.warehouses()["warehouses"]}

    store = SessionStore(warehouse_ids, statements.warehouse.objects,
                         lambda: statements.limits.statement_timeout)
    app.state.sessions = store

    @app.post(SESSIONS_PATH)
    async def create_session(request: Request) -> dict[str, Any]:
        principal = who(request)
        payload = await body(request)
        session = await run_in_threadpool(store.create, payload, principal)  # reads the catalog
        return {"session_id": session.session_id}

    @app.delete(SESSIONS_PATH + "/{session_id}")
    async def delete_session(request: Request, session_id: str) -> dict[str, Any]:
        principal = who(request)
        payload = await body(request)  # {warehouse_id, session_id}, as the connector sends
        if payload.get("session_id") not in (None, session_id):
            raise invalid("session_id in the body differs from the one in the path")
        store.close(session_id, principal, payload.get("warehouse_id"))
        return {}

    for path in THRIFT_PATHS:
        @app.post(path, include_in_schema=False)
        def thrift(request: Request) -> Response:
            return thrift_refusal(request, warehouse_ids())


# A TLS record starts with its content type (22: handshake) and the major version 3; an HTTP
# request starts with a method name in ASCII.
_TLS_HANDSHAKE = (b"\x16\x03",)
# A fatal TLS alert, protocol_version (70): "the protocol version the peer has attempted to
# negotiate is recognized but not supported" (RFC 8446, section 6.2).
_TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x46"


class RefusesTls:
    """Mixed into a uvicorn HTTP protocol: it also recognises a TLS handshake sent to this
    plain-HTTP port.

    uvicorn would answer it "400 Invalid HTTP request received", which a TLS client reads as
    ``WRONG_VERSION_NUMBER``. Instead the handshake gets a fatal TLS alert and the connection
    closes, and the server log says — at most every :attr:`every` seconds — which client did it
    and the ``http://`` address and connector arguments to use. No answer can stop the client
    retrying: it takes any TLS failure for a connection error.
    """

    every = 10.0
    _last_warning = 0.0

    transport: Any
    server: Any
    client: Any

    def connection_made(self, transport: Any) -> None:
        self._first_data = True
        super().connection_made(transport)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        first, self._first_data = self._first_data, False
        if first and data.startswith(_TLS_HANDSHAKE):
            self._refuse_tls()
            return
        super().data_received(data)  # type: ignore[misc]

    def _refuse_tls(self) -> None:
        self.transport.write(_TLS_ALERT)
        self.transport.close()
        now = time.monotonic()
        if now - RefusesTls._last_warning < self.every:
            return
        RefusesTls._last_warning = now
        host, port = self.server or ("HOST", None)
        client = self.client[0] if self.client else "a client"
        address = f"http://{host}" + (f":{port}" if port else "")
        log.warning("%s sent a TLS handshake (https) to yws serve, which speaks plain HTTP: use "
                    "%s; databricks-sql-connector: server_hostname='http://%s', _port=%s, "
                    "use_sea=True, enable_telemetry=False", client, address, host, port or 80)


class PlainHttpProtocol(RefusesTls, H11Protocol):
    """uvicorn's h11 protocol (pure Python), refusing TLS (:class:`RefusesTls`)."""
