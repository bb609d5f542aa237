"""The DBSQL warehouse through the SQL Statement Execution API (``databricks-sdk``).

Credentials come the standard way (``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN`` or a config
profile); the warehouse id from ``YWS_WAREHOUSE_ID``. Statements are idempotent
(``IF NOT EXISTS``, ``OR REPLACE``, ``GRANT``), so a re-run finishes what a failed run began.

The API's ``catalog`` and ``schema`` fields act like ``USE CATALOG`` / ``USE SCHEMA`` before the
statement, so a schema that does not exist yet cannot be the context of the statement that
creates it: ``apply`` sends each statement with the namespace its object lives in (the catalog
alone for ``CREATE SCHEMA``), and every name in ``sql/`` is fully qualified anyway.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from yws.config import check_identifier
from yws.contract.sqlfiles import Grant, Statement, describe
from yws.warehouse.base import ApplyStep, QueryError, Warehouse, WarehouseError, check_query

POLL_SECONDS = 1.0
TIMEOUT_SECONDS = 600.0

_ARROW = {
    "STRING": pa.string(), "CHAR": pa.string(), "DATE": pa.date32(), "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(), "INT": pa.int32(), "LONG": pa.int64(), "SHORT": pa.int16(),
    "BYTE": pa.int8(), "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "BINARY": pa.binary(),
}


def _arrow_type(column: Any) -> pa.DataType:
    """A result column's Arrow type; DECIMAL keeps its precision and scale, complex types
    (ARRAY, MAP, STRUCT) stay JSON text."""
    name = str(getattr(column.type_name, "value", column.type_name))
    if name == "DECIMAL":
        return pa.decimal128(column.type_precision or 38, column.type_scale or 0)
    return _ARROW.get(name, pa.string())


def parameter_type(value: Any) -> str | None:
    """The Statement Execution API ``type`` of a Python parameter value (None: STRING)."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, decimal.Decimal):
        digits = value.as_tuple()
        scale = max(0, -int(digits.exponent)) if isinstance(digits.exponent, int) else 0
        return f"DECIMAL({max(len(digits.digits), scale, 1)},{scale})"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return None


def _parameter_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _value(text: str | None, kind: pa.DataType) -> Any:
    """JSON_ARRAY results carry every value as a string (or null)."""
    if text is None:
        return None
    if pa.types.is_boolean(kind):
        return text.lower() == "true"
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(text)
    if pa.types.is_timestamp(kind):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if pa.types.is_decimal(kind):
        return decimal.Decimal(text)
    if pa.types.is_binary(kind):
        return bytes.fromhex(text)
    return text


def failure(response: Any) -> str:
    """Why a statement did not succeed, in one line a user can act on.

    A statement that cannot run comes back in state FAILED (HTTP 200) with ``status.error``
    (``error_code``, ``message`` in Databricks' ``[ERROR_CLASS] ... SQLSTATE: xxxxx`` form) and
    ``status.sql_state``; CANCELED and CLOSED carry no error.
    """
    status = response.status
    state = str(getattr(status.state, "value", status.state))
    error = status.error
    message = (error.message if error and error.message else "").strip()
    if not message:
        return f"statement {response.statement_id} ended {state} without a result"
    sql_state = getattr(status, "sql_state", None)
    if sql_state and f"SQLSTATE: {sql_state}" not in message:
        message += f" (SQLSTATE {sql_state})"
    return message if state == "FAILED" else f"statement {state}: {message}"


