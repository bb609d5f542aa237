"""Local target: Delta tables written with delta-rs under ``$YWS_HOME/warehouse``.

``catalog.schema.table`` lives at ``<warehouse>/<catalog>/<schema>/<table>``. Spark reads a
table through its current data files (DESIGN.md: Delta inside JVM Spark is not available here,
and a plain read of the folder would also see files a later commit removed).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from yws.config import check_identifier
from yws.storage.base import (
    PublishConflictError,
    Storage,
    StorageError,
    TableInfo,
    TableNotFoundError,
    VersionNotFoundError,
    WriteMode,
    check_literal,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


_RETRIES = 5  # commits that another writer's commit made stale are retried this often


def _where(where: tuple[str, str | dt.date] | None) -> Any:
    """``column = value`` as a dataset filter. A text column is compared as ``string``: files
    delta-rs rewrote (MERGE, DELETE) store it as ``string_view``, and pyarrow has no kernel
    comparing the two, so the plain comparison fails on a file whose statistics cannot rule
    it out (the file statistics still prune the others)."""
    import pyarrow.compute as pc

    if where is None:
        return None
    column, value = where
    field = pc.field(column)
    return (field.cast(pa.string()) if isinstance(value, str) else field) == value


class LocalStorage(Storage):
    def path(self, name: str) -> Path:
        catalog, schema, table = self.split(name)
        return self.settings.warehouse_dir / catalog / schema / table

    @contextmanager
    def _hold(self, name: str, *, alone: bool) -> Iterator[None]:
        """Appends to a table share it; a commit that removes files or changes the schema
        (delete, overwrite, new columns) holds it alone.

        On Databricks a blind INSERT cannot conflict with a concurrent DELETE under the default
        WriteSerializable level ("Isolation levels and write conflicts on Databricks"). delta-rs
        instead counts every file of an append's snapshot as read, so a delete committed while
        an append is under way fails the append ("a concurrent transaction deleted data this
        operation read") -- and a streamed append cannot be retried. An advisory ``flock`` on a
        hidden file beside the table, shared or exclusive, gives the local target Databricks'
        outcome across threads and processes; the kernel drops it when a holder dies.
        """
        place = self.path(name)
        place.parent.mkdir(parents=True, exist_ok=True)
        with open(place.parent / f".{place.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            yield  # closing the file releases the lock

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(str(self.path(name)))

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        if not self.exists(name):
            raise TableNotFoundError(name)
        try:
            return DeltaTable(str(self.path(name)), version=version)
        except Exception as e:  # delta-rs: the version's log or checkpoint is gone
            if version is None:
                raise
            raise VersionNotFoundError(name, version, str(e)) from e

    def arrow_schema(self, name: str) -> pa.Schema:
        return pa.schema(self._table(name).schema().to_arrow())

    def read(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        table = self._table(name, version)
        files = table.file_uris()  # that version's files only
        if files:
            return spark.read.parquet(*files)
        from pyspark.sql.pandas.types import from_arrow_schema

        return spark.createDataFrame([], from_arrow_schema(pa.schema(table.schema().to_arrow())))

    def read_arrow(self, name: str, limit: int | None = None,
                   where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, version: int | None = None) -> pa.Table:

        dataset = self._table(name, version).to_pyarrow_dataset()
        expr = _where(where)
        if limit is not None:
            return dataset.head(limit, columns=columns, filter=expr)
        return dataset.to_table(columns=columns, filter=expr)

    def scan_arrow(self, name: str, where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, batch_rows: int = 262_144,
                   version: int | None = None) -> Iterator[pa.RecordBatch]:
        import pyarrow.dataset as ds

        dataset = self._table(name, version).to_pyarrow_dataset()
        expr = _where(where)
        # One file, one row group's pages (no pre-buffering) and a few batches in flight:
        # memory stays flat however many rows there are.
        # Not a generator: the table is opened here, not inside a consumer such as a delta-rs
        # write (whose runtime cannot be re-entered).
        return dataset.to_batches(
            columns=columns, filter=expr, batch_size=batch_rows, batch_readahead=1,
            fragment_readahead=1,
            fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))

    def check_version(self, name: str, version: int) -> None:
        from urllib.parse import unquote, urlparse

        gone = [uri for uri in self._table(name, version).file_uris()
                if not Path(unquote(urlparse(uri).path) if "://" in uri else uri).exists()]
        if gone:
            raise VersionNotFoundError(name, version, f"{len(gone)} data file(s) missing, "
                                                      f"e.g. {gone[0]}")

    def table_id(self, name: str) -> str | None:
        return str(self._table(name).metadata().id)  # the Delta log's table id

    def describe(self, name: str) -> TableInfo:
        table = self._table(name)
        schema = pa.schema(table.schema().to_arrow())
        return TableInfo(
            name=name,
            location=str(self.path(name)),
            version=table.version(),
            rows=table.to_pyarrow_dataset().count_rows(),
            columns=[(f.name, str(f.type)) for f in schema],
        )

    def list_tables(self) -> list[str]:
        root = self.settings.warehouse_dir / self.settings.catalog / self.settings.schema
        if not root.is_dir():
            return []
        return sorted(
            f"{self.settings.catalog}.{self.settings.schema}.{p.name}"
            for p in root.iterdir()
            if (p / "_delta_log").is_dir()
        )

    def write(
        self,
        data: DataFrame | pa.Table | pa.RecordBatchReader,
        name: str,
        mode: WriteMode = "append",
        replace_where: tuple[str, str | dt.date] | None = None,
    ) -> int:
        rows = 0
        failed: list[BaseException] = []  # the stream's own error, which delta-rs would wrap
        if isinstance(data, pa.RecordBatchReader):
            def counted(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
                nonlocal rows
                try:
                    for batch in reader:
                        rows += batch.num_rows
                        yield batch
                except BaseException as e:
                    failed.append(e)
                    raise

            table: pa.Table | pa.RecordBatchReader = pa.RecordBatchReader.from_batches(
                data.schema, counted(data))
        else:
            table = data if isinstance(data, pa.Table) else data.toArrow()
            rows = table.num_rows
        path = self.path(name)
        predicate = None
        if replace_where is not None:
            column, value = replace_where
            predicate = f"{check_identifier(column, 'column')} = '{check_literal(value, column)}'"
        try:
            # The write that creates the table holds it alone too: two first appends at once
            # would both commit version 0, and the loser fails ("protocol changed").
            with self._hold(name, alone=mode != "append" or not self.exists(name)):
                if predicate is not None and not self.exists(name):
                    mode = "append"  # nothing to replace yet; the first write creates the table
                write_deltalake(
                    str(path),
                    table,
                    mode=mode,  # type: ignore[arg-type]
                    predicate=predicate if mode == "overwrite" else None,
                    schema_mode="overwrite" if mode == "overwrite" and predicate is None else None,
                )
        except Exception as e:  # delta-rs raises several exception types; name the table
            if failed:  # nothing was committed; the producer's error is the one to report
                raise failed[0] from None
            raise StorageError(f"writing {name} failed: {e}") from e
        return rows

    def add_columns(self, name: str, fields: Sequence[pa.Field],
                    comments: Mapping[str, str]) -> None:
        # An empty append whose schema is the table's plus the new fields, merged
        # (delta-rs ``write_deltalake(..., schema_mode="merge")``): one commit that changes the
        # schema only. A comment goes where Spark keeps one, the field's "comment" metadata.
        current = self.arrow_schema(name)
        added = [f.with_metadata({"comment": comments[f.name]}) if comments.get(f.name) else f
                 for f in fields]
        try:
            with self._hold(name, alone=True):  # a schema change fails appends under way
                write_deltalake(str(self.path(name)),
                                pa.schema([*current, *added]).empty_table(),
                                mode="append", schema_mode="merge")
        except Exception as e:  # delta-rs raises several exception types; name the table
            raise StorageError(f"adding column(s) {', '.join(f.name for f in fields)} to "
                               f"{name} failed: {e}") from e

    def version(self, name: str) -> int | None:
        return DeltaTable(str(self.path(name))).version() if self.exists(name) else None

    def delete_runs(self, name: str, run_ids: Sequence[str]) -> int:
        values = ", ".join(f"'{check_literal(r, 'run id')}'" for r in sorted(set(run_ids)))
        if not run_ids or not self.exists(name):
            return 0
        for attempt in range(_RETRIES):
            try:
                # Each data file holds one run's rows, so the file statistics on run_id prune
                # the scan to that run's files; a concurrent append by another run commutes.
                with self._hold(name, alone=True):
                    metrics = DeltaTable(str(self.path(name))).delete(f"run_id IN ({values})")
                return int(metrics.get("num_deleted_rows", 0))
            except CommitFailedError:
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        return 0  # unreachable

    def runs_before(self, name: str, time_column: str, before: dt.datetime) -> set[str]:
        import pyarrow.compute as pc

        if not self.exists(name):
            return set()
        column = check_identifier(time_column, "column")
        rows = self._table(name).to_pyarrow_dataset().to_table(
            columns=["run_id"], filter=pc.field(column) < pa.scalar(
                before, pa.timestamp("us", tz="UTC")))
        return {r for r in pc.unique(rows.column(0)).to_pylist() if r is not None}

    def publish_run(self, name: str, record: pa.Table) -> list[str]:
        if record.num_rows != 1:
            raise StorageError(f"a run is published with one record, not {record.num_rows}")
        run_id = record.column("run_id")[0].as_py()
        check_literal(run_id, "run id")
        check_literal(record.column("batch_id")[0].as_py(), "batch id")
        if not self.exists(name):
            try:  # the first run creates the table; its record is the only row to publish
                write_deltalake(str(self.path(name)), record, mode="error")
                return []
            except Exception as e:  # another run created it first: merge like any other time
                if not self.exists(name):
                    raise StorageError(f"writing {name} failed: {e}") from e
        source = pa.concat_tables([
            record.append_column("_key", pa.array([None], pa.string())),  # the row to insert
            record.append_column("_key", record.column("batch_id")),  # what it supersedes
        ])
        columns = record.column_names
        try:
            (self._table(name)
             .merge(source, "t.status = 'SUCCEEDED' AND t.batch_id = s._key",
                    source_alias="s", target_alias="t")
             .when_matched_update({"status": "'SUPERSEDED'", "superseded_by": "s.run_id"})
             .when_not_matched_insert({c: f"s.{c}" for c in columns}, predicate="s._key IS NULL")
             .execute())
        except CommitFailedError as e:
            raise PublishConflictError(
                f"another run committed to {name} while run {run_id} was being published: {e}"
            ) from e
        try:  # committed: what it superseded only saves the sweep a later look
            rows = self._table(name).to_pyarrow_dataset().to_table(
                columns=["run_id", "superseded_by"]).to_pylist()
        except Exception:
            return []
        return sorted(r["run_id"] for r in rows if r["superseded_by"] == run_id)
