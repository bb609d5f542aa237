"""Databricks target: Unity Catalog managed Delta tables through the job's Spark session.

Everything here is plain Spark SQL and DataFrame API, so it runs on serverless (Spark Connect).
Names reaching SQL text are validated three-level identifiers; values are validated literals.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from yws.config import Settings, check_identifier, check_table_name
from yws.storage.base import (
    PublishConflictError,
    Storage,
    StorageError,
    TableInfo,
    TableNotFoundError,
    WriteMode,
    check_literal,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


_HISTORY = 50  # commits searched for the one a write just made


class DatabricksStorage(Storage):
    """Tables through a Spark session, asked of ``session`` when first needed (the target
    passes its own: the job's session on Databricks)."""

    _spark: SparkSession | None = None

    def __init__(self, settings: Settings, session: Callable[[], SparkSession]) -> None:
        super().__init__(settings)
        self._session = session

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = self._session()
        return self._spark

    def exists(self, name: str) -> bool:
        self.split(name)
        return bool(self.spark.catalog.tableExists(name))

    def read(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            raise TableNotFoundError(name)
        if version is None:
            return spark.table(name)
        # Delta time travel (Databricks docs, "Work with Delta Lake table history": the
        # DataFrameReader option versionAsOf, or SELECT … VERSION AS OF n).
        return spark.read.option("versionAsOf", int(version)).table(name)

    def read_arrow(self, name: str, limit: int | None = None,
                   where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, version: int | None = None) -> pa.Table:
        from pyspark.sql import functions as F

        df = self.read(self.spark, name, version)
        if where is not None:
            df = df.where(F.col(where[0]) == F.lit(where[1]))
        if columns is not None:
            df = df.select(*columns)
        return (df.limit(limit) if limit is not None else df).toArrow()

    def describe(self, name: str) -> TableInfo:
        df = self.read(self.spark, name)
        detail = self.spark.sql(f"DESCRIBE DETAIL {name}").first()
        return TableInfo(
            name=name,
            location=str(detail["location"]) if detail else "",
            version=self.version(name),
            rows=df.count(),
            columns=[(f.name, f.dataType.simpleString()) for f in df.schema.fields],
        )

    def list_tables(self) -> list[str]:
        s = self.settings
        rows = self.spark.sql(f"SHOW TABLES IN {s.catalog}.{s.schema}").collect()
        return sorted(f"{s.catalog}.{s.schema}.{r['tableName']}" for r in rows)

    def write(
        self,
        data: DataFrame | pa.Table | pa.RecordBatchReader,
        name: str,
        mode: WriteMode = "append",
        replace_where: tuple[str, str | dt.date] | None = None,
    ) -> int:
        self.split(name)
        predicate = None
        if replace_where is not None:
            column, value = replace_where
            predicate = f"{check_identifier(column, 'column')} = '{check_literal(value, column)}'"
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        df = self.spark.createDataFrame(data) if isinstance(data, pa.Table) else data
        # The commit is tagged, so its row count is read from this commit, not from whichever
        # commit is newest when we look (another run may have committed meanwhile).
        tag = f"yws-write-{uuid.uuid4().hex}"
        writer = df.write.format("delta").mode(mode).option("userMetadata", tag)
        if predicate is not None:
            writer = writer.option("replaceWhere", predicate)
        elif mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        writer.saveAsTable(name)
        return int(self._commit_metrics(name, tag).get("numOutputRows", 0))

    def _commit_metrics(self, name: str, tag: str) -> dict[str, str]:
        for row in self.spark.sql(f"DESCRIBE HISTORY {name} LIMIT {_HISTORY}").collect():
            if row["userMetadata"] == tag:
                return dict(row["operationMetrics"] or {})
        raise StorageError(f"the commit of this write to {name} is not among its last "
                           f"{_HISTORY} commits; its row count is unknown")

    def add_columns(self, name: str, fields: Sequence[pa.Field],
                    comments: Mapping[str, str]) -> None:
        # Databricks SQL, ALTER TABLE … ADD COLUMNS: columns are appended at the end and "all
        # columns added to Delta tables are treated as NULL for existing rows".
        statement = add_columns_statement(name, fields, comments)
        try:
            self.spark.sql(statement)
        except Exception as e:
            raise StorageError(f"adding column(s) {', '.join(f.name for f in fields)} to "
                               f"{name} failed: {e}") from e

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        row = self.spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
        return int(row["version"]) if row else None

    def delete_runs(self, name: str, run_ids: Sequence[str]) -> int:
        self.split(name)
        values = ", ".join(f"'{check_literal(r, 'run id')}'" for r in sorted(set(run_ids)))
        if not run_ids or not self.exists(name):
            return 0
        row = self.spark.sql(f"DELETE FROM {name} WHERE run_id IN ({values})").first()
        return int(row["num_affected_rows"]) if row else 0

    def runs_before(self, name: str, time_column: str, before: dt.datetime) -> set[str]:
        from pyspark.sql import functions as F

        self.split(name)
        if not self.exists(name):
            return set()
        rows = (self.spark.table(name)
                .where(F.col(check_identifier(time_column, "column")) < F.lit(before))
                .select("run_id").distinct().collect())
        return {r["run_id"] for r in rows if r["run_id"] is not None}

    def publish_run(self, name: str, record: pa.Table) -> list[str]:
        self.split(name)
        if record.num_rows != 1:
            raise StorageError(f"a run is published with one record, not {record.num_rows}")
        run_id = check_literal(record.column("run_id")[0].as_py(), "run id")
        check_literal(record.column("batch_id")[0].as_py(), "batch id")
        columns = [check_identifier(c, "column") for c in record.column_names]
        view = f"yws_publish_{run_id.replace('-', '_').replace('.', '_').replace(':', '_')}"
        self.spark.createDataFrame(record).createOrReplaceTempView(view)
        # One MERGE, so one commit: the source holds the record twice, once keyed by nothing
        # (to insert) and once by its batch (to mark the published run of that batch).
        statement = (
            f"MERGE INTO {name} AS t USING ("
            f"SELECT *, CAST(NULL AS STRING) AS _key FROM {view} "
            f"UNION ALL SELECT *, batch_id AS _key FROM {view}) AS s "
            "ON t.status = 'SUCCEEDED' AND t.batch_id = s._key "
            "WHEN MATCHED THEN UPDATE SET t.status = 'SUPERSEDED', t.superseded_by = s.run_id "
            f"WHEN NOT MATCHED AND s._key IS NULL THEN INSERT ({', '.join(columns)}) "
            f"VALUES ({', '.join('s.' + c for c in columns)})"
        )
        try:
            self.spark.sql(statement)
        except Exception as e:  # Delta's concurrent-modification errors, by name or class
            text = f"{type(e).__name__} {e}"
            if "Concurrent" in text or "DELTA_CONCURRENT" in text:
                raise PublishConflictError(
                    f"another run committed to {name} while run {run_id} was being "
                    f"published: {e}") from e
            raise
        finally:
            self.spark.sql(f"DROP VIEW IF EXISTS {view}")
        try:  # committed: what it superseded only saves the sweep a later look
            rows = self.spark.sql(
                f"SELECT run_id FROM {name} WHERE superseded_by = '{run_id}'").collect()
        except Exception:
            return []
        return sorted(r["run_id"] for r in rows)

    def counts(self, name: str, where: tuple[str, str | dt.date], column: str) -> dict[str, int]:
        from pyspark.sql import functions as F

        rows = (self.read(self.spark, name)
                .where(F.col(check_identifier(where[0], "column")) == F.lit(where[1]))
                .groupBy(check_identifier(column, "column")).count().collect())
        return {str(r[column]): int(r["count"]) for r in sorted(rows, key=lambda r: str(r[column]))}


def sql_string(text: str) -> str:
    """``text`` as a Databricks SQL string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def add_columns_statement(name: str, fields: Sequence[pa.Field],
                          comments: Mapping[str, str]) -> str:
    """``ALTER TABLE <name> ADD COLUMNS (<col> <TYPE> [COMMENT '…'], …)`` for Arrow ``fields``;
    names are checked identifiers, types Spark's names for the Arrow types."""
    from pyspark.sql.pandas.types import from_arrow_type

    check_table_name(name)
    parts = []
    for f in fields:
        kind = from_arrow_type(f.type).simpleString().upper()
        text = f"{check_identifier(f.name, 'column')} {kind}"
        if comments.get(f.name):
            text += f" COMMENT {sql_string(comments[f.name])}"
        parts.append(text)
    return f"ALTER TABLE {name} ADD COLUMNS ({', '.join(parts)})"