class DatabricksWarehouse(Warehouse):
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from databricks.sdk import WorkspaceClient

            self._client = WorkspaceClient()
        return self._client

    @property
    def warehouse_id(self) -> str:
        if not self.settings.warehouse_id:
            raise WarehouseError("no SQL warehouse id: set YWS_WAREHOUSE_ID (the id in the "
                                 "warehouse's connection details)")
        return self.settings.warehouse_id

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *,
                context: tuple[str | None, str | None] | None = None) -> Any:
        """Run one statement to completion; returns the final StatementResponse.

        ``context`` is the (catalog, schema) the statement runs in; ``None`` for either leaves
        it out of the request. Queries run in the configured catalog and schema.
        """
        from databricks.sdk.service.sql import (
            Disposition,
            ExecuteStatementRequestOnWaitTimeout,
            Format,
            StatementParameterListItem,
            StatementState,
        )

        catalog, schema = context or (self.settings.catalog, self.settings.schema)
        api = self.client.statement_execution
        response = api.execute_statement(
            statement=sql,
            warehouse_id=self.warehouse_id,
            catalog=catalog,
            schema=schema,
            parameters=[StatementParameterListItem(name=k, value=_parameter_text(v),
                                                   type=parameter_type(v))
                        for k, v in (params or {}).items()],
            disposition=Disposition.INLINE,
            format=Format.JSON_ARRAY,
            wait_timeout="30s",
            on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
        )
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while response.status.state in (StatementState.PENDING, StatementState.RUNNING):
            if time.monotonic() > deadline:
                api.cancel_execution(response.statement_id)
                raise WarehouseError(f"statement {response.statement_id} did not finish in "
                                     f"{TIMEOUT_SECONDS:.0f} s and was cancelled")
            time.sleep(POLL_SECONDS)
            response = api.get_statement(response.statement_id)
        if response.status.state != StatementState.SUCCEEDED:
            raise WarehouseError(failure(response))
        return response

    def apply(self, statements: list[Statement]) -> list[ApplyStep]:
        # Every statement is understood before the first one is sent: an unknown privilege or
        # statement fails here, not halfway through the warehouse.
        targets = [(stmt, describe(stmt)) for stmt in statements]
        for stmt, _ in targets:
            stmt.parse()
        steps: list[ApplyStep] = []
        tables: list[tuple[Statement, str]] = []  # created (or found) since the last check
        for stmt, target in targets:
            if tables and target.kind != "TABLE":  # before the views that read them
                steps.extend(self._add_missing_columns(tables))
                tables = []
            try:
                self.execute(stmt.text, context=target.parent)
            except WarehouseError as e:
                raise WarehouseError(
                    f"{stmt.where}: {target.kind.lower()} {target.name}: {e}") from None
            steps.append(ApplyStep(stmt.where, target.kind, target.name, "sent"))
            if target.kind == "TABLE":
                tables.append((stmt, target.name))
        if tables:
            steps.extend(self._add_missing_columns(tables))
        return steps

    def _add_missing_columns(self, tables: list[tuple[Statement, str]]) -> list[ApplyStep]:
        """Give a table an older release created the nullable columns its DDL has gained.

        ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is, so the tables' columns
        are read from ``<catalog>.information_schema.columns`` (one query per schema) and each
        table lacking columns gets one ``ALTER TABLE … ADD COLUMNS`` with the DDL's types and
        comments (existing rows read NULL). A missing NOT NULL column is refused before any
        view is sent: old rows have no value for it (docs/migration.md, "Schema changes").
        """
        from yws.contract.sqlfiles import add_columns_sql, columns_of, not_null_of

        by_schema: dict[tuple[str, str], list[tuple[Statement, str]]] = {}
        for stmt, name in tables:
            catalog, schema, _ = name.split(".")
            by_schema.setdefault((catalog, schema), []).append((stmt, name))
        steps = []
        for (catalog, schema), items in by_schema.items():
            names = {name.split(".")[2]: (stmt, name) for stmt, name in items}
            marks = ", ".join(f":t{i}" for i in range(len(names)))
            found = self.query(
                "SELECT table_name, column_name FROM "
                f"{check_identifier(catalog, 'catalog')}.information_schema.columns "
                f"WHERE table_schema = :schema AND table_name IN ({marks})",
                {"schema": schema, **{f"t{i}": t for i, t in enumerate(names)}}).to_pylist()
            have: dict[str, set[str]] = {}
            for row in found:
                have.setdefault(row["table_name"], set()).add(row["column_name"])
            for table, (stmt, name) in names.items():
                if table not in have:  # not visible to this principal: nothing to compare
                    continue
                tree = stmt.parse()
                missing = [c for c in columns_of(tree) if c not in have[table]]
                if not missing:
                    continue
                required = sorted(set(missing) & not_null_of(tree))
                if required:
                    raise WarehouseError(
                        f"{stmt.where}: table {name} lacks NOT NULL column(s) "
                        f"{', '.join(required)}: an older release created it and its rows have "
                        "no value for them; migrate it as docs/migration.md (\"Schema "
                        "changes\") says, then apply again")
                try:
                    self.execute(add_columns_sql(name, tree, missing), context=(catalog, schema))
                except WarehouseError as e:
                    raise WarehouseError(f"{stmt.where}: table {name}: {e}") from None
                steps.append(ApplyStep(stmt.where, "TABLE", name,
                                       f"columns added: {', '.join(missing)}"))
        return steps

    def batches(self, sql: str, params: Mapping[str, Any] | None = None
                ) -> Iterator[pa.RecordBatch]:
        params = dict(params or {})
        check_query(sql, params)
        try:
            response = self.execute(sql, params)
        except WarehouseError as e:
            raise QueryError(str(e)) from None
        schema = pa.schema([pa.field(c.name, _arrow_type(c))
                            for c in response.manifest.schema.columns])
        return self._chunks(response, schema)

    def _chunks(self, response: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        result = response.result
        sent = False
        while result is not None:
            rows = result.data_array or []
            columns = [[_value(r[i], f.type) for r in rows] for i, f in enumerate(schema)]
            yield pa.RecordBatch.from_arrays(
                [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)],
                schema=schema)
            sent = True
            if result.next_chunk_index is None:
                break
            result = self.client.statement_execution.get_statement_result_chunk_n(
                response.statement_id, result.next_chunk_index)
        if not sent:
            yield pa.RecordBatch.from_pylist([], schema=schema)

    def grants(self) -> list[Grant]:
        s = self.settings
        sql = (
            "SELECT grantee, privilege_type, 'CATALOG' AS kind, catalog_name AS obj "
            f"FROM {s.catalog}.information_schema.catalog_privileges "
            "UNION ALL SELECT grantee, privilege_type, 'SCHEMA', "
            "concat(catalog_name, '.', schema_name) "
            f"FROM {s.catalog}.information_schema.schema_privileges WHERE schema_name = :schema "
            "UNION ALL SELECT grantee, privilege_type, 'TABLE', "
            "concat(table_catalog, '.', table_schema, '.', table_name) "
            f"FROM {s.catalog}.information_schema.table_privileges WHERE table_schema = :schema "
            "UNION ALL SELECT grantee, privilege_type, 'VOLUME', "
            "concat(volume_catalog, '.', volume_schema, '.', volume_name) "
            f"FROM {s.catalog}.information_schema.volume_privileges WHERE volume_schema = :schema"
        )
        rows = self.query(sql, {"schema": s.schema}).to_pylist()
        return sorted(Grant(r["grantee"], r["privilege_type"], r["kind"], r["obj"])
                      for r in rows)
