"""The local warehouse: DuckDB with the Delta extension over the local Delta tables.

``apply`` runs every rendered statement in a fresh in-memory DuckDB first; only when all of them
succeed does it create the missing Delta tables and save the applied state
(``$YWS_HOME/warehouse/_sql_state.json``): the DuckDB form of each object and the grants. Every
connection replays that state into its own in-memory database, so readers never lock each other
out and a failed apply changes nothing. Connections may read only the warehouse folder.

Unity Catalog objects DuckDB has no counterpart for are recorded, not dropped: a volume
(``CREATE VOLUME``) is kept in the state so grants on it can be checked, and every grant —
``CREATE MODEL`` and ``EXECUTE`` on the schema, ``READ VOLUME`` / ``WRITE VOLUME`` on a volume,
privileges on a model (``ON FUNCTION``) — is kept in the grant store that ``yws sql grants``
shows. Only ``SELECT`` on views decides what a local statement may read.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from yws.contract.sqlfiles import (
    Grant,
    SqlFileError,
    Statement,
    columns_of,
    describe,
    not_null_of,
    parse_grant,
)
from yws.contract.tables import PREDICTIONS, arrow_type
from yws.storage.local import LocalStorage
from yws.warehouse import ai_query
from yws.warehouse.ai_query import Scorer
from yws.warehouse.base import ApplyStep, QueryError, Warehouse, WarehouseError, check_query
from yws.warehouse.dialect import sql_error, to_duckdb

STATE_FILE = "_sql_state.json"


def delta_extension() -> Path:
    """The Delta extension shipped in the ``duckdb-extension-delta`` wheel (no download)."""
    import duckdb
    import duckdb_extension_delta

    root = Path(duckdb_extension_delta.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "delta.duckdb_extension"
    if not path.is_file():
        found = sorted(root.glob("*/delta.duckdb_extension"))
        if not found:
            raise WarehouseError(f"the DuckDB Delta extension is missing under {root}")
        path = found[-1]
    return path


def _kind(t: pa.DataType) -> str:
    """A coarse type name for comparing a Delta table with its DDL."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


