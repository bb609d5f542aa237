"""Databricks target: Unity Catalog managed Delta tables through the job's Spark session.

Everything here is plain Spark SQL and DataFrame API, so it runs on serverless (Spark Connect).
Names reaching SQL text are validated three-level identifiers; values are validated literals.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa

from yws.config import check_identifier
from yws.storage.base import Storage, TableInfo, TableNotFoundError, WriteMode, check_literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class DatabricksStorage(Storage):
    _spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from yws.spark import get_spark

            self._spark = get_spark(self.settings)
        return self._spark

    def exists(self, name: str) -> bool:
        self.split(name)
        return bool(self.spark.catalog.tableExists(name))

    def read(self, spark: SparkSession, name: str) -> DataFrame:
        if not self.exists(name):
            raise TableNotFoundError(name)
        return spark.table(name)

    def read_arrow(self, name: str, limit: int | None = None,
                   where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, version: int | None = None) -> pa.Table:
        from pyspark.sql import functions as F

        df = self.read(self.spark, name)
        if version is not None:
            df = self.spark.read.option("versionAsOf", int(version)).table(name)
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
        writer = df.write.format("delta").mode(mode)
        if predicate is not None:
            writer = writer.option("replaceWhere", predicate)
        elif mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        writer.saveAsTable(name)
        row = self.spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
        metrics = (row["operationMetrics"] if row else None) or {}
        return int(metrics.get("numOutputRows", 0))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        row = self.spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
        return int(row["version"]) if row else None

    def restore(self, name: str, version: int | None) -> None:
        self.split(name)
        if version is None:
            self.spark.sql(f"DROP TABLE IF EXISTS {name}")
        else:
            self.spark.sql(f"RESTORE TABLE {name} TO VERSION AS OF {int(version)}")
