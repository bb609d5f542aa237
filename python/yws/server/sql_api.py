"""The SQL Statement Execution API 2.0 on the local warehouse, with grants enforced.

A principal may read only objects granted (SELECT) to it or one of its groups in ``sql/``;
only queries run here (DDL and DML go through ``yws sql apply``). Results are cut into chunks
of :data:`ROWS_PER_CHUNK` rows: JSON_ARRAY inline as ``data_array`` (every value a string, as
Databricks sends it), ARROW_STREAM and CSV inline as a base64 ``attachment``.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from yws.config import Settings
from yws.server.errors import ApiError, denied, invalid, not_found
from yws.server.store import Principal
from yws.warehouse import QueryError, WarehouseError, check_query
from yws.warehouse.local import LocalWarehouse

ROWS_PER_CHUNK = 20_000
LOCAL_WAREHOUSE_ID = "yws_local"
FORMATS = ("JSON_ARRAY", "ARROW_STREAM", "CSV")
_WAIT = re.compile(r"^(\d+)s$")
TYPE_NAMES = {"string": "STRING", "large_string": "STRING", "date32[day]": "DATE",
              "double": "DOUBLE", "float": "FLOAT", "int32": "INT", "int64": "LONG",
              "int16": "SHORT", "int8": "BYTE", "bool": "BOOLEAN"}


def type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_decimal(t):
        return "DECIMAL"
    return TYPE_NAMES.get(str(t), "STRING")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def referenced_objects(tree: Any, catalog: str | None, schema: str | None) -> set[str]:
    """Three-level names of the tables and views a query reads (CTE names excluded)."""
    from sqlglot import exp

    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise denied("table functions cannot be used through this endpoint")
        if not table.db and table.name in ctes:
            continue
        parts = [table.catalog or catalog, table.db or schema, table.name]
        if not all(parts):
            raise invalid(f"{table.sql('databricks')}: name the catalog and schema, or pass "
                          "them with the statement")
        out.add(".".join(str(p) for p in parts))
    return out


@dataclass
class Statement:
    statement_id: str
    principal: str
    fmt: str
    disposition: str = "INLINE"
    link_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    state: str = "PENDING"
    table: pa.Table | None = None
    error: tuple[str, str] | None = None
    done: threading.Event = field(default_factory=threading.Event)


class StatementService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warehouse = LocalWarehouse(settings)
        self._statements: dict[str, Statement] = {}
        self._lock = threading.Lock()

    def warehouses(self) -> dict[str, Any]:
        return {"warehouses": [{
            "id": LOCAL_WAREHOUSE_ID, "name": "yws local (DuckDB over the Delta tables)",
            "state": "RUNNING", "warehouse_type": "PRO", "enable_serverless_compute": True,
            "cluster_size": "2X-Small", "num_clusters": 1,
        }]}

    def _allowed(self, principal: Principal, objects: set[str]) -> None:
        grants = self.warehouse.grants()
        readable = {g.securable for g in grants
                    if g.principal in principal.identities
                    and g.privilege in ("SELECT", "ALL PRIVILEGES")}
        missing = sorted(objects - readable)
        if missing:
            raise denied(f"User {principal.name} does not have SELECT on "
                         f"{', '.join(missing)}; grants in sql/90_grants.sql decide who reads what")

    def submit(self, body: dict[str, Any], principal: Principal,
               base_url: str = "") -> dict[str, Any]:
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
        if disposition not in ("INLINE", "EXTERNAL_LINKS"):
            raise invalid("disposition must be INLINE or EXTERNAL_LINKS")
        wait = body.get("wait_timeout", "10s")
        m = _WAIT.match(str(wait))
        if not m or not (int(m.group(1)) == 0 or 5 <= int(m.group(1)) <= 50):
            raise invalid(f"wait_timeout {wait!r} must be 0s or between 5s and 50s")
        on_timeout = body.get("on_wait_timeout", "CONTINUE")
        if on_timeout not in ("CONTINUE", "CANCEL"):
            raise invalid("on_wait_timeout must be CONTINUE or CANCEL")
        params = {}
        for p in body.get("parameters") or []:
            if not isinstance(p, dict) or not p.get("name"):
                raise invalid("each parameter needs a name")
            params[p["name"]] = p.get("value")
        try:
            tree = check_query(sql, params)
        except QueryError as e:
            if "only queries" in str(e):
                raise denied(f"{e} (statements through this endpoint are read-only)") from None
            raise invalid(str(e)) from None
        self._allowed(principal, referenced_objects(tree, body.get("catalog"),
                                                    body.get("schema")))
        row_limit = body.get("row_limit")
        st = Statement(statement_id=str(uuid.uuid4()), principal=principal.name, fmt=fmt,
                       disposition=disposition)
        with self._lock:
            self._statements[st.statement_id] = st
        threading.Thread(target=self._run, args=(st, sql, params, row_limit),
                         daemon=True).start()
        seconds = int(m.group(1))
        if seconds and not st.done.wait(seconds) and on_timeout == "CANCEL":
            self.cancel(st.statement_id, principal)
        return self.response(st, base_url)

    def _run(self, st: Statement, sql: str, params: dict[str, Any],
             row_limit: int | None) -> None:
        st.state = "RUNNING"
        try:
            table = self.warehouse.query(sql, params)
            if row_limit:
                table = table.slice(0, int(row_limit))
            if st.state != "CANCELED":
                st.table, st.state = table, "SUCCEEDED"
        except (QueryError, WarehouseError) as e:
            st.error, st.state = ("BAD_REQUEST", str(e)), "FAILED"
        except Exception as e:  # report, never leave the statement RUNNING
            st.error, st.state = ("INTERNAL_ERROR", f"{type(e).__name__}: {e}"), "FAILED"
        finally:
            st.done.set()

    def get(self, statement_id: str, principal: Principal) -> Statement:
        with self._lock:
            st = self._statements.get(statement_id)
        if st is None or st.principal != principal.name:
            raise not_found(f"statement {statement_id} does not exist")
        return st

    def cancel(self, statement_id: str, principal: Principal) -> None:
        st = self.get(statement_id, principal)
        if st.state in ("PENDING", "RUNNING"):
            st.state = "CANCELED"

    # -- results -----------------------------------------------------------------------------
    def _chunks(self, table: pa.Table) -> list[tuple[int, int]]:
        n = table.num_rows
        return [(i, min(ROWS_PER_CHUNK, n - i)) for i in range(0, n, ROWS_PER_CHUNK)] or [(0, 0)]

    def response(self, st: Statement, base_url: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"statement_id": st.statement_id, "status": {"state": st.state}}
        if st.state == "FAILED" and st.error:
            out["status"]["error"] = {"error_code": st.error[0], "message": st.error[1]}
        if st.state == "SUCCEEDED" and st.table is not None:
            chunks = self._chunks(st.table)
            out["manifest"] = {
                "format": st.fmt,
                "schema": {"column_count": st.table.num_columns, "columns": [
                    {"name": f.name, "position": i, "type_name": type_name(f.type),
                     "type_text": type_name(f.type)} for i, f in enumerate(st.table.schema)]},
                "total_chunk_count": len(chunks),
                "chunks": [{"chunk_index": i, "row_offset": o, "row_count": c}
                           for i, (o, c) in enumerate(chunks)],
                "total_row_count": st.table.num_rows,
                "truncated": False,
            }
            out["result"] = self.chunk(st, 0, base_url)
        return out

    @staticmethod
    def _rows(part: pa.Table) -> list[list[str | None]]:
        columns = [[_text(v) for v in col.to_pylist()] for col in part.columns]
        return [list(row) for row in zip(*columns, strict=True)] if columns else []

    def payload(self, st: Statement, index: int) -> bytes:
        """A chunk as Arrow IPC stream or CSV bytes."""
        offset, count = self._chunks(st.table)[index]  # type: ignore[arg-type]
        part = st.table.slice(offset, count)  # type: ignore[union-attr]
        sink = io.BytesIO()
        if st.fmt == "JSON_ARRAY":
            return json.dumps(self._rows(part)).encode()
        if st.fmt == "ARROW_STREAM":
            with pa.ipc.new_stream(sink, part.schema) as writer:
                writer.write_table(part)
        else:
            import pyarrow.csv as csv

            csv.write_csv(part, sink, csv.WriteOptions(include_header=index == 0))
        return sink.getvalue()

    def link_payload(self, statement_id: str, index: int, secret: str) -> tuple[bytes, str]:
        """The bytes behind an external link: the link's secret is its only credential."""
        with self._lock:
            st = self._statements.get(statement_id)
        if st is None or not secrets.compare_digest(secret, st.link_secret) or \
                st.state != "SUCCEEDED" or not 0 <= index < len(self._chunks(st.table)):  # type: ignore[arg-type]
            raise not_found("no such result link")
        kind = {"ARROW_STREAM": "application/vnd.apache.arrow.stream", "CSV": "text/csv",
                "JSON_ARRAY": "application/json"}[st.fmt]
        return self.payload(st, index), kind

    def chunk(self, st: Statement, index: int, base_url: str = "") -> dict[str, Any]:
        if st.state != "SUCCEEDED" or st.table is None:
            raise ApiError(400, "BAD_REQUEST", f"statement {st.statement_id} is {st.state}")
        chunks = self._chunks(st.table)
        if not 0 <= index < len(chunks):
            raise not_found(f"chunk {index} does not exist (0..{len(chunks) - 1})")
        offset, count = chunks[index]
        data: dict[str, Any] = {"chunk_index": index, "row_offset": offset, "row_count": count}
        if st.fmt == "JSON_ARRAY" and st.disposition == "INLINE":
            data["data_array"] = self._rows(st.table.slice(offset, count))
        elif st.disposition == "EXTERNAL_LINKS":
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15)
            link = {**data, "external_link": f"{base_url.rstrip('/')}/api/2.0/sql/results/"
                                             f"{st.statement_id}/{index}/{st.link_secret}",
                    "expiration": expires.isoformat(timespec="seconds").replace("+00:00", "Z")}
            if index + 1 < len(chunks):
                link["next_chunk_index"] = index + 1
            data["external_links"] = [link]
        else:
            data["attachment"] = base64.b64encode(self.payload(st, index)).decode()
        if index + 1 < len(chunks):
            data["next_chunk_index"] = index + 1
            data["next_chunk_internal_link"] = (
                f"/api/2.0/sql/statements/{st.statement_id}/result/chunks/{index + 1}")
        return data