class LocalWarehouse(Warehouse):
    def __init__(self, settings: Any, endpoints: Scorer | None = None) -> None:
        """``endpoints``: what answers ``ai_query`` (see :meth:`serve_endpoints`)."""
        super().__init__(settings)
        self._lock = threading.Lock()
        self._base: Any = None
        self._base_stamp: int | None = None
        self.endpoints = endpoints
        self._request: pa.Schema | None = None

    def serve_endpoints(self, scorer: Scorer | None) -> LocalWarehouse:
        """Answer ``ai_query`` with ``scorer`` from now on, in every cursor (the functions
        look it up when a query calls them). Returns the warehouse, so a caller can write
        ``warehouse_for(settings).serve_endpoints(...)``."""
        self.endpoints = scorer
        return self

    def _ai_query_types(self) -> tuple[pa.Schema, pa.StructType]:
        """The request ``ai_query`` takes (the spec's features) and the result STRUCT a row
        returns, the served model's outputs: ``probability``, ``prediction``, ``band`` typed as
        the predictions table declares them, and ``error`` (why a row was refused)."""
        if self._request is None:
            from yws.contract.spec import load_spec

            spec = load_spec(self.settings.spec)
            self._request = pa.schema([pa.field(f.name, f.kind.arrow()) for f in spec.features])
        result = pa.struct([*(pa.field(c, arrow_type(PREDICTIONS[c][0]))
                              for c in ("probability", "prediction", "band")),
                            pa.field(ai_query.ERROR_FIELD, pa.string())])
        return self._request, result

    @property
    def state_path(self) -> Path:
        return self.settings.warehouse_dir / STATE_FILE

    def _state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            raise WarehouseError(
                f"the local warehouse under {self.settings.warehouse_dir} has no tables or views "
                "yet: run `yws sql apply` first"
            )
        data: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        return data

    def _connect(self, replay: list[str] | None = None):  # -> duckdb.DuckDBPyConnection
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET TimeZone = 'UTC'")  # a DBSQL session's default, whatever the host's
        con.execute(f"LOAD '{delta_extension()}'")
        con.execute(f"ATTACH ':memory:' AS {self.settings.catalog}")
        request, result = self._ai_query_types()
        ai_query.register(con, request, result, lambda: self.endpoints)
        for sql in replay or []:
            con.execute(sql)
        return con

    def connect(self):  # -> duckdb.DuckDBPyConnection
        """A cursor on the applied objects: no file outside the warehouse is reachable.

        The database behind it is built once per applied state and table versions (again when
        ``yws sql apply`` changes the state or a table gets a new version); each caller gets its
        own cursor, so threads do not share one.
        """
        stamp = self._stamp()
        with self._lock:
            if self._base is None or self._base_stamp != stamp:
                self._base, self._base_stamp = self._open(), stamp
            return self._base.cursor()

    def close(self) -> None:
        """Close the database behind the cursors (a later call opens it again)."""
        with self._lock:
            if self._base is not None:
                self._base.close()
            self._base = None

    def _stamp(self) -> tuple[int, ...] | None:
        """What the database behind the cursors depends on: the state and each table's log."""
        if not self.state_path.is_file():
            return None
        logs = sorted(self.settings.warehouse_dir.glob("*/*/*/_delta_log"))
        return (self.state_path.stat().st_mtime_ns, *(log.stat().st_mtime_ns for log in logs))

    def _current_files(self, state: dict[str, Any]) -> list[str]:
        """The data files of the current version of every applied table, and nothing else."""
        from deltalake import DeltaTable

        storage = LocalStorage(self.settings)
        files: list[str] = []
        for item in state["statements"]:
            if item["kind"] != "TABLE":
                continue
            path = str(storage.path(item["object"]))
            if DeltaTable.is_deltatable(path):
                files.extend(DeltaTable(path).file_uris())
        return files

    def _open(self):  # -> duckdb.DuckDBPyConnection
        """The database the API reads: views over the applied objects, locked down.

        DuckDB reads a quoted path as a file (a replacement scan) and has no setting to turn that
        off, and a view over ``delta_scan`` opens its data files at query time under the same
        file-access check as anything else. So with external access off, only the data files of
        each table's *current* version are allowed (``allowed_paths``): no directory, glob,
        Delta log, older version or other file is readable, and ``connect`` rebuilds this
        database when a table gets a new version. Python-variable replacement scans are off too.
        """
        state = self._state()
        con = self._connect([s["duckdb"] for s in state["statements"]])
        con.execute("SET allowed_paths = ?", [self._current_files(state)])
        con.execute("SET python_enable_replacements = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    # -- apply -------------------------------------------------------------------------------
    def apply(self, statements: list[Statement]) -> list[ApplyStep]:
        from sqlglot import exp

        storage = LocalStorage(self.settings)
        con = self._connect()
        replay: list[dict[str, str]] = []
        steps: list[ApplyStep] = []
        grants: set[Grant] = set()
        comments: dict[str, Any] = {}
        volumes: dict[str, str] = {}  # name -> where
        to_create: dict[str, pa.Schema] = {}
        to_extend: dict[str, tuple[pa.Schema, list[str], dict[str, tuple[str, str]]]] = {}
        for stmt in statements:
            tree = stmt.parse()
            what = describe(stmt)
            if what.kind == "VOLUME":
                # No DuckDB equivalent: the MLflow temp volume matters on serverless only.
                self._check_parent(con, stmt, what.name)
                volumes[what.name] = stmt.where
                steps.append(ApplyStep(stmt.where, "VOLUME", what.name,
                                       "recorded (no DuckDB equivalent)"))
            elif isinstance(tree, exp.Create):
                kind = str(tree.args.get("kind")).upper()
                wrapped = isinstance(tree.this, exp.Schema | exp.UserDefinedFunction)
                target = tree.this.this if wrapped else tree.this
                name = target.sql("databricks")
                if kind == "SCHEMA":
                    duck = f"CREATE SCHEMA IF NOT EXISTS {name}"
                    action = "created"
                elif kind == "TABLE":
                    duck, action = self._table(stmt, tree, name, storage, con, to_create,
                                               to_extend)
                    comments[name] = columns_of(tree)
                elif kind == "VIEW":
                    duck = self._view(stmt, tree, name)
                    action = "replaced"
                    comments[name] = [c.name for c in tree.this.expressions]
                elif kind == "FUNCTION":
                    duck = self._function(stmt, tree, name)
                    action = "replaced"
                else:
                    raise SqlFileError(f"{stmt.where}: CREATE {kind} is not supported locally")
                self._run(con, stmt, duck, kind, name)
                replay.append({"where": stmt.where, "kind": kind, "object": name,
                               "duckdb": duck})
                steps.append(ApplyStep(stmt.where, kind, name, action))
            elif stmt.text.lstrip()[:6].upper() in ("GRANT ", "REVOKE"):
                verb, found = parse_grant(stmt)
                for g in found:
                    self._check_object(con, stmt, g, volumes)
                (grants.update if verb == "GRANT" else grants.difference_update)(found)
                steps.append(ApplyStep(stmt.where, verb, found[0].securable,
                                       f"{', '.join(g.privilege for g in found)} "
                                       f"{'to' if verb == 'GRANT' else 'from'} "
                                       f"{found[0].principal}"))
            else:
                raise SqlFileError(f"{stmt.where}: {type(tree).__name__.upper()} statements are "
                                   "not supported by the local warehouse")
        # Everything ran: now create the missing Delta tables and save the state.
        for name, schema in to_create.items():
            storage.write(schema.empty_table(), name, mode="append")
        for name, (schema, missing, want) in to_extend.items():
            storage.ensure_table(name, schema, comments={c: want[c][1] for c in missing})
        for item in replay:
            if item["kind"] == "TABLE":
                item["duckdb"] = self._table_view(item["object"], storage)
        state = {
            "applied_at": dt.datetime.now(dt.UTC).isoformat(),
            "statements": replay,
            "grants": [g.__dict__ for g in sorted(grants)],
            "volumes": sorted(volumes),
            "comments": comments,
        }
        self.settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(self.state_path)
        return steps

    @staticmethod
    def _table_view(name: str, storage: LocalStorage) -> str:
        path = str(storage.path(name)).replace("'", "''")
        return f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan('{path}')"

    def _table(self, stmt: Statement, tree: Any, name: str, storage: LocalStorage, con: Any,
               to_create: dict[str, pa.Schema],
               to_extend: dict[str, tuple[pa.Schema, list[str], dict[str, tuple[str, str]]]],
               ) -> tuple[str, str]:
        from sqlglot import exp

        want = columns_of(tree)
        schema = pa.schema([pa.field(c, arrow_type(t)) for c, (t, _) in want.items()])
        if storage.exists(name):
            have = storage.arrow_schema(name)
            missing = [c for c in want if c not in have.names]
            extra = [c for c in have.names if c not in want]
            wrong = [f"{c} is {_kind(have.field(c).type)}, DDL says {want[c][0]}"
                     for c in want if c in have.names
                     and _kind(have.field(c).type) != _kind(schema.field(c).type)]
            required = sorted(set(missing) & not_null_of(tree))
            if required or extra or wrong:
                raise SqlFileError(
                    f"{stmt.where}: table {name} exists with other columns than its DDL: "
                    + "; ".join(p for p in (
                        f"missing NOT NULL {', '.join(required)}" if required else "",
                        f"not in the DDL {', '.join(extra)}" if extra else "",
                        "; ".join(wrong)) if p)
                    + " (see docs/migration.md, \"Schema changes\")"
                )
            if not missing:
                return self._table_view(name, storage), "exists"
            # An older release created it: the new nullable columns are added once every
            # statement has run; meanwhile the DDL's empty table stands in for the views.
            to_extend[name] = (schema, missing, want)
            action = f"columns added: {', '.join(missing)}"
        else:
            to_create[name] = schema  # not there yet: an empty DuckDB table stands in
            action = "created"
        cols = ", ".join(
            f"{c} {exp.DataType.build(t, dialect='databricks').sql('duckdb')}"
            for c, (t, _) in want.items()
        )
        return f"CREATE OR REPLACE TABLE {name} ({cols})", action

    @staticmethod
    def _view(stmt: Statement, tree: Any, name: str) -> str:
        columns = [c.name for c in tree.this.expressions]
        query = tree.expression
        outputs = query.named_selects
        if columns and columns != outputs:
            raise SqlFileError(
                f"{stmt.where}: view {name} declares columns {columns} but its query returns "
                f"{outputs}"
            )
        try:
            query = ai_query.rewrite(query)
        except QueryError as e:
            raise SqlFileError(f"{stmt.where}: view {name}: {e}") from None
        return f"CREATE OR REPLACE VIEW {name} AS {query.sql('duckdb')}"

    @staticmethod
    def _function(stmt: Statement, tree: Any, name: str) -> str:
        """A SQL function (``CREATE FUNCTION … RETURNS <type> RETURN <expression>``) as a DuckDB
        macro: each parameter cast to its declared type, the result to the declared return
        type, ``ai_query`` calls rewritten (:mod:`yws.warehouse.ai_query`)."""
        from sqlglot import exp

        params = {c.name: c.args["kind"] for c in tree.this.expressions}
        body = tree.expression
        returns = tree.find(exp.ReturnsProperty)
        if not isinstance(body, exp.Return) or returns is None or tree.find(exp.Select):
            raise SqlFileError(f"{stmt.where}: function {name}: only SQL functions of the form "
                               "RETURNS <type> RETURN <expression> run locally")

        def typed(node: Any) -> Any:
            if isinstance(node, exp.Column) and not node.table and node.name in params:
                return exp.Cast(this=exp.column(node.name), to=params[node.name].copy())
            return node

        try:
            expression = ai_query.rewrite(body.this.copy().transform(typed))
        except QueryError as e:
            raise SqlFileError(f"{stmt.where}: function {name}: {e}") from None
        result = exp.Cast(this=expression, to=returns.this.copy())
        return (f"CREATE OR REPLACE MACRO {name}({', '.join(params)}) AS "
                f"{result.sql('duckdb')}")

    @staticmethod
    def _run(con: Any, stmt: Statement, sql: str, kind: str, name: str) -> None:
        import duckdb

        try:
            con.execute(sql)
        except duckdb.Error as e:
            first = str(e).strip().splitlines()[0]
            raise WarehouseError(f"{stmt.where}: {kind.lower()} {name}: {first}") from None

    @staticmethod
    def _check_parent(con: Any, stmt: Statement, name: str) -> None:
        catalog, schema, _ = name.split(".")
        rows = con.execute("SELECT 1 FROM duckdb_schemas() WHERE database_name = ? AND "
                           "schema_name = ?", [catalog, schema]).fetchall()
        if not rows:
            raise SqlFileError(f"{stmt.where}: schema {catalog}.{schema} of {name} does not "
                               "exist (yet): create it in an earlier file")

    @staticmethod
    def _check_object(con: Any, stmt: Statement, grant: Grant,
                      volumes: dict[str, str]) -> None:
        """A grant must name an object that exists: a typo is an error, not a silent no-op.

        A registered model (``ON FUNCTION``) lives in the MLflow registry, not in the
        warehouse: its grants are recorded without that check.
        """
        parts = grant.securable.split(".")
        if grant.securable_type == "FUNCTION":
            return
        if grant.securable_type == "CATALOG":
            rows = con.execute("SELECT 1 FROM duckdb_databases() WHERE database_name = ?",
                               [parts[0]]).fetchall()
        elif grant.securable_type == "SCHEMA":
            rows = con.execute("SELECT 1 FROM duckdb_schemas() WHERE database_name = ? AND "
                               "schema_name = ?", parts).fetchall()
        elif grant.securable_type == "VOLUME":
            rows = [(1,)] if grant.securable in volumes else []
        else:
            rows = con.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_catalog = ? AND "
                "table_schema = ? AND table_name = ?", parts).fetchall()
        if not rows:
            raise SqlFileError(f"{stmt.where}: {grant.securable_type} {grant.securable} does not "
                               "exist (yet): grants must follow the object they name")

    # -- read --------------------------------------------------------------------------------
    def batches(self, sql: str, params: Mapping[str, Any] | None = None,
                on_cursor: Callable[[Any], None] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream a query's result; ``on_cursor`` sees the cursor before the query starts.

        The cursor is what another thread interrupts (``cursor.interrupt()``) to stop the query.
        """
        params = dict(params or {})
        tree = check_query(sql, params)
        duck, values = to_duckdb(tree, params)
        return self.stream(duck, values, on_cursor)

    def stream(self, duck: str, values: Mapping[str, Any],
               on_cursor: Callable[[Any], None] | None = None) -> Iterator[pa.RecordBatch]:
        """Run DuckDB SQL made by :func:`yws.warehouse.dialect.to_duckdb` with its values.

        A failure is a :class:`SqlError` with the Databricks error class it corresponds to.
        """
        import duckdb

        con = self.connect()
        try:
            if on_cursor is not None:
                on_cursor(con)
            result = con.execute(duck, dict(values))
            reader = result.fetch_record_batch(65_536)
        except duckdb.Error as e:
            con.close()
            raise sql_error(e) from None
        except BaseException:
            con.close()
            raise

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                sent = False
                try:
                    for batch in reader:
                        sent = True
                        yield batch
                except duckdb.Error as e:
                    raise sql_error(e) from None
                if not sent:
                    yield pa.RecordBatch.from_pylist([], schema=reader.schema)
            finally:
                con.close()

        return stream()

    def objects(self) -> set[str]:
        """The lower-case three-level names of the applied tables and views."""
        return {str(s["object"]).lower() for s in self._state()["statements"]
                if s["kind"] in ("TABLE", "VIEW")}

    def grants(self) -> list[Grant]:
        return [Grant(**g) for g in self._state()["grants"]]

    def volumes(self) -> set[str]:
        """The lower-case three-level names of the applied volumes (``CREATE VOLUME``), whose
        files ``yws serve``'s Files API serves."""
        return {str(v).lower() for v in self._state().get("volumes", [])}
